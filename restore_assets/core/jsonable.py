"""JSON-ready forms of the model dataclasses: one `dataclasses.asdict` with one conversion hook."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any


def json_value(value: Any) -> Any:
    """A field's JSON-ready value: a datetime as ISO 8601, a model by its to_dict, else as is."""
    if isinstance(value, datetime):
        return value.isoformat()
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


def json_ready(obj: Any) -> dict[str, Any]:
    """A dataclass (nested ones included) as a dict of JSON-ready field values, in field order."""
    return asdict(obj, dict_factory=lambda items: {k: json_value(v) for k, v in items})
