"""LocalInstanceBackend: the server-restore protocol on the local fleet's production cluster.

It describes the server and checks every name before any change, takes snapshots, then hands each
step to its module: set_aside (set aside, final backup, delete the original), base_backup or
pgbackrest_delta (the restore), recovery (promotion, archiving hold) and rollback.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from restore_assets.backends.local import pg
from restore_assets.backends.local.archive import base_for
from restore_assets.backends.local.dsn import mask_dsn
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.local.server_restore import base_backup, pgbackrest_delta
from restore_assets.backends.local.server_restore import rollback as rollback_
from restore_assets.backends.local.server_restore import set_aside as set_aside_
from restore_assets.backends.local.server_restore.names import (
    FINAL_BACKUPS,
    IDENTIFIER,
    PGBACKREST_BACKUP_KIND,
    SNAPSHOT_KIND,
)
from restore_assets.backends.local.server_restore.recovery import (
    CONFIG_FILES,
    mask_settings,
    parse_conf,
    release_archiving,
    wait_promoted,
)
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.core.errors import FleetError, InvalidRequest
from restore_assets.core.server_restore.model import Described
from restore_assets.core.server_restore.protocols import InPlaceRestore, Record

PGBACKREST_INSTANCE_RESTORE = (
    "a server restore is not available on a pgBackRest fleet that adopts a server the tool does"
    " not manage (it replaces the data directory; a managed fleet, `fleet up --pgbackrest`,"
    " restores by pgbackrest restore --delta): restore schemas, or run pgbackrest restore yourself"
)
PITR_NEEDS_PGBACKREST = (
    "a point-in-time server restore needs a fleet backed up by pgBackRest (`fleet up --pgbackrest`):"
    " on this fleet restore a snapshot by its id"
)
LOCAL_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class LocalInstanceBackend:
    """The managed production cluster of a LocalFleet, restored in place from its base backups."""

    name = "local"

    def __init__(
        self,
        fleet: LocalFleet,
        start_timeout: float = 120,
        post_restore_snapshot: bool = True,
        final_backup: bool = True,
    ) -> None:
        self.fleet = fleet
        self.start_timeout = start_timeout
        self.post_restore_snapshot = post_restore_snapshot
        self.final_backup = final_backup

    # ------------------------------------------------------------------ naming and checks
    def resolve_identifier(self, identifier: str | None) -> str:
        """The local fleet has one server, 'production'."""
        if identifier not in (None, "", IDENTIFIER):
            raise InvalidRequest(
                f"unknown identifier {identifier!r}: the local fleet has one server, {IDENTIFIER!r}"
            )
        return IDENTIFIER

    def _production(self) -> pg.Cluster:
        if not self.fleet.exists():
            raise InvalidRequest(
                f"no fleet under {self.fleet.root}: run `restore-assets fleet up --root {self.fleet.root}`"
            )
        if self.fleet.config().mode != "managed":
            raise InvalidRequest(
                "an instance restore replaces the server's data directory: it needs a managed fleet"
                " (this one adopts a cluster the tool does not manage)"
            )
        return self.fleet.production_cluster()

    @property
    def aside_root(self) -> Path:
        """Where WAL of abandoned or superseded timelines is moved (never deleted)."""
        return self.fleet.manifest.record(self.fleet.data_root / "archive-aside")

    @property
    def final_backups(self) -> Path:
        """Where the final backups of set-aside (and rolled-back) data directories are kept."""
        return self.fleet.data_root / FINAL_BACKUPS

    def check_names(self, identifier: str, suffix: str) -> dict[str, Any]:
        """The set-aside directory `data.old-<suffix>` beside the production data directory, and
        the final backup taken of it before it is removed (unless final_backup is off)."""
        datadir = self.fleet.data_root / "production" / "data"
        final = f"{IDENTIFIER}-final-{suffix}" if self.final_backup else None
        return {
            "identifier": identifier,
            "renamed": f"data.old-{suffix}",
            "renamed_dir": str(datadir.parent / f"data.old-{suffix}"),
            "datadir": str(datadir),
            "suffix": suffix,
            "final_snapshot": final,
            "rollback_snapshot": f"{IDENTIFIER}-rollback-{suffix}",
        }

    def _pgbackrest_stanza(self) -> str | None:
        return self.fleet.config().pgbackrest_stanza if self.fleet.exists() else None

    def _describe_pgbackrest(self, stanza: str) -> Described:
        """An adopted server backed up by a pgBackRest stanza: it can be snapshotted only."""
        dsn = self.fleet.production_dsn()
        details: dict[str, Any] = {"running": False, "pgbackrest": True, "snapshot_only": True}
        version = None
        try:
            with psycopg.connect(dsn, connect_timeout=10) as conn:
                num = int(conn.execute("SHOW server_version_num").fetchone()[0])
                version = str(num // 10000)
                details["running"] = True
        except psycopg.Error:
            pass
        config = {"dsn": mask_dsn(dsn), "pg_version": version, "pgbackrest_stanza": stanza}
        return Described(IDENTIFIER, "pgbackrest-stanza", config, [], details)

    def describe(self, identifier: str) -> Described:
        """Port, DSN, data directory and configuration files of the production cluster."""
        stanza = self._pgbackrest_stanza()
        if stanza and self.fleet.config().mode != "managed":
            return self._describe_pgbackrest(stanza)
        cluster = self._production()
        if not cluster.datadir.is_dir():
            raise InvalidRequest(f"production data directory missing: {cluster.datadir}")
        settings: dict[str, str] = {}
        for name in ("postgresql.conf", "restore_assets.conf", "postgresql.auto.conf"):
            path = cluster.datadir / name
            if path.exists():
                settings.update(parse_conf(path.read_text(errors="replace")))
        running = cluster.is_running()
        details: dict[str, Any] = {"running": running}
        if running:
            with psycopg.connect(cluster.dsn(), connect_timeout=10) as conn:
                row = conn.execute(
                    "SELECT system_identifier::text FROM pg_catalog.pg_control_system()"
                ).fetchone()
                details["system_identifier"] = row[0]
                details["timeline"] = conn.execute(
                    "SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()"
                ).fetchone()[0]
        config = {
            "port": cluster.port,
            "dsn": cluster.dsn(),
            "datadir": str(cluster.datadir),
            "pg_version": (cluster.datadir / "PG_VERSION").read_text().strip(),
            "config_files": [n for n in CONFIG_FILES if (cluster.datadir / n).exists()],
            "settings": mask_settings(settings),
            "archive_dir": str(self.fleet.archive_dir),
        }
        if stanza:  # the fleet's own stanza: restored by pgbackrest restore --delta
            config["pgbackrest_stanza"] = stanza
            config.pop("archive_dir")
            details["pgbackrest"] = True
        return Described(IDENTIFIER, "local-cluster", config, [], details)

    def _snapshot_dict(self, snap_id: str) -> dict[str, Any]:
        snap = self.fleet.get_snapshot(snap_id)
        path = self.fleet.backup_dir / snap.id
        info = snap.to_dict()
        info["path"] = str(path)
        info["pg_version"] = (path / "PG_VERSION").read_text().strip()
        try:
            ranges = json.loads((path / "backup_manifest").read_text())["WAL-Ranges"]
            info["timeline"] = int(ranges[-1]["Timeline"])
            info["end_lsn"] = ranges[-1]["End-LSN"]
        except (OSError, KeyError, IndexError, ValueError):
            info["timeline"], info["end_lsn"] = None, None
        return info

    def check_snapshot(self, source: Described, snapshot_id: str) -> dict[str, Any]:
        """A base backup (or pgBackRest backup) of this fleet, of the same PostgreSQL major version."""
        if source.details.get("snapshot_only"):
            raise InvalidRequest(PGBACKREST_INSTANCE_RESTORE)
        if source.config.get("pgbackrest_stanza"):
            return pgbackrest_delta.backup_info(
                self.fleet, self.fleet.get_snapshot(snapshot_id), source
            )
        info = self._snapshot_dict(snapshot_id)
        if info["pg_version"] != source.config["pg_version"]:
            raise InvalidRequest(
                f"snapshot {snapshot_id} is of PostgreSQL {info['pg_version']}, production runs"
                f" {source.config['pg_version']}: restore it into a temporary cluster instead"
            )
        return info

    def check_restore_time(self, source: Described, restore_time: str) -> dict[str, Any]:
        """A point in time inside the restore window of a pgBackRest fleet; its base backup."""
        if source.details.get("snapshot_only"):
            raise InvalidRequest(PGBACKREST_INSTANCE_RESTORE)
        if not source.config.get("pgbackrest_stanza"):
            raise InvalidRequest(PITR_NEEDS_PGBACKREST)
        t = datetime.fromisoformat(restore_time)
        self.fleet.check_target(RestoreTarget(restore_time=t))  # window, future, no backup
        # the base the fleet's restores take (recovery follows the latest timeline)
        base = base_for(t, self.fleet.snapshots(), self.fleet.source.refused_bases())
        return {
            **pgbackrest_delta.backup_info(self.fleet, base, source),
            "restore_time": t.isoformat(),
        }

    def check_free(self, source: Described, names: dict[str, Any]) -> list[str]:
        """The set-aside directory must not exist; a new snapshot's name must be free."""
        warnings: list[str] = []
        task = names.get("task")
        if names.get("export_s3"):
            raise InvalidRequest("export to S3 needs the aws backend (--backend aws)")
        if source.details.get("pgbackrest"):
            if task != "create_snapshot_only" and source.details.get("snapshot_only"):
                raise InvalidRequest(PGBACKREST_INSTANCE_RESTORE)
            if names.get("snapshot_identifier"):
                raise InvalidRequest(
                    "pgBackRest names its backups by label: leave the snapshot identifier empty"
                )
        if task != "create_snapshot_only" and source.config.get("pgbackrest_stanza"):
            pgbackrest_delta.check_seedable(Path(names["datadir"]))
        if task != "create_snapshot_only" and Path(names["renamed_dir"]).exists():
            raise InvalidRequest(
                f"{names['renamed_dir']} already exists: choose another --suffix or remove it"
            )
        for key in ("final_snapshot", "rollback_snapshot"):
            if task != "create_snapshot_only" and names.get(key):
                if (self.final_backups / names[key]).exists():
                    raise InvalidRequest(
                        f"final backup {self.final_backups / names[key]} already exists:"
                        " choose another --suffix"
                    )
        if task != "db_restore" and not source.details.get("running"):
            raise InvalidRequest("production is not running: start it (`fleet up`) to snapshot it")
        wanted = names.get("snapshot_identifier")
        if wanted:
            if not LOCAL_SNAPSHOT_NAME.match(wanted):
                raise InvalidRequest(f"snapshot name {wanted!r} is not a valid directory name")
            if (self.fleet.backup_dir / wanted).exists():
                raise InvalidRequest(f"snapshot {wanted!r} already exists")
        if task != "create_snapshot_only" and not source.details.get("running"):
            warnings.append("production is not running: it is restored and started")
        return warnings

    # ------------------------------------------------------------------ snapshots
    def create_snapshot(
        self, source: Described, snapshot_identifier: str | None, record: Record, timeout: float
    ) -> dict[str, Any]:
        """A base backup of production (pg_basebackup; the fleet limits it to 600 s).

        On a pgBackRest fleet: `pgbackrest backup` of the fleet's type (default incr).
        """
        snap = self.fleet.snapshot()
        stanza = self._pgbackrest_stanza()
        if stanza:
            info = {**snap.to_dict(), "status": "available", "stanza": stanza}
            # a backup in the stanza's repository: pgBackRest's retention owns it, never the tool
            record(PGBACKREST_BACKUP_KIND, snap.id, {"stanza": stanza, "type": snap.kind})
            return info
        snap_id = snap.id
        if snapshot_identifier and snapshot_identifier != snap.id:
            backups = self.fleet.backup_dir
            # the fleet manifest follows the rename, so `fleet delete-snapshot` still owns it
            self.fleet.manifest.rename(backups / snap.id, backups / snapshot_identifier)
            meta_old = backups / f"{snap.id}.json"
            if meta_old.exists():
                meta = json.loads(meta_old.read_text())
                meta["id"] = snapshot_identifier
                meta_new = self.fleet.manifest.record(backups / f"{snapshot_identifier}.json")
                meta_new.write_text(json.dumps(meta))
                self.fleet.manifest.remove(meta_old)
            snap_id = snapshot_identifier
        info = self._snapshot_dict(snap_id)
        info["status"] = "available"
        record(SNAPSHOT_KIND, snap_id, {"path": info["path"]})
        return info

    def export_snapshot(self, snapshot: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Not available locally: an S3 export needs the aws backend."""
        raise InvalidRequest("export to S3 needs the aws backend (--backend aws)")

    # ------------------------------------------------------------------ restore in place
    def set_aside(self, source: Described, names: dict[str, Any], record: Record) -> dict[str, Any]:
        """Archive the last WAL, stop production, rename its data directory to data.old-<suffix>."""
        return set_aside_.set_aside(self, self._production(), names, record)

    def restore(self, job: InPlaceRestore) -> dict[str, Any]:
        """Copy the base backup in place, keep production's configuration, recover, promote.

        On a pgBackRest fleet: `pgbackrest restore --delta` into a copy of the set-aside directory.
        """
        if job.source.config.get("pgbackrest_stanza"):
            return pgbackrest_delta.restore(self, job)
        return base_backup.restore(self, job)

    def wait_restored(
        self, source: Described, names: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Verify the restored production: same port, same cluster, every database, WAL archived."""
        port = int(source.config["port"])
        cluster = pg.Cluster(Path(names["datadir"]), port)
        wait_promoted(cluster, min(timeout, self.start_timeout))
        with psycopg.connect(cluster.dsn(), connect_timeout=10) as conn:
            sysid = conn.execute(
                "SELECT system_identifier::text FROM pg_catalog.pg_control_system()"
            ).fetchone()[0]
            dbs = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY 1"
                )
            ]
        expected = source.details.get("system_identifier")
        if expected and sysid != expected:
            raise FleetError(
                f"restored cluster has system identifier {sysid}, production had {expected}:"
                " the snapshot is not of this fleet"
            )
        for db in dbs:
            with psycopg.connect(cluster.dsn(db), connect_timeout=10) as conn:
                conn.execute("SELECT 1")
        out: dict[str, Any] = {"port": port, "dsn": cluster.dsn(), "databases": dbs}
        if release_archiving(cluster):
            # verified: the held WAL of the new timeline (its history file first) goes to the
            # repository now, through archive_command (pgbackrest archive-push)
            out["archiving"] = "released"
        self.fleet.switch_wal()  # proves archiving works on the new timeline
        if self.post_restore_snapshot:
            # a base backup (pgbackrest backup on a pgBackRest fleet) on the new timeline: later
            # point-in-time restores start from it
            out["post_restore_snapshot"] = self.fleet.snapshot().id
        return out

    def delete_old(
        self, source: Described, names: dict[str, Any], keep_old: bool, skip_final_snapshot: bool
    ) -> dict[str, Any]:
        """Back data.old-<suffix> up (the final snapshot), then remove it; or keep it. Only the
        directory the fleet manifest recorded at set_aside is removed."""
        return set_aside_.delete_old(self, names, keep_old, skip_final_snapshot)

    def rollback(
        self, source: Described, names: dict[str, Any], resources: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Stop and remove a half-restored directory, rename the original back, start it."""
        return rollback_.rollback(self, source, names, resources)
