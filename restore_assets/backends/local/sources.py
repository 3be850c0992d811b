"""Where a local fleet's backups come from: the BackupSource protocol and the choice of one.

Two sources: base backups (pg_basebackup) with a flat WAL archive (`basebackups.py`), or a
pgBackRest stanza (`pgbackrest_source.py`). A fleet chooses one when it is opened, from
`fleet.json`, and asks it for everything that differs between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from restore_assets.backends.local import pg
from restore_assets.backends.protocols import RestoreTarget, Snapshot

if TYPE_CHECKING:
    from restore_assets.backends.local.archive import WalPrefetch
    from restore_assets.backends.local.cluster import FleetConfig
    from restore_assets.backends.local.fleet import LocalFleet

# recovery settings of a copy whose left-out databases are zero-filled files: replay skips
# records without a page image that meet a zero page (checked in the log afterwards: only in
# left-out databases), and no autovacuum worker opens a left-out database
SELECTIVE_RECOVERY = {"ignore_invalid_pages": "on", "autovacuum": "off"}

Databases = list[str] | None  # the databases a temporary instance restores (None: every one)


@dataclass(frozen=True)
class Materialization:
    """What a source makes a temporary instance's data directory from: a snapshot, the target
    recovery will reach, and the databases and schemas to restore (None: every one)."""

    cluster: pg.Cluster  # the temporary instance whose data directory is made
    base: Snapshot
    target: RestoreTarget
    databases: Databases = None
    schemas: list[str] | None = None  # narrows the copy where the source can


@dataclass
class Materialized:
    """A temporary instance's data directory as a source made it, before recovery."""

    restore_command: str  # how recovery fetches archived WAL
    provisioning: dict[str, Any]  # details["provisioning"]: mode, by, bytes copied, seconds
    zero_oids: set[int] = field(default_factory=set)  # left-out databases known before recovery
    # restored database oid -> relfilenodes of other schemas' relations zero-filled in it
    zero_files: dict[int, set[int]] = field(default_factory=dict)
    # archived WAL copied beside the instance ahead of replay (started with recovery)
    prefetch: WalPrefetch | None = None

    @property
    def selective(self) -> bool:
        """True when only some databases' files were restored (the others are zero-filled)."""
        return self.provisioning.get("mode") == "selective"

    def recovery_settings(self) -> dict[str, str]:
        """Settings this copy needs on top of the usual recovery ones."""
        return dict(SELECTIVE_RECOVERY) if self.selective else {}


class BackupSource(Protocol):
    """Snapshots, archived WAL and the data directory of a temporary instance, for one fleet."""

    kind: str  # "base-backups" | "pgbackrest"
    topology: str  # Source.topology of an adopted fleet with this source

    def production_settings(self) -> dict[str, str]:
        """Archive settings of a managed production cluster."""
        ...

    def production_configured(self, cluster: pg.Cluster, new: bool) -> None:
        """After a managed production was created (new) or moved to another port."""
        ...

    def status(self) -> dict[str, Any]:
        """What `fleet status` shows of the source."""
        ...

    def check_ready(self) -> None:
        """Refuse a restore the source cannot serve (no archive, no backups)."""
        ...

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first."""
        ...

    def snapshot(self, backup_type: str | None = None) -> Snapshot:
        """Take a snapshot of production and wait for it."""
        ...

    def refused_bases(self) -> dict[str, str]:
        """Snapshots (id -> why) recovery to the latest timeline cannot start from."""
        ...

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot the tool took, or refuse."""
        ...

    def is_archived(self, segment: str, last_archived_wal: str | None) -> bool:
        """True once this WAL segment reached the archive (pg_stat_archiver's last one given)."""
        ...

    def latest_archived_time(self) -> datetime | None:
        """Time of the last commit in the archived WAL."""
        ...

    def plan_provisioning(
        self, base: Snapshot, databases: list[str] | None, schemas: list[str] | None = None
    ) -> dict[str, Any]:
        """How provision would materialise this snapshot (nothing is done)."""
        ...

    def materialize(self, job: Materialization) -> Materialized:
        """Make the temporary instance's data directory from a snapshot (with the files of only
        the given databases and, where the source can, only the given schemas)."""
        ...

    def left_out_oids(self, dsn: str, databases: list[str] | None, made: Materialized) -> set[int]:
        """After promotion of a selective copy: the oids of the databases left out."""
        ...

    def stop_materializing(self, datadir: Path) -> None:
        """Stop a materialisation left running by a crashed provision (before its directory goes)."""
        ...


class FleetSource:
    """What every source holds: the fleet it serves and the fleet's configuration."""

    def __init__(self, fleet: LocalFleet, cfg: FleetConfig) -> None:
        self.fleet = fleet
        self.cfg = cfg

    def refused_bases(self) -> dict[str, str]:
        """None by default: every snapshot is a base recovery can start from."""
        return {}


def open_source(fleet: LocalFleet, cfg: FleetConfig) -> BackupSource:
    """The backup source this fleet's configuration names (the one place it is chosen)."""
    from restore_assets.backends.local.basebackups import BaseBackupSource
    from restore_assets.backends.local.pgbackrest_source import PgBackRestSource

    if cfg.pgbackrest_stanza:
        return PgBackRestSource(fleet, cfg)
    return BaseBackupSource(fleet, cfg)
