"""The local fleet: a production cluster with its backups, and temporary PITR copies of it.

`LocalFleet` is the face the rest of the tool uses; the work is done by one module per concept:
`cluster` (create, adopt, stop, purge production), `archive` (archived WAL, restore window,
target checks), `temporary` (temporary instances) and the fleet's backup source, chosen once
(`sources`: base backups + a WAL archive in `basebackups`, or a pgBackRest stanza in
`pgbackrest_source`).
"""

from __future__ import annotations

import functools
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from restore_assets.backends.local import archive, cluster, pg, temporary
from restore_assets.backends.local.cluster import FleetConfig
from restore_assets.backends.local.dsn import mask_dsn
from restore_assets.backends.local.manifest import Manifest
from restore_assets.backends.local.pgbackrest_source import PgBackRestSource
from restore_assets.backends.local.sources import BackupSource, open_source
from restore_assets.backends.protocols import RecordResource, Snapshot, Source
from restore_assets.core.errors import FleetError, InvalidRequest

CONFIG_FILE = "fleet.json"


class LocalFleet:
    """PostgreSQL clusters on this machine under one root directory, playing the part RDS plays on AWS."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    # ---------------------------------------------------------------- configuration and paths
    @property
    def config_path(self) -> Path:
        """Path of fleet.json."""
        return self.root / CONFIG_FILE

    def exists(self) -> bool:
        """True when a fleet was set up (or adopted) under this root."""
        return self.config_path.exists()

    def config(self) -> FleetConfig:
        """The fleet's configuration; a clear error when there is no fleet under the root."""
        try:
            data = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise FleetError(
                f"no fleet under {self.root}: run `restore-assets fleet up --root {self.root}`"
                " or `restore-assets fleet adopt ...` first"
            ) from None
        return FleetConfig(**data)

    def save(self, cfg: FleetConfig) -> None:
        """Write fleet.json (0600, atomically)."""
        tmp = self.config_path.with_suffix(".tmp")
        self.manifest.record(self.config_path)
        self.manifest.record(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(cfg.to_dict(), fh, indent=2)
        os.replace(tmp, self.config_path)
        self.__dict__.pop("source", None)  # chosen again from what was saved

    @functools.cached_property
    def source(self) -> BackupSource:
        """Where this fleet's snapshots and archived WAL come from (chosen once, from fleet.json)."""
        return open_source(self, self.config())

    @property
    def pgbackrest(self) -> PgBackRestSource | None:
        """The pgBackRest source of this fleet (for the server restore), or None (also: no fleet)."""
        if not self.exists():
            return None
        return self.source if isinstance(self.source, PgBackRestSource) else None

    @property
    def selective_databases(self) -> bool:
        """True: provision materialises only the databases it is given (pgBackRest --db-include,
        or a selective copy of a plain snapshot, see `selective`); a full copy when not given."""
        return True

    @property
    def selective_schemas(self) -> bool:
        """True: provision also takes the restored schemas (a plain snapshot's copy then leaves
        other schemas' relations out, see `selective`; pgBackRest stays at the database level)."""
        return True

    @property
    def manifest(self) -> Manifest:
        """What the tool created for this fleet: the only paths it deletes."""
        return Manifest(self.root)

    def scratch_dir(self, purpose: str) -> Path:
        """A new private directory of the server user under the data root, listed in the manifest."""
        path = self.data_root / f"scratch-{purpose}-{os.urandom(6).hex()}"
        self.manifest.record(path)
        os.mkdir(path, 0o700)
        pg.give_to_server_user(path)
        return path

    @property
    def data_root(self) -> Path:
        """Where the production cluster, WAL archive, base backups and temporary clusters live."""
        if self.exists():
            data_dir = self.config().data_dir
            if data_dir:
                return Path(data_dir)
        return self.root

    @property
    def archive_dir(self) -> Path:
        """Directory of archived WAL segments (base-backup fleets)."""
        return Path(self.config().archive_dir)

    @property
    def backup_dir(self) -> Path:
        """Directory of base backups (one sub-directory each)."""
        return Path(self.config().backup_dir)

    @property
    def temp_root(self) -> Path:
        """Directory holding the temporary clusters, one sub-directory per restore id."""
        return self.data_root / "temp"

    # ---------------------------------------------------------------- production
    def production_cluster(self) -> pg.Cluster:
        """The managed production cluster."""
        cfg = self.config()
        if cfg.mode != "managed" or cfg.port is None:
            raise FleetError(
                "this fleet adopts an existing cluster: the tool does not manage its server"
            )
        return pg.Cluster(self.data_root / "production" / "data", cfg.port)

    def production_dsn(self, database: str = "postgres") -> str:
        """Connection string to one database of the production cluster."""
        cfg = self.config()
        if cfg.mode == "adopted":
            params = psycopg.conninfo.conninfo_to_dict(cfg.dsn or "")
            params["dbname"] = database
            return psycopg.conninfo.make_conninfo(**params)
        return self.production_cluster().dsn(database)

    def superuser(self) -> str:
        """The role the tool connects as (postgres for a managed fleet, the DSN's user when adopted)."""
        cfg = self.config()
        if cfg.mode == "adopted":
            params = psycopg.conninfo.conninfo_to_dict(cfg.dsn or "")
            return params.get("user") or os.environ.get("PGUSER") or "postgres"
        return "postgres"

    # each concept's work is a function of its module taking the fleet first, bound here as a method
    up = cluster.up
    adopt = cluster.adopt_base_backups
    adopt_pgbackrest = cluster.adopt_pgbackrest
    down = cluster.down
    purge = cluster.purge_root

    # ---------------------------------------------------------------- snapshots and window
    def snapshot(self, backup_type: str | None = None) -> Snapshot:
        """Take a snapshot of production: a base backup, or `pgbackrest backup --type=backup_type`."""
        return self.source.snapshot(backup_type)

    def snapshots(self) -> list[Snapshot]:
        """Every base backup in the backup directory (or pgBackRest backup), oldest first."""
        return self.source.snapshots()

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        """One snapshot by id; InvalidRequest naming the known ids when it does not exist."""
        snaps = self.snapshots()
        for s in snaps:
            if s.id == snapshot_id:
                return s
        known = ", ".join(s.id for s in snaps) or "none"
        raise InvalidRequest(f"unknown snapshot id {snapshot_id!r} (known: {known})")

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete one base backup by id (refused on a pgBackRest fleet: retention is pgBackRest's)."""
        self.source.delete_snapshot(snapshot_id)

    switch_wal = archive.switch_wal
    last_commit_in = staticmethod(archive.last_commit_in)
    window = archive.window
    check_target = archive.check_target

    def latest_archived_time(self) -> datetime | None:
        """Time of the last commit found in the archived WAL."""
        return self.source.latest_archived_time()

    def describe(self) -> Source:
        """Topology, engine version, restore window and snapshots of the production cluster."""
        with psycopg.connect(self.production_dsn(), connect_timeout=10) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        managed = self.config().mode == "managed"
        return Source(
            identifier=str(self.root),
            topology="local-cluster" if managed else self.source.topology,
            engine_version=version,
            window=self.window(),
            snapshots=self.snapshots(),
        )

    # ---------------------------------------------------------------- temporary clusters
    temp_dirs = temporary.temp_dirs
    temp_instances = temporary.temp_instances
    provision = temporary.provision
    plan_resources = temporary.plan_resources
    temp_dsn = temporary.temp_dsn
    delete_temp = temporary.delete_temp
    delete_resource = temporary.delete_resource

    def prepare(self, restore_id: str, record: RecordResource | None = None) -> None:
        """Nothing to start early on this machine (the temporary cluster is created by provision)."""

    def status(self) -> dict[str, Any]:
        """Clusters, snapshots and restore window, JSON-ready."""
        cfg = self.config()
        out: dict[str, Any] = {
            "root": str(self.root),
            "mode": cfg.mode,
            "data_dir": str(self.data_root),
        }
        if cfg.mode == "managed":
            production = self.production_cluster()
            out["production"] = {
                "dsn": production.dsn(),
                "port": production.port,
                "running": production.is_running(),
                "datadir": str(production.datadir),
            }
        else:
            out["production"] = {"dsn": mask_dsn(cfg.dsn or "")}
        out.update(self.source.status())
        out["snapshots"] = [s.to_dict() for s in self.snapshots()]
        out["window"] = self.window().to_dict()
        out["temporary"] = self.temp_instances()
        return out
