"""Proof of ownership for AWS resources: the `restore-assets:restore-id` tag set at create.

Every temporary resource a restore creates carries the tag `restore-assets:restore-id=<id>`.
Before deleting one, cleanup reads its tags back and deletes it only when the tag names the
restore whose audit record lists it; before creating one, the identifier must be free (or be
this restore's own resource, when a step is retried). Anything else is refused and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from restore_assets.backends.aws.config import RESTORE_ID_TAG
from restore_assets.core.errors import FleetError

log = logging.getLogger("restore_assets.aws")

OWNER_KEY = "restore_id"
"""The key of a recorded resource's details that names the restore that created it."""


class NotOwned(FleetError):
    """A resource to delete does not carry this restore's tag: it is kept and reported."""


class IdentifierTaken(FleetError):
    """An identifier a restore would create is already used by a resource it does not own."""


def tag_value(
    tag_list: Iterable[Mapping[str, Any]] | None, key: str = RESTORE_ID_TAG
) -> str | None:
    """The value of one tag in an AWS tag list (`Key`/`Value` or ECS's `key`/`value`)."""
    for tag in tag_list or []:
        k = tag.get("Key", tag.get("key"))
        if k == key:
            v = tag.get("Value", tag.get("value"))
            return None if v is None else str(v)
    return None


def expected_owner(kind: str, identifier: str, details: Mapping[str, Any]) -> str:
    """The restore id a recorded resource must be tagged with (from its recorded details)."""
    rid = details.get(OWNER_KEY)
    if not rid:
        raise NotOwned(
            f"{kind} {identifier}: its record names no restore id, so its tag cannot be"
            " checked: not deleted (delete it by hand after checking its tags)"
        )
    return str(rid)


def _other_owner(
    tag_list: Iterable[Mapping[str, Any]] | None, restore_id: str, untagged: str
) -> str | None:
    """None when the tags name restore_id; else what they carry instead (`untagged`: no tag)."""
    found = tag_value(tag_list)
    if found == restore_id:
        return None
    return untagged if found is None else f"the tag of restore {found!r}"


def check_owned(
    kind: str, identifier: str, tag_list: Iterable[Mapping[str, Any]] | None, restore_id: str
) -> None:
    """Raise NotOwned unless the tags carry `restore-assets:restore-id=<restore_id>`."""
    what = _other_owner(tag_list, restore_id, "no restore-assets:restore-id tag")
    if what is None:
        return
    message = (
        f"{kind} {identifier} carries {what}, not {restore_id!r}: not deleted"
        " (a resource of the same name that this restore did not create)"
    )
    log.error("%s", message)
    raise NotOwned(message)


def check_free(
    kind: str, identifier: str, tag_list: Iterable[Mapping[str, Any]] | None, restore_id: str
) -> None:
    """For an identifier that exists: allow it only when it is this restore's own resource."""
    owner = _other_owner(tag_list, restore_id, "no restore-assets tag")
    if owner is not None:
        raise IdentifierTaken(
            f"{kind} {identifier} already exists ({owner}): nothing was created; choose another"
            " restore id or aws.temp_identifier_prefix, or remove that resource yourself"
        )
