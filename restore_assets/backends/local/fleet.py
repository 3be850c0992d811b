"""The local fleet: a production cluster with a WAL archive and base backups, and temporary PITR copies."""

from __future__ import annotations

import functools
import getpass
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from restore_assets.backends.local import pg, selective
from restore_assets.backends.local.manifest import MANIFEST_FILE, Manifest
from restore_assets.backends.local.pgbackrest import (
    BACKUP_TYPES,
    MANAGED_STANZA,
    PgBackRestSource,
    check_invalid_pages,
    excluded_oids,
    managed_paths,
    managed_settings,
    stop_restore,
    write_managed_config,
)
from restore_assets.backends.local.tablespaces import relocate_tablespaces, tablespace_mapping
from restore_assets.backends.protocols import (
    RecordResource,
    RestoreTarget,
    RestoreWindow,
    Snapshot,
    Source,
    TempDatabase,
)
from restore_assets.core.errors import FleetError, InvalidRequest

CONFIG_FILE = "fleet.json"
PGPASS_FILE = "pgpass"
DATA_BASE_ENV = "RESTORE_ASSETS_DATA_BASE"
DEFAULT_DATA_BASE = "/var/lib/restore-assets"
SOCKET_PATH_MAX = 100  # sun_path holds 107 bytes; `.s.PGSQL.<port>` is appended to the directory
# files the services of a fleet create in its root (the audit log and its journals, the artifacts)
ROOT_FILES = ("audit.sqlite", "audit.sqlite-journal", "audit.sqlite-wal", "audit.sqlite-shm")
WAL_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
BACKUP_HISTORY = re.compile(r"^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$")
WALDUMP_TIME = re.compile(
    r"desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [A-Za-z0-9_+/-]+)"
)
LABEL_TIME = re.compile(r"^(START|STOP) TIME: (.+)$", re.M)
TEMP_KIND = "local-temp-cluster"
IDENT_MAP = "restore_assets"


PASSWORD_IN_DSN = (
    "the DSN holds a password, and a command line is visible to every user of this machine"
    " (ps): remove password= from --dsn and give it in PGPASSWORD, a pgpass file"
    " (~/.pgpass or PGPASSFILE), or at the prompt"
)


def parse_pg_time(text: str, zone_name: str | None = None) -> datetime:
    """Parse a timestamp as PostgreSQL prints it in logs and labels ('2026-01-02 03:04:05.123 UTC').

    Backup labels print the zone as an abbreviation of the server's log_timezone (PST, CEST): pass
    that zone's name as zone_name to read abbreviations that are no zone name of their own.
    """
    text = text.strip()
    stamp, _, zone = text.rpartition(" ")
    if not stamp:
        raise ValueError(f"not a PostgreSQL timestamp: {text!r}")
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in stamp else "%Y-%m-%d %H:%M:%S"
    naive = datetime.strptime(stamp, fmt)
    if zone in ("UTC", "GMT"):
        return naive.replace(tzinfo=UTC)
    from zoneinfo import ZoneInfo

    named = None
    if zone_name:
        try:
            named = ZoneInfo(zone_name)
        except Exception:  # noqa: BLE001 - a POSIX-style zone: fall back to the abbreviation
            named = None
    if named is not None:
        for fold in (0, 1):  # fold picks the second of two equal wall-clock times (DST end)
            local = naive.replace(tzinfo=named, fold=fold)
            if local.tzname() == zone:
                return local.astimezone(UTC)
    try:
        tz = ZoneInfo(zone)
    except Exception as exc:  # noqa: BLE001 - any unknown zone is a clear error below
        hint = f" (log_timezone {zone_name!r})" if zone_name else ""
        raise ValueError(f"unknown time zone {zone!r} in {text!r}{hint}") from exc
    return naive.replace(tzinfo=tz).astimezone(UTC)


def mask_dsn(dsn: str) -> str:
    """A connection string with any password replaced by ***."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    if "password" in params:
        params["password"] = "***"
    return psycopg.conninfo.make_conninfo(**params)


def without_password(dsn: str) -> str:
    """A connection string without its password (to pass on a command line, where ps shows it)."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo(**params)


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


@dataclass
class FleetConfig:
    """What `fleet.json` under the root records: managed or adopted production and its directories."""

    mode: str  # "managed" | "adopted"
    archive_dir: str
    backup_dir: str
    port: int | None = None
    dsn: str | None = None  # adopted only; a password in it is refused, a prompted one is in pgpass
    data_dir: str | None = None  # where PostgreSQL's directories live (the root unless unreachable)
    pgbackrest_stanza: str | None = None  # adopted pgBackRest stanza: the backup source
    pgbackrest_config: str | None = None  # its pgbackrest.conf (None: pgBackRest's default)
    pgbackrest_backup_type: str = "incr"  # what `snapshot` takes: full, diff or incr
    pgbackrest_process_max: int | None = None  # restore parallelism (None: the CPU count)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, including the DSN (the file is written 0600)."""
        return dict(self.__dict__)


