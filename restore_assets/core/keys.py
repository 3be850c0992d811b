"""Unknown configuration keys are refused, each named with the nearest valid key (no Dagster here)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

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
