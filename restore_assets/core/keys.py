"""Unknown configuration keys are refused, each named with the nearest valid key (no Dagster here)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from restore_assets.core.errors import InvalidRequest


def unknown_keys_message(where: str, given: Iterable[str], known: Iterable[str]) -> str | None:
    """What is wrong with the keys of one mapping (None when every key is known)."""
    valid = sorted(set(known))
    unknown = sorted(str(k) for k in set(given) - set(valid))
    if not unknown:
        return None
    parts = []
    for key in unknown:
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        parts.append(f"{key!r}{hint}")
    return f"unknown key(s) in {where}: {', '.join(parts)}; valid keys are {', '.join(valid)}"


def refuse_unknown_keys(where: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raise InvalidRequest naming every unknown key and the nearest valid one."""
    message = unknown_keys_message(where, given, known)
    if message:
        raise InvalidRequest(message)


def validation_message(where: str, exc: ValidationError) -> str:
    """A pydantic ValidationError in words: each field named with what is wrong (values not shown)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "(the whole mapping)"
        parts.append(f"{field}: {err['msg']}")
    return f"invalid {where}: " + "; ".join(parts)


class StrictModel(BaseModel):
    """A pydantic model that refuses unknown keys (`extra="forbid"`), naming the nearest field.

    `parse` is the one entry for outside input: every refusal is an InvalidRequest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    where: ClassVar[str] = "the configuration"  # how messages name the mapping

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise InvalidRequest(f"{cls.where} must be a mapping, got {type(data).__name__}")
        refuse_unknown_keys(cls.where, data, cls.model_fields)
        return cls.prepare(data)

    @classmethod
    def prepare(cls, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Checks across fields that must run before the fields are typed (none by default)."""
        return data

    @classmethod
    def parse(cls, data: Any) -> Self:
        """The checked model of a mapping (CLI, notebook, launchpad, YAML); InvalidRequest if not."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequest(validation_message(cls.where, exc)) from None