class LocalFleet:
    """PostgreSQL clusters on this machine under one root directory, playing the part RDS plays on AWS."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    # ---------------------------------------------------------------- configuration
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

    def _save(self, cfg: FleetConfig) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        self.manifest.record(self.config_path)
        self.manifest.record(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(cfg.to_dict(), fh, indent=2)
        os.replace(tmp, self.config_path)

    @property
    def pgbackrest(self) -> PgBackRestSource | None:
        """The pgBackRest stanza this fleet restores from, or None (base backups + WAL archive)."""
        if not self.exists():
            return None
        cfg = self.config()
        if not cfg.pgbackrest_stanza:
            return None
        return PgBackRestSource(self, cfg.pgbackrest_stanza, cfg.pgbackrest_config)

    @property
    def selective_databases(self) -> bool:
        """True: provision materialises only the databases it is given (pgBackRest --db-include,
        or a selective copy of a plain snapshot, see `selective`); a full copy when not given."""
        return True

    def scratch_dir(self, purpose: str) -> Path:
        """A new private directory of the server user under the data root, listed in the manifest."""
        path = self.data_root / f"scratch-{purpose}-{os.urandom(6).hex()}"
        self.manifest.record(path)
        os.mkdir(path, 0o700)
        pg.give_to_server_user(path)
        return path

    @property
    def manifest(self) -> Manifest:
        """What the tool created for this fleet: the only paths it deletes."""
        return Manifest(self.root)

    def _claim_root(self) -> None:
        """Create the root (0700), or accept an existing one that is empty or already a fleet root."""
        if self.root.exists():
            if not self.root.is_dir():
                raise InvalidRequest(f"fleet root {self.root} exists and is not a directory")
            is_fleet = self.manifest.exists() or self.config_path.exists()
            if not is_fleet and any(self.root.iterdir()):
                raise InvalidRequest(
                    f"{self.root} is not empty and is not a fleet root (it has no {MANIFEST_FILE}):"
                    " the tool would mix its files with yours and could not tell them apart;"
                    " choose a new or empty directory for --root"
                )
        else:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(self.root, 0o700)
        self.manifest.record(self.manifest.path)

    def _choose_data_root(self) -> Path:
        """The root itself, unless the PostgreSQL server user cannot reach it (a 0700 home as root):
        then `<data base>/<hash of the root>` (RESTORE_ASSETS_DATA_BASE, /var/lib/restore-assets)."""
        user = pg.server_user()
        if user.is_current or pg.reachable_by(self.root.parent, user):
            return self.root
        base = Path(os.environ.get(DATA_BASE_ENV) or DEFAULT_DATA_BASE).resolve()
        return base / hashlib.sha256(str(self.root).encode()).hexdigest()[:16]

    def _make_data_root(self, data_root: Path) -> None:
        """Create the data directory outside the root: root-owned 0711 (enter, not list)."""
        base = data_root.parent
        if not base.exists():
            base.mkdir(parents=True)
            os.chmod(base, 0o711)
        st = base.stat()
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise FleetError(
                f"{base} must be owned by {getpass.getuser()} and writable by no one else"
                f" (mode {oct(st.st_mode & 0o777)}): fix it or set {DATA_BASE_ENV}"
            )
        if data_root.exists() and not self.manifest.owns(data_root):
            raise FleetError(
                f"{data_root} already exists and this fleet's manifest does not list it:"
                " remove it or choose another --root"
            )
        self.manifest.record(data_root, base=True)
        data_root.mkdir(exist_ok=True)
        os.chmod(data_root, 0o711)
        if not pg.reachable_by(data_root, pg.server_user()):
            raise FleetError(
                f"{data_root} is not reachable by the {pg.server_user().name!r} user that runs"
                f" PostgreSQL: set {DATA_BASE_ENV} to a directory under one others can enter"
            )

    def _server_dir(self, path: Path) -> Path:
        """Record, create and give to the server user one of the fleet's PostgreSQL directories."""
        self.manifest.record(path)
        pg.give_to_server_user(path)
        os.chmod(path, 0o700)
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
        """Directory of archived WAL segments."""
        return Path(self.config().archive_dir)

    @property
    def backup_dir(self) -> Path:
        """Directory of base backups (one sub-directory each)."""
        return Path(self.config().backup_dir)

    @property
    def temp_root(self) -> Path:
        """Directory holding the temporary clusters, one sub-directory per restore id."""
        return self.data_root / "temp"

    def production_cluster(self) -> pg.Cluster:
        """The managed production cluster."""
        cfg = self.config()
        if cfg.mode != "managed" or cfg.port is None:
            raise FleetError(
                "this fleet adopts an existing cluster: the tool does not manage its server"
            )
        return pg.Cluster(self.data_root / "production" / "data", cfg.port)

    # ---------------------------------------------------------------- lifecycle
    def up(self, pgbackrest: bool = False) -> str:
        """Create the production cluster (or start the existing one); return its masked DSN.

        pgbackrest: a new fleet backs production up with its own pgBackRest stanza (repository
        under the data directory) instead of pg_basebackup and a cp archive.
        """
        if self.exists():
            cfg = self.config()
            if cfg.mode == "adopted":
                self._check_adopted_reachable(cfg)
                return mask_dsn(cfg.dsn or "")
            cluster = self.production_cluster()
            if not cluster.is_running():
                if pg.port_in_use(cluster.port):
                    cluster.port = pg.free_port()
                    cfg.port = cluster.port
                    cluster.configure(self._production_settings())
                    if cfg.pgbackrest_stanza:
                        write_managed_config(self.data_root, cluster.datadir, cluster.port)
                    self._save(cfg)
                cluster.start()
            return cluster.dsn()
        self._claim_root()
        data_root = self._prepare_data_root()
        archive = self._server_dir(data_root / "archive")
        backups = self._server_dir(data_root / "backups")
        production = self._server_dir(data_root / "production")
        cfg = FleetConfig(
            mode="managed",
            archive_dir=str(archive),
            backup_dir=str(backups),
            data_dir=str(data_root),
        )
        settings = self._production_settings(archive)
        if pgbackrest:
            paths = managed_paths(data_root)
            self._server_dir(paths["base"])
            for key in ("repo", "socket", "log", "lock"):
                self._server_dir(paths[key])
            settings.update(managed_settings(data_root))
            cfg.pgbackrest_stanza = MANAGED_STANZA
            cfg.pgbackrest_config = str(paths["config"])
        try:
            cluster = pg.start_new_cluster(production / "data", settings)
            if pgbackrest:
                write_managed_config(data_root, cluster.datadir, cluster.port)
                PgBackRestSource(self, MANAGED_STANZA, cfg.pgbackrest_config).repo.run(
                    "stanza-create", timeout=300
                )
        except Exception:
            pg.Cluster(production / "data", 0).stop(mode="immediate")
            self.manifest.remove(production)
            raise
        cfg.port = cluster.port
        self._save(cfg)
        return cluster.dsn()

    def _prepare_data_root(self) -> Path:
        """Pick and create the data directory; record the root's own service files and artifacts."""
        data_root = self._choose_data_root()
        if data_root != self.root:
            self._make_data_root(data_root)
        elif not pg.server_user().is_current:
            os.chmod(self.root, 0o711)  # the server user enters its own sub-directories only
        for name in ROOT_FILES:
            self.manifest.record(self.root / name)
        artifacts = self.manifest.record(self.root / "artifacts")
        artifacts.mkdir(mode=0o700, exist_ok=True)
        return data_root

    def _production_settings(self, archive: Path | None = None) -> dict[str, str]:
        archive = archive or self.archive_dir
        dest = pg.shell_arg(archive)
        cmd = f"test ! -f {dest}/%f && cp %p {dest}/%f"
        extra = {}
        if self.exists() and self.config().pgbackrest_stanza:
            extra = managed_settings(self.data_root)
        return {
            **pg.BASE_SETTINGS,
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": pg.quote_setting(cmd),
            "max_wal_senders": "10",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            **extra,
        }

    def adopt(
        self, dsn: str, archive_dir: str, backup_dir: str, password: str | None = None
    ) -> None:
        """Point the fleet at an existing self-managed cluster, its WAL archive and its base backups.

        The DSN must not hold a password: libpq takes it from PGPASSWORD or a pgpass file, or pass
        the one the user typed as `password` (kept in `<root>/pgpass`, 0600).
        """
        archive, backups = Path(archive_dir).resolve(), Path(backup_dir).resolve()
        if not archive.is_dir():
            raise InvalidRequest(
                f"archive directory missing: {archive} does not exist or is not a directory"
            )
        if not backups.is_dir():
            raise InvalidRequest(
                f"base-backup directory missing: {backups} does not exist or is not a directory"
            )
        if psycopg.conninfo.conninfo_to_dict(dsn).get("password") is not None:
            raise InvalidRequest(PASSWORD_IN_DSN)
        self._claim_root()
        if password is not None:
            dsn = self._write_pgpass(dsn, password)
        cfg = FleetConfig(
            mode="adopted", archive_dir=str(archive), backup_dir=str(backups), dsn=dsn
        )
        try:
            self._check_adopted_reachable(cfg)
        except Exception:
            if password is not None:
                self.manifest.remove(self.root / PGPASS_FILE)
            raise
        cfg.data_dir = str(self._prepare_data_root())
        self._save(cfg)

    def adopt_pgbackrest(
        self,
        dsn: str,
        stanza: str,
        config: str | None = None,
        password: str | None = None,
        backup_type: str = "incr",
    ) -> None:
        """Point the fleet at an existing cluster backed up by a pgBackRest stanza.

        Refused with pgBackRest's own message when the stanza is missing or its archive does not
        work (`pgbackrest check`), or when the server's archive_command is not pgbackrest's.
        """
        if config is not None:
            config = str(Path(config).resolve())
            if not Path(config).is_file():
                raise InvalidRequest(f"pgBackRest config file missing: {config}")
        if backup_type not in BACKUP_TYPES:
            raise InvalidRequest(f"backup type {backup_type!r} is not one of {BACKUP_TYPES}")
        if psycopg.conninfo.conninfo_to_dict(dsn).get("password") is not None:
            raise InvalidRequest(PASSWORD_IN_DSN)
        source = PgBackRestSource(self, stanza, config)
        self._claim_root()
        if password is not None:
            dsn = self._write_pgpass(dsn, password)
        cfg = FleetConfig(
            mode="adopted",
            archive_dir="",
            backup_dir="",
            dsn=dsn,
            pgbackrest_stanza=stanza,
            pgbackrest_config=config,
            pgbackrest_backup_type=backup_type,
        )
        try:
            self._check_adopted_reachable(cfg)
            with psycopg.connect(dsn, connect_timeout=10) as conn:
                archive_command = conn.execute("SHOW archive_command").fetchone()[0]
            source.check_adoptable(archive_command)
        except Exception:
            if password is not None:
                self.manifest.remove(self.root / PGPASS_FILE)
            raise
        cfg.data_dir = str(self._prepare_data_root())
        self._save(cfg)

    def _write_pgpass(self, dsn: str, password: str) -> str:
        """Keep a prompted password in `<root>/pgpass` (0600); the DSN names it as its passfile."""
        params = psycopg.conninfo.conninfo_to_dict(dsn)

        def field(value: object) -> str:
            return str(value).replace("\\", "\\\\").replace(":", "\\:")

        line = ":".join(
            field(v) for v in ("*", "*", "*", params.get("user") or getpass.getuser(), password)
        )
        path = self.manifest.record(self.root / PGPASS_FILE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(line + "\n")
        params["passfile"] = str(path)
        return psycopg.conninfo.make_conninfo(**params)

    def _check_adopted_reachable(self, cfg: FleetConfig) -> None:
        try:
            with psycopg.connect(cfg.dsn or "", connect_timeout=10) as conn:
                wal_level = conn.execute("SHOW wal_level").fetchone()[0]
        except psycopg.Error as exc:
            raise FleetError(
                f"cannot connect to {mask_dsn(cfg.dsn or '')}: {str(exc).strip()}"
            ) from None
        if wal_level not in ("replica", "logical"):
            raise InvalidRequest(
                f"the adopted cluster has wal_level={wal_level}: point-in-time restore needs replica or logical"
            )

    def down(self, purge: bool = False) -> list[str]:
        """Stop production (when managed) and remove every temporary cluster the manifest lists.

        purge also removes every path the manifest lists (never an adopted cluster's own archive
        or backups), then the manifest, then the root if nothing else is left in it.
        """
        removed = []
        for p in self._temp_dirs():
            if self.manifest.owns(p):
                removed.append(self.delete_temp(p.name))
        if self.exists() and self.config().mode == "managed":
            self.production_cluster().stop()
        if purge:
            self.purge()
        return removed

    def purge(self) -> dict[str, list[str]]:
        """Delete exactly what the manifest lists, then the root if it is empty; return what stayed."""
        manifest = self.manifest
        if not self.root.exists():
            return {"removed": [], "kept": []}  # purged already
        if not manifest.exists():
            raise FleetError(
                f"{self.root} has no {MANIFEST_FILE} (not a fleet root, or made by an older"
                " version): nothing is deleted; remove what you no longer need by hand"
            )
        removed: list[str] = []
        for path in reversed(manifest.paths()):
            if path == manifest.path:
                continue
            if manifest.remove(path):
                removed.append(str(path))
        manifest.path.unlink()
        kept = sorted(p.name for p in self.root.iterdir())
        if not kept:
            self.root.rmdir()
        return {"removed": removed, "kept": kept}

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

    # ---------------------------------------------------------------- snapshots
    def snapshot(self, backup_type: str | None = None) -> Snapshot:
        """Take a base backup of production (pg_basebackup, fast checkpoint, WAL streamed).

        On a pgBackRest fleet: `pgbackrest backup --type=backup_type` (default: the fleet's).
        """
        source = self.pgbackrest
        if source is not None:
            return source.snapshot(backup_type or self.config().pgbackrest_backup_type)
        backups = self.backup_dir
        if not backups.is_dir():
            raise InvalidRequest(f"base-backup directory missing: {backups}")
        now = datetime.now(UTC)
        snap_id = "snap-" + now.strftime("%Y%m%dT%H%M%S%fZ")
        target = backups / snap_id
        # an adopted cluster's backup directory is its owner's: a purge leaves what we put there
        keep = self.config().mode == "adopted"
        self.manifest.record(target, keep=keep)
        self.manifest.record(backups / f"{snap_id}.json", keep=keep)
        started = datetime.now(UTC)
        # which oid is which database, for selective provisioning (before and after the backup)
        dbmap_before = selective.database_map(self.production_dsn())
        try:
            pg.run_server_cmd(
                [
                    pg.pg_bin("pg_basebackup"),
                    "-d",
                    without_password(self.production_dsn()),  # the password goes in PGPASSWORD
                    "-D",
                    str(target),
                    "-Fp",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-password",
                    # each tablespace into the snapshot itself, never onto production's directory
                    *tablespace_mapping(self.production_dsn(), target),
                ],
                env=self._libpq_password_env(),
            )
        except FleetError:
            self.manifest.remove(target)
            raise
        completed = datetime.now(UTC)
        label = (target / "backup_label").read_text()
        start = self._label_times(label).get("START", started)
        meta = {"id": snap_id, "start": start.isoformat(), "stop": completed.isoformat()}
        meta["size_bytes"] = _dir_size(target)
        meta.update(
            selective.stable_map(dbmap_before, selective.database_map(self.production_dsn()))
        )
        (backups / f"{snap_id}.json").write_text(json.dumps(meta))
        return self._snapshot_from(target)

    def _libpq_password_env(self) -> dict[str, str]:
        cfg = self.config()
        if cfg.mode != "adopted":
            return {}
        # the server user cannot read the caller's pgpass file: ask libpq which password it used
        # (from the DSN, PGPASSWORD or a pgpass file) and hand it over in the environment
        try:
            with psycopg.connect(cfg.dsn or "", connect_timeout=10) as conn:
                password = conn.info.password
        except psycopg.Error as exc:
            raise FleetError(
                f"cannot connect to {mask_dsn(cfg.dsn or '')}: {str(exc).strip()}"
            ) from None
        return {"PGPASSWORD": str(password)} if password else {}

    def _label_times(self, text: str) -> dict[str, datetime]:
        out = {}
        for kind, value in LABEL_TIME.findall(text):
            value = value.split("(")[0]
            try:
                out[kind] = parse_pg_time(value)
            except ValueError:
                # an adopted server labels backups in its log_timezone's abbreviation (PST, CEST)
                out[kind] = parse_pg_time(value, self._log_timezone)
        return out

    @functools.cached_property
    def _log_timezone(self) -> str | None:
        """The adopted server's log_timezone (asked once), which its backup labels are printed in."""
        cfg = self.config()
        if cfg.mode != "adopted":
            return None
        try:
            with psycopg.connect(cfg.dsn or "", connect_timeout=10) as conn:
                return conn.execute("SHOW log_timezone").fetchone()[0]
        except psycopg.Error:
            return None

    def _history_stop_times(self) -> dict[str, datetime]:
        """START TIME -> end of the backup from the archive's backup history files (`*.backup`).

        STOP TIME is printed in whole seconds, truncated: the backup became consistent at some
        moment within the second after it, so the end is STOP TIME + 1 s (a restore to an
        earlier point could stop before the backup is consistent, and recovery would fail).
        """
        out: dict[str, datetime] = {}
        archive = self.archive_dir
        if not archive.is_dir():
            return out
        for f in archive.iterdir():
            if BACKUP_HISTORY.match(f.name):
                try:
                    times = self._label_times(f.read_text(errors="replace"))
                except (OSError, ValueError):
                    continue
                if "START" in times and "STOP" in times:
                    out[times["START"].isoformat()] = times["STOP"] + timedelta(seconds=1)
        return out

    def _snapshot_from(self, path: Path, history: dict[str, datetime] | None = None) -> Snapshot:
        meta_file = path.parent / f"{path.name}.json"
        if meta_file.exists():
            meta = json.loads(meta_file.read_text())
            return Snapshot(
                id=path.name,
                created_at=datetime.fromisoformat(meta["start"]),
                completed_at=datetime.fromisoformat(meta["stop"]),
                size_bytes=int(meta["size_bytes"]),
            )
        label = path / "backup_label"
        if not label.exists():
            raise FleetError(f"{path} is not a plain-format base backup (no backup_label)")
        try:
            start = self._label_times(label.read_text(errors="replace"))["START"]
        except (KeyError, ValueError) as exc:
            raise FleetError(f"cannot read the START TIME of {label}: {exc}") from None
        history = history if history is not None else self._history_stop_times()
        stop = history.get(start.isoformat())
        return Snapshot(
            id=path.name, created_at=start, completed_at=stop, size_bytes=_dir_size(path)
        )

    def snapshots(self) -> list[Snapshot]:
        """Every base backup in the backup directory (or pgBackRest backup), oldest first."""
        source = self.pgbackrest
        if source is not None:
            return source.snapshots()
        backups = self.backup_dir
        if not backups.is_dir():
            raise InvalidRequest(f"base-backup directory missing: {backups}")
        history = self._history_stop_times()
        out = []
        for p in sorted(backups.iterdir()):
            if p.is_dir() and (p / "backup_label").exists():
                out.append(self._snapshot_from(p, history))
        return sorted(out, key=lambda s: s.created_at)

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        """One snapshot by id; InvalidRequest naming the known ids when it does not exist."""
        for s in self.snapshots():
            if s.id == snapshot_id:
                return s
        known = ", ".join(s.id for s in self.snapshots()) or "none"
        raise InvalidRequest(f"unknown snapshot id {snapshot_id!r} (known: {known})")

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete one base backup by id (refused on a pgBackRest fleet: retention is pgBackRest's)."""
        cfg = self.config()
        if cfg.pgbackrest_stanza:
            raise InvalidRequest(
                f"snapshot {snapshot_id} is a backup of pgBackRest stanza {cfg.pgbackrest_stanza!r}:"
                " the tool never deletes from a pgBackRest repository; retention is pgBackRest's"
                " job (repo1-retention-full/diff, `pgbackrest expire`)"
            )
        snap = self.get_snapshot(snapshot_id)
        path = self.backup_dir / snap.id
        if not self.manifest.owns(path):
            raise InvalidRequest(
                f"snapshot {snap.id} was not taken by this tool (the fleet manifest does not list"
                f" {path}): it is left in place"
            )
        self.manifest.remove(path)
        meta = self.backup_dir / f"{snap.id}.json"
        if self.manifest.owns(meta):
            self.manifest.remove(meta)

    # ---------------------------------------------------------------- restore window
    def switch_wal(self, timeout: float = 60) -> None:
        """Commit a marker transaction, switch WAL segment and wait until it is archived."""
        with psycopg.connect(self.production_dsn(), autocommit=True, connect_timeout=10) as conn:
            switched_at = conn.execute("SELECT pg_catalog.clock_timestamp()").fetchone()[0]
            conn.execute("SELECT pg_catalog.txid_current()")
            lsn = conn.execute("SELECT pg_catalog.pg_switch_wal()").fetchone()[0]
            seg = conn.execute("SELECT pg_catalog.pg_walfile_name(%s)", (lsn,)).fetchone()[0]
            deadline = time.monotonic() + timeout
            source = self.pgbackrest
            while time.monotonic() < deadline:
                if source is None and (self.archive_dir / seg).exists():
                    return
                failed_wal, failed_at, archived_at, archived_wal = conn.execute(
                    "SELECT last_failed_wal, last_failed_time, last_archived_time,"
                    " last_archived_wal FROM pg_stat_archiver"
                ).fetchone()
                if source is not None and source.is_archived(seg, archived_wal):
                    return
                # segments are archived in order: a failure on an older segment that is still
                # pending (no success since) blocks ours too, so it is reported at once
                if (
                    failed_at is not None
                    and failed_at >= switched_at
                    and (archived_at is None or failed_at > archived_at)
                ):
                    behind = "" if failed_wal == seg else f" (segment {seg} waits behind it)"
                    raise FleetError(
                        f"archiving WAL segment {failed_wal} failed{behind}:"
                        " check archive_command and the production server log"
                    )
                time.sleep(0.1)
        raise FleetError(f"WAL segment {seg} was not archived within {timeout:.0f}s")

    def latest_archived_time(self) -> datetime | None:
        """Time of the last commit found in the archived WAL (pg_waldump over the newest segments)."""
        source = self.pgbackrest
        if source is not None:
            with psycopg.connect(self.production_dsn(), connect_timeout=10) as conn:
                size = conn.execute(
                    "SELECT setting::bigint FROM pg_catalog.pg_settings"
                    " WHERE name = 'wal_segment_size'"
                ).fetchone()[0]
            return source.latest_archived_time(int(size))
        archive = self.archive_dir
        if not archive.is_dir():
            raise InvalidRequest(f"archive directory missing: {archive}")
        segments = sorted(f.name for f in archive.iterdir() if WAL_SEGMENT.match(f.name))
        return self.last_commit_in(archive, segments)

    def last_commit_in(self, archive: Path, segments: list[str]) -> datetime | None:
        """Time of the last commit in the newest of these WAL segments of a directory (pg_waldump)."""
        for seg in reversed(segments[-8:]):
            proc = subprocess.run(
                [pg.pg_bin("pg_waldump"), "--path", str(archive), "--rmgr=Transaction", seg],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
                env={**os.environ, "TZ": "UTC"},
            )
            found = WALDUMP_TIME.findall(proc.stdout)
            if found:
                return parse_pg_time(found[-1])
        return None

    def window(self, refresh: bool = False) -> RestoreWindow:
        """Earliest = oldest snapshot's completion; latest = last commit in the archived WAL."""
        if refresh:
            self.switch_wal()
        snaps = self.snapshots()
        earliest = None
        if snaps:
            first = snaps[0]
            earliest = first.completed_at or first.created_at
        latest = self.latest_archived_time() if snaps else None
        if latest is not None and earliest is not None and latest < earliest:
            # right after a snapshot nothing committed since it has reached the archive: no point
            # in time is restorable yet (the snapshot itself is, by its id); never a backwards window
            latest = None
        return RestoreWindow(earliest=earliest, latest=latest)

    def describe(self) -> Source:
        """Topology, engine version, restore window and snapshots of the production cluster."""
        with psycopg.connect(self.production_dsn(), connect_timeout=10) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        mode = self.config().mode
        return Source(
            identifier=str(self.root),
            topology="local-cluster"
            if mode == "managed"
            else ("pgbackrest-stanza" if self.pgbackrest else "adopted-cluster"),
            engine_version=version,
            window=self.window(),
            snapshots=self.snapshots(),
        )

    def check_target(self, target: RestoreTarget) -> datetime:
        """Refuse a time in the future or outside the window, or an unknown snapshot; return the point."""
        source = self.pgbackrest
        if source is not None:
            source.require_backups()
        elif not self.archive_dir.is_dir():
            raise InvalidRequest(f"archive directory missing: {self.archive_dir}")
        if target.snapshot_id:
            snap = self.get_snapshot(target.snapshot_id)
            return snap.completed_at or snap.created_at
        t = target.restore_time
        if t is None or t.tzinfo is None:
            raise InvalidRequest("restore time must be an ISO 8601 timestamp with a time zone")
        now = datetime.now(UTC)
        if t > now:
            raise InvalidRequest(
                f"restore time {t.isoformat()} is in the future (now {now.isoformat()})"
            )
        snaps = self.snapshots()
        if not snaps:
            raise InvalidRequest(
                "no snapshot exists yet: take one with `restore-assets fleet snapshot`"
            )
        self._base_for(t, snaps)
        window = self.window()
        archiving = ""
        if window.latest is None or t >= window.latest:
            try:
                self.switch_wal()
            except FleetError as exc:
                # archiving is failing: the window ends at the last WAL that reached the archive
                archiving = f"; {exc}"
            window = self.window()
        if window.latest is None or t >= window.latest:
            latest = window.latest.isoformat() if window.latest else "none"
            raise InvalidRequest(
                f"restore time {t.isoformat()} is after the last archived WAL"
                f" (latest restorable {latest}){archiving}"
            )
        return t

    def _base_for(self, t: datetime, snaps: list[Snapshot]) -> Snapshot:
        usable = [s for s in snaps if (s.completed_at or s.created_at) <= t]
        if not usable:
            first = snaps[0]
            raise InvalidRequest(
                f"restore time {t.isoformat()} is before the earliest snapshot"
                f" ({first.id}, consistent from {(first.completed_at or first.created_at).isoformat()})"
            )
        return usable[-1]

    # ---------------------------------------------------------------- temporary clusters
    def _temp_dirs(self) -> list[Path]:
        if not self.temp_root.is_dir():
            return []
        return sorted(p for p in self.temp_root.iterdir() if p.is_dir())

    def temp_instances(self) -> list[dict[str, Any]]:
        """Every temporary cluster under the root, with its state."""
        out = []
        for d in self._temp_dirs():
            info = {"restore_id": d.name, "dir": str(d)}
            meta = d / "instance.json"
            if meta.exists():
                info.update(json.loads(meta.read_text()))
                info["running"] = pg.Cluster(d / "data", int(info["port"])).is_running()
            out.append(info)
        return out

    def prepare(self, restore_id: str, record: RecordResource | None = None) -> None:
        """Nothing to start early on this machine (the temporary cluster is created by provision)."""

    def provision(
        self,
        restore_id: str,
        target: RestoreTarget,
        record: RecordResource | None = None,
        timeout: float = 300,
        databases: list[str] | None = None,
    ) -> TempDatabase:
        """Restore a temporary cluster on a free port from a snapshot or to a point in time.

        Databases (when given) are the only ones whose files are restored: pgBackRest's
        `--db-include`, or a selective copy of a plain snapshot (`selective`; a full copy when the
        snapshot does not allow it). The others exist in the catalog but cannot be connected to.
        `details["provisioning"]` says which path was taken and the bytes copied and zero-filled.
        """
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", restore_id):
            raise InvalidRequest(
                f"restore id {restore_id!r} may hold only letters, digits, '.', '_' and '-'"
            )
        self.check_target(target)
        if target.snapshot_id:
            base = self.get_snapshot(target.snapshot_id)
        else:
            assert target.restore_time is not None
            base = self._base_for(target.restore_time, self.snapshots())
        workdir = self.temp_root / restore_id
        if workdir.exists():
            raise FleetError(
                f"a temporary cluster for restore {restore_id} already exists: {workdir}"
            )
        port = pg.free_port()
        socket_dir = workdir / "socket"
        if len(str(socket_dir / f".s.PGSQL.{port}.lock")) > SOCKET_PATH_MAX:
            socket_dir = Path(tempfile.gettempdir()) / f"restore-assets-{os.urandom(6).hex()}"
        details = {
            "dir": str(workdir),
            "port": port,
            "socket_dir": str(socket_dir),
            "snapshot": base.id,
            "root": str(self.root),
        }
        if record:
            record(TEMP_KIND, restore_id, details)
        if not self.manifest.owns(self.temp_root):
            self._server_dir(self.temp_root)
        self._server_dir(workdir)
        meta = {**details, "created_at": datetime.now(UTC).isoformat(), "creator_pid": os.getpid()}
        (workdir / "instance.json").write_text(json.dumps(meta))
        if socket_dir.parent != workdir:
            self.manifest.record(socket_dir, base=True)
            os.mkdir(socket_dir, 0o700)  # fails on an existing path: never someone else's
        pg.give_to_server_user(socket_dir)
        os.chmod(socket_dir, 0o700)
        cluster = pg.Cluster(workdir / "data", port, host=str(socket_dir))
        source = self.pgbackrest
        provisioning: dict[str, Any] = {
            "mode": "selective" if databases else "full",
            "by": "pgbackrest --db-include" if databases else "pgbackrest restore",
        }
        try:
            if source is not None:
                restore_cmd = source.materialize(
                    cluster, base, target, databases, self._process_max()
                )
                # pgBackRest's advice for --db-include: PostgreSQL >= 13 ignores the zeroed
                # pages of left-out databases, and the log is checked for the restored one below
                self._prepare_recovery(
                    cluster,
                    target,
                    restore_cmd,
                    # and no autovacuum worker opens a left-out database
                    extra={"ignore_invalid_pages": "on", "autovacuum": "off"}
                    if databases
                    else None,
                )
            else:
                provisioning = self._copy_snapshot(base, cluster, databases)
                relocate_tablespaces(cluster.datadir, self.backup_dir / base.id)
                # as for --db-include: replay skips records without a page image that meet a
                # zero-filled page (checked below: only in zero-filled databases), and no
                # autovacuum worker opens a zero-filled database
                selected = provisioning["mode"] == "selective"
                extra = {"ignore_invalid_pages": "on", "autovacuum": "off"} if selected else {}
                self._prepare_recovery(cluster, target, extra=extra)
            t0 = time.monotonic()
            cluster.start(timeout=timeout)
            self._wait_promoted(cluster, timeout)
            provisioning["recovery_seconds"] = round(time.monotonic() - t0, 3)
            if provisioning["mode"] == "selective":
                zero = provisioning.pop("zero_oids", None)
                if zero is None and source is not None:
                    # pgBackRest: every user database --db-include left out, by the copy's catalog
                    zero = excluded_oids(cluster.dsn(), databases or [])
                check_invalid_pages(cluster.logfile, set(zero or []))
                provisioning["connections_barred"] = selective.close_zero_filled(
                    cluster.dsn(), set(zero or []), databases or []
                )
        except BaseException:
            # nothing usable was made: stop the server and remove its directory (its last log
            # error is already in the exception), so a failed restore leaves no instance behind
            self.delete_temp(restore_id)
            raise
        return TempDatabase(
            restore_id=restore_id,
            identifier=f"local:{restore_id}",
            host=str(socket_dir),
            port=port,
            user=self.superuser(),
            details={
                "dir": str(workdir),
                "snapshot": base.id,
                "log": str(cluster.logfile),
                "provisioning": provisioning,
            },
        )

    def _copy_snapshot(
        self, base: Snapshot, cluster: pg.Cluster, databases: list[str] | None
    ) -> dict[str, Any]:
        """Copy a plain snapshot into the data directory: selectively when it can, else in full."""
        src = self.backup_dir / base.id
        fpw = None
        if databases:
            try:
                fpw = selective.database_map(self.production_dsn())["full_page_writes"]
            except psycopg.Error:
                fpw = None  # production down: the snapshot's record decides
        decision = selective.decide(src, self.backup_dir / f"{base.id}.json", databases, fpw)
        t0 = time.monotonic()
        if decision.mode == "selective":
            counts = selective.copy_snapshot(src, cluster.datadir, decision.zero_oids)
            return {
                **decision.to_dict(),
                **counts,
                "copy_seconds": round(time.monotonic() - t0, 3),
                "zero_oids": sorted(decision.zero_oids),
            }
        pg.run_server_cmd(["cp", "-a", str(src), str(cluster.datadir)])
        return {
            **decision.to_dict(),
            "bytes_copied": base.size_bytes,
            "bytes_zero_filled": 0,
            "copy_seconds": round(time.monotonic() - t0, 3),
        }

    def _process_max(self) -> int:
        return self.config().pgbackrest_process_max or max(1, min(8, os.cpu_count() or 1))

    def _prepare_recovery(
        self,
        cluster: pg.Cluster,
        target: RestoreTarget,
        restore_cmd: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        for name in ("postmaster.pid", "postmaster.opts", "standby.signal"):
            (cluster.datadir / name).unlink(missing_ok=True)
        restore_cmd = restore_cmd or f"cp {pg.shell_arg(self.archive_dir)}/%f %p"
        settings = {
            **pg.BASE_SETTINGS,
            "archive_mode": "off",
            "archive_command": "''",
            "restore_command": pg.quote_setting(restore_cmd),
            "recovery_target_action": "'promote'",
            "hot_standby": "on",
            "primary_conninfo": "''",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
        }
        if target.snapshot_id:
            settings["recovery_target"] = "'immediate'"
        else:
            assert target.restore_time is not None
            stamp = target.restore_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
            settings["recovery_target_time"] = f"'{stamp}'"
        # an adopted cluster may carry its own archive/replication settings in postgresql.auto.conf
        auto = cluster.datadir / "postgresql.auto.conf"
        if auto.exists():
            cluster.write_file(
                "postgresql.auto.conf", "# cleared by restore-assets for a temporary copy\n"
            )
        # it holds a copy of every tenant: no TCP at all, a unix socket in a 0700 directory of the
        # server user, and peer authentication of the tool's own OS users (the caller, and the
        # server user that runs pg_dump/pg_basebackup when the caller is root)
        role = self.superuser()
        users = sorted({pg.current_user_name(), pg.server_user().name})
        cluster.write_file("pg_hba.conf", f"local all all peer map={IDENT_MAP}\n")
        cluster.write_file(
            "pg_ident.conf", "".join(f"{IDENT_MAP} {u} {pg.quote_conf(role)}\n" for u in users)
        )
        settings.update(
            listen_addresses="''",
            unix_socket_directories=pg.quote_setting(cluster.host),
            unix_socket_permissions="0700",
        )
        cluster.configure({**settings, **(extra or {})})
        cluster.write_file("recovery.signal", "")

    def _wait_promoted(self, cluster: pg.Cluster, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_exc: Exception | None = None
        while time.monotonic() < deadline:
            if not cluster.is_running():
                raise FleetError(
                    f"temporary cluster stopped during recovery: {cluster.last_log_error()}"
                )
            try:
                with psycopg.connect(
                    cluster.dsn(), user=self.superuser(), connect_timeout=5
                ) as conn:  # the temporary cluster's unix socket (cluster.host)
                    if not conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()[0]:
                        return
            except psycopg.OperationalError as exc:
                last_exc = exc
            time.sleep(0.2)
        raise FleetError(
            f"temporary cluster on port {cluster.port} not promoted within {timeout:.0f}s:"
            f" {cluster.last_log_error() or last_exc}"
        )

    def plan_resources(self, plan: Any) -> list[dict[str, Any]]:
        """What a restore of this plan would create on this machine (nothing is created)."""
        target = plan.request.target
        base = (
            self.get_snapshot(target.snapshot_id)
            if target.snapshot_id
            else self._base_for(plan.restore_point, self.snapshots())
        )
        free = shutil.disk_usage(self.root).free
        databases = None if plan.request.full_provision else [plan.request.database]
        if self.pgbackrest is not None:
            provisioning = {"mode": "selective" if databases else "full", "by": "pgbackrest"}
        else:
            provisioning = selective.decide(
                self.backup_dir / base.id,
                self.backup_dir / f"{base.id}.json",
                databases,
                None,
            ).to_dict()
        out: list[dict[str, Any]] = [
            {
                "kind": TEMP_KIND,
                "from_snapshot": base.id,
                "recovery": "immediate"
                if target.snapshot_id
                else f"to {plan.restore_point.isoformat()}",
                "disk_bytes": base.size_bytes,
                "provisioning": provisioning,
                "free_disk_bytes": free,
                "enough_disk": free > 2 * base.size_bytes,
                "port": "a free port on 127.0.0.1",
            }
        ]
        for schema, restored in plan.targets.items():
            out.append(
                {
                    "kind": "restored-schema",
                    "database": plan.request.database,
                    "from": schema,
                    "name": restored,
                }
            )
        out.append(
            {
                "kind": "artifacts",
                "dir": str(self.root / "artifacts"),
                "files": ["pre.sql", "post.sql", "full.sql"],
            }
        )
        return out

    def temp_dsn(self, db: TempDatabase, database: str = "postgres") -> str:
        """Connection string to one database of a temporary cluster."""
        return pg.dsn(db.port, database, user=db.user, host=db.host)

    def delete_temp(self, restore_id: str) -> str:
        """Stop and delete the temporary cluster of a restore (idempotent).

        Only a directory the fleet manifest lists is deleted; any other path is refused.
        """
        workdir = self.temp_root / restore_id
        if workdir.parent != self.temp_root or restore_id in ("", ".", ".."):
            raise InvalidRequest(f"restore id {restore_id!r} is not a temporary cluster's name")
        if not os.path.lexists(workdir):
            return restore_id
        if not self.manifest.owns(workdir):
            raise FleetError(
                f"{workdir} is not listed in the fleet manifest: it was not created by this tool"
                " and is left in place"
            )
        meta = workdir / "instance.json"
        socket_dir = None
        # a pgbackrest restore left running by a crashed provision: stop it before deleting
        stop_restore(workdir / "data")
        if meta.exists():
            info = json.loads(meta.read_text())
            pg.Cluster(workdir / "data", int(info["port"])).stop(mode="immediate")
            socket_dir = Path(info["socket_dir"]) if info.get("socket_dir") else None
        elif (workdir / "data").exists():
            pg.Cluster(workdir / "data", 0).stop(mode="immediate")
        self.manifest.remove(workdir)
        if (
            socket_dir is not None
            and socket_dir.parent != workdir
            and self.manifest.owns(socket_dir)
        ):
            self.manifest.remove(socket_dir)
        return restore_id

    def delete_resource(self, kind: str, identifier: str, details: dict[str, Any]) -> None:
        """Delete one recorded resource; a resource already gone is success."""
        if kind == TEMP_KIND:
            self.delete_temp(identifier)
        else:
            raise FleetError(f"the local fleet cannot delete a resource of kind {kind!r}")

    def status(self) -> dict[str, Any]:
        """Clusters, snapshots and restore window, JSON-ready."""
        cfg = self.config()
        out: dict[str, Any] = {
            "root": str(self.root),
            "mode": cfg.mode,
            "data_dir": str(self.data_root),
        }
        if cfg.mode == "managed":
            cluster = self.production_cluster()
            out["production"] = {
                "dsn": cluster.dsn(),
                "port": cluster.port,
                "running": cluster.is_running(),
                "datadir": str(cluster.datadir),
            }
        else:
            out["production"] = {"dsn": mask_dsn(cfg.dsn or "")}
        if cfg.pgbackrest_stanza:
            out["pgbackrest"] = {
                "stanza": cfg.pgbackrest_stanza,
                "config": cfg.pgbackrest_config,
                "backup_type": cfg.pgbackrest_backup_type,
            }
        else:
            out["archive_dir"] = cfg.archive_dir
            out["backup_dir"] = cfg.backup_dir
        out["snapshots"] = [s.to_dict() for s in self.snapshots()]
        out["window"] = self.window().to_dict()
        out["temporary"] = self.temp_instances()
        return out
