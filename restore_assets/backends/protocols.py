"""Backend protocols and the value types phases exchange: one small protocol per role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from restore_assets.core.errors import InvalidRequest
from restore_assets.core.jsonable import json_ready


@dataclass(frozen=True)
class Snapshot:
    """A restorable copy of the whole source: a base backup locally, an RDS snapshot on AWS."""

    id: str
    created_at: datetime
    size_bytes: int
    kind: str = "base-backup"
    completed_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return json_ready(self)


@dataclass(frozen=True)
class RestoreWindow:
    """The interval of points in time a restore can target."""

    earliest: datetime | None
    latest: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return json_ready(self)


@dataclass(frozen=True)
class RestoreTarget:
    """Exactly one of a point in time or a snapshot id."""

    restore_time: datetime | None = None
    snapshot_id: str | None = None

    def describe(self) -> str:
        """Human-readable form for messages."""
        if self.snapshot_id:
            return f"snapshot {self.snapshot_id}"
        assert self.restore_time is not None
        return f"point in time {self.restore_time.isoformat()}"

    def past_time(self) -> datetime:
        """The restore time, refused when it has no time zone or lies in the future."""
        t = self.restore_time
        if t is None or t.tzinfo is None:
            raise InvalidRequest("restore time must be an ISO 8601 timestamp with a time zone")
        now = datetime.now(UTC)
        if t > now:
            raise InvalidRequest(
                f"restore time {t.isoformat()} is in the future (now {now.isoformat()})"
            )
        return t


@dataclass(frozen=True)
class Source:
    """What the fleet knows about the production database server."""

    identifier: str
    topology: str
    engine_version: str
    window: RestoreWindow
    snapshots: list[Snapshot] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return json_ready(self)


@dataclass
class TempDatabase:
    """An isolated temporary server restored from a snapshot or to a point in time."""

    restore_id: str
    identifier: str
    host: str
    port: int
    user: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (never holds a password)."""
        return asdict(self)


RecordResource = Callable[[str, str, dict[str, Any]], None]
"""Callback (kind, identifier, details) that records a resource before it is relied on."""


class Fleet(Protocol):
    """The database servers: production, its snapshots and restore window, temporary copies."""

    def describe(self) -> Source:
        """Topology, engine version, restore window and snapshots of the production server."""
        ...

    def check_target(self, target: RestoreTarget) -> datetime:
        """Refuse a target outside the restore window or an unknown snapshot; return the point."""
        ...

    def production_dsn(self, database: str) -> str:
        """Connection string to one database of the production server."""
        ...

    def prepare(self, restore_id: str, record: RecordResource) -> None:
        """Start slow resources a restore will need later, without waiting (may do nothing)."""
        ...

    def provision(
        self, restore_id: str, target: RestoreTarget, record: RecordResource, timeout: float
    ) -> TempDatabase:
        """Create and start a temporary server restored to the target; wait until it is ready."""
        ...

    def temp_dsn(self, db: TempDatabase, database: str) -> str:
        """Connection string to one database of a temporary server."""
        ...

    def delete_resource(self, kind: str, identifier: str, details: dict[str, Any]) -> None:
        """Delete one recorded resource; a resource already gone is success."""
        ...


class ArtifactStore(Protocol):
    """Where the DDL files and reports of a restore are kept (local directory or S3)."""

    def put(self, restore_id: str, name: str, data: bytes | str) -> str:
        """Store one artifact and return its URI."""
        ...

    def get(self, restore_id: str, name: str) -> bytes:
        """Read one artifact back."""
        ...

    def purge(self, restore_id: str) -> None:
        """Delete every artifact of a restore (idempotent)."""
        ...


class Notifier(Protocol):
    """Sends alerts (Slack, email, SNS); never raises."""

    def send(self, event: dict[str, Any]) -> None:
        """Deliver one event to every configured channel, logging failures."""
        ...
