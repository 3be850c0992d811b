"""Instance-level requests: tasks, identifiers and the names a restore will use, checked before any call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import Field

from restore_assets.core.errors import InvalidRequest
from restore_assets.core.keys import StrictModel
from restore_assets.core.request import parse_time

TASKS = ("db_restore", "create_snapshot", "create_snapshot_only")
MAX_IDENTIFIER = 63  # RDS instance and cluster identifiers
MAX_SNAPSHOT_IDENTIFIER = 255  # RDS snapshot identifiers
# letters, digits and single hyphens; starts with a letter; no trailing hyphen (RDS rules)
RDS_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?=[A-Za-z0-9]))*$")
SUFFIX = re.compile(r"^[a-z0-9]{1,20}$")
# a pgBackRest backup label: full, or diff/incr on top of its full (a local pgBackRest fleet's ids)
PGBACKREST_LABEL = re.compile(r"^\d{8}-\d{6}F(?:_\d{8}-\d{6}[DI])?$")


def check_rds_name(kind: str, name: str, limit: int = MAX_IDENTIFIER) -> str:
    """Refuse a name RDS would refuse: too long, bad characters, double or trailing hyphen."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{kind} must be a non-empty string, got {name!r}")
    if len(name) > limit:
        raise InvalidRequest(
            f"{kind} {name!r} is {len(name)} characters: the limit is {limit};"
            " choose a shorter identifier or --suffix"
        )
    if not RDS_NAME.match(name):
        raise InvalidRequest(
            f"{kind} {name!r} is not valid: use letters, digits and single hyphens,"
            " start with a letter and do not end with a hyphen"
        )
    return name


def default_suffix(now: datetime | None = None) -> str:
    """The default suffix of `<id>-old-<suffix>`: the UTC time as YYYYMMDDHHMMSS."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S")


def renamed_identifier(identifier: str, suffix: str) -> str:
    """The name the original takes while the snapshot is restored under its name."""
    return f"{identifier}-old-{suffix}"


def final_snapshot_identifier(identifier: str, suffix: str) -> str:
    """The final snapshot taken when the renamed original is deleted."""
    return f"{identifier}-final-{suffix}"


def rollback_snapshot_identifier(identifier: str, suffix: str) -> str:
    """The final snapshot a rollback takes of a restored target that had become available."""
    return f"{identifier}-rollback-{suffix}"


def default_snapshot_identifier(identifier: str, now: datetime | None = None) -> str:
    """A snapshot identifier for a snapshot taken now: `<identifier>-YYYYMMDD-HHMMSS`."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    base = identifier[: MAX_SNAPSHOT_IDENTIFIER - len(stamp) - 1].rstrip("-")
    return f"{base}-{stamp}"


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key} must be true or false, got {value!r}")
    return value


class InstanceRequest(StrictModel):
    """What a server restore run does: restore in place from a snapshot, or take a snapshot.

    The one model of the CLI, the runbook notebook and the launchpad (whose config is built from
    these fields); static checks only, no call to any server.
    """

    where: ClassVar[str] = "the instance restore request"

    task: str = Field(
        default="db_restore",
        description=(
            "db_restore: restore in place from snapshot_id (or restore_time); create_snapshot:"
            " take a snapshot, then restore it in place; create_snapshot_only: take a snapshot."
        ),
    )
    identifier: str | None = Field(
        default=None,
        description="The RDS instance or cluster (default: aws.source_identifier); locally: production.",
    )
    snapshot_id: str | None = Field(
        default=None, description="The snapshot db_restore restores in place."
    )
    restore_time: str | None = Field(
        default=None,
        description=(
            "db_restore to a point in time instead of a snapshot: ISO 8601 with a time zone"
            " (a local pgBackRest fleet only)."
        ),
    )
    snapshot_identifier: str | None = Field(
        default=None,
        description=(
            "The name of the snapshot a create_snapshot task takes; empty:"
            " <identifier>-YYYYMMDD-HHMMSS."
        ),
    )
    suffix: str = Field(
        default_factory=default_suffix,
        description=(
            "The original is renamed <identifier>-old-<suffix> while the snapshot is restored;"
            " empty: the UTC time as YYYYMMDDHHMMSS."
        ),
    )
    keep_old: bool = Field(
        default=False, description="Keep the renamed original after a successful restore."
    )
    skip_final_snapshot: bool = Field(
        default=False, description="Delete the renamed original without taking a final snapshot."
    )
    export_s3: bool = Field(
        default=False,
        description="Export the snapshot this run takes to S3 and follow the export to its end.",
    )

    @classmethod
    def prepare(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """Every static check, in the order a user meets them; the fields in their final form."""
        task = data.get("task") or "db_restore"
        if task not in TASKS:
            raise InvalidRequest(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
        identifier = data.get("identifier") or None
        if identifier is not None:
            check_rds_name("identifier", identifier)
        snapshot_id = data.get("snapshot_id") or None
        snapshot_identifier = data.get("snapshot_identifier") or None
        restore_time = data.get("restore_time") or None
        if restore_time is not None:
            if task != "db_restore":
                raise InvalidRequest(f"task {task} takes a new snapshot: restore_time is not used")
            if snapshot_id:
                raise InvalidRequest("give snapshot_id or restore_time, not both")
            restore_time = parse_time(restore_time).isoformat()
        if task == "db_restore" and not snapshot_id and not restore_time:
            raise InvalidRequest(
                "task db_restore needs a snapshot_id or a restore_time (or use task create_snapshot)"
            )
        if task != "db_restore" and snapshot_id:
            raise InvalidRequest(
                f"task {task} takes a new snapshot: give snapshot_identifier for its name,"
                " not snapshot_id"
            )
        if task == "db_restore" and snapshot_identifier:
            raise InvalidRequest("snapshot_identifier names a new snapshot: not used by db_restore")
        if snapshot_id is not None and not PGBACKREST_LABEL.match(str(snapshot_id)):
            check_rds_name("snapshot_id", snapshot_id, MAX_SNAPSHOT_IDENTIFIER)
        if snapshot_identifier is not None:
            check_rds_name("snapshot_identifier", snapshot_identifier, MAX_SNAPSHOT_IDENTIFIER)
        suffix = data.get("suffix") or default_suffix()
        if not isinstance(suffix, str) or not SUFFIX.match(suffix):
            raise InvalidRequest(f"suffix {suffix!r} must be 1 to 20 lowercase letters or digits")
        export_s3 = _bool(data, "export_s3")
        if export_s3 and task == "db_restore":
            raise InvalidRequest(
                "export_s3 applies to a snapshot this run takes, not to db_restore"
            )
        if identifier is not None and task != "create_snapshot_only":
            check_rds_name("renamed identifier", renamed_identifier(identifier, suffix))
            check_rds_name(
                "final snapshot identifier",
                final_snapshot_identifier(identifier, suffix),
                MAX_SNAPSHOT_IDENTIFIER,
            )
        return {
            "task": task,
            "identifier": identifier,
            "snapshot_id": snapshot_id,
            "restore_time": restore_time,
            "snapshot_identifier": snapshot_identifier,
            "suffix": suffix,
            "keep_old": _bool(data, "keep_old"),
            "skip_final_snapshot": _bool(data, "skip_final_snapshot"),
            "export_s3": export_s3,
        }

    @property
    def restores(self) -> bool:
        """True when the run restores in place (db_restore or create_snapshot)."""
        return self.task != "create_snapshot_only"

    @property
    def takes_snapshot(self) -> bool:
        """True when the run takes a snapshot first."""
        return self.task != "db_restore"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceRequest:
        """Inverse of to_dict (no re-validation)."""
        return cls.model_construct(**{k: data[k] for k in cls.model_fields if k in data})


@dataclass
class Described:
    """The server an instance-level run acts on, and the configuration a restore must preserve."""

    identifier: str
    topology: str  # "instance" | "cluster" | "local-cluster"
    config: dict[str, Any]
    members: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Described:
        """Inverse of to_dict."""
        return cls(**dict(data))


@dataclass
class InstancePlan:
    """A checked request with what it acts on: the source, the snapshot, the names it will use."""

    request: InstanceRequest
    source: Described
    snapshot: dict[str, Any] | None
    names: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "request": self.request.to_dict(),
            "source": self.source.to_dict(),
            "snapshot": self.snapshot,
            "names": self.names,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstancePlan:
        """Inverse of to_dict."""
        return cls(
            request=InstanceRequest.from_dict(data["request"]),
            source=Described.from_dict(data["source"]),
            snapshot=data.get("snapshot"),
            names=dict(data.get("names") or {}),
            warnings=list(data.get("warnings") or []),
        )
