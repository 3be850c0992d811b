"""The local fleet's production cluster: create or adopt it, its root and data directory, stop, purge."""

from __future__ import annotations

import getpass
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from restore_assets.backends.local import pg
from restore_assets.backends.local.dsn import connect, mask_dsn
from restore_assets.backends.local.manifest import MANIFEST_FILE
from restore_assets.backends.local.pgbackrest import BACKUP_TYPES, MANAGED_STANZA, managed_paths
from restore_assets.backends.local.sources import open_source
from restore_assets.core.errors import FleetError, InvalidRequest

if TYPE_CHECKING:
    from restore_assets.backends.local.fleet import LocalFleet

PGPASS_FILE = "pgpass"
DATA_BASE_ENV = "RESTORE_ASSETS_DATA_BASE"
DEFAULT_DATA_BASE = "/var/lib/restore-assets"
# what the services of a fleet create in its root: the audit log and its journals, the Dagster
# home of restores run without DAGSTER_HOME (jobs/in_process) and the logs of the detached
# processes that release a restore's temporary instance after the answer (jobs/schema_phases);
# artifacts are made here
ROOT_FILES = (
    "audit.sqlite",
    "audit.sqlite-journal",
    "audit.sqlite-wal",
    "audit.sqlite-shm",
    "dagster",
    "logs",
)
PASSWORD_IN_DSN = (
    "the DSN holds a password, and a command line is visible to every user of this machine"
    " (ps): remove password= from --dsn and give it in PGPASSWORD, a pgpass file"
    " (~/.pgpass or PGPASSFILE), or at the prompt"
)
PRODUCTION_SETTINGS = {
    **pg.BASE_SETTINGS,
    "wal_level": "replica",
    "archive_mode": "on",
    "max_wal_senders": "10",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
}


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


# ---------------------------------------------------------------------- the root and data directory
def claim_root(fleet: LocalFleet) -> None:
    """Create the root (0700), or accept an existing one that is empty or already a fleet root."""
    root = fleet.root
    if root.exists():
        if not root.is_dir():
            raise InvalidRequest(f"fleet root {root} exists and is not a directory")
        is_fleet = fleet.manifest.exists() or fleet.config_path.exists()
        if not is_fleet and any(root.iterdir()):
            raise InvalidRequest(
                f"{root} is not empty and is not a fleet root (it has no {MANIFEST_FILE}):"
                " the tool would mix its files with yours and could not tell them apart;"
                " choose a new or empty directory for --root"
            )
    else:
        root.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(root, 0o700)
    fleet.manifest.record(fleet.manifest.path)


def _choose_data_root(fleet: LocalFleet) -> Path:
    """The root itself, unless the PostgreSQL server user cannot reach it (a 0700 home as root):
    then `<data base>/<hash of the root>` (RESTORE_ASSETS_DATA_BASE, /var/lib/restore-assets)."""
    user = pg.server_user()
    if user.is_current or pg.reachable_by(fleet.root.parent, user):
        return fleet.root
    base = Path(os.environ.get(DATA_BASE_ENV) or DEFAULT_DATA_BASE).resolve()
    return base / hashlib.sha256(str(fleet.root).encode()).hexdigest()[:16]


def _make_data_root(fleet: LocalFleet, data_root: Path) -> None:
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
    if data_root.exists() and not fleet.manifest.owns(data_root):
        raise FleetError(
            f"{data_root} already exists and this fleet's manifest does not list it:"
            " remove it or choose another --root"
        )
    fleet.manifest.record(data_root, base=True)
    data_root.mkdir(exist_ok=True)
    os.chmod(data_root, 0o711)
    if not pg.reachable_by(data_root, pg.server_user()):
        raise FleetError(
            f"{data_root} is not reachable by the {pg.server_user().name!r} user that runs"
            f" PostgreSQL: set {DATA_BASE_ENV} to a directory under one others can enter"
        )


def prepare_data_root(fleet: LocalFleet) -> Path:
    """Pick and create the data directory; record the root's own service files and artifacts."""
    data_root = _choose_data_root(fleet)
    if data_root != fleet.root:
        _make_data_root(fleet, data_root)
    elif not pg.server_user().is_current:
        os.chmod(fleet.root, 0o711)  # the server user enters its own sub-directories only
    for name in ROOT_FILES:
        fleet.manifest.record(fleet.root / name)
    artifacts = fleet.manifest.record(fleet.root / "artifacts")
    artifacts.mkdir(mode=0o700, exist_ok=True)
    return data_root


def server_dir(fleet: LocalFleet, path: Path) -> Path:
    """Record, create and give to the server user one of the fleet's PostgreSQL directories."""
    fleet.manifest.record(path)
    pg.give_to_server_user(path)
    os.chmod(path, 0o700)
    return path


# ---------------------------------------------------------------------- a managed production
def up(fleet: LocalFleet, pgbackrest: bool = False) -> str:
    """Create the production cluster (or start the existing one); return its masked DSN.

    pgbackrest: a new fleet backs production up with its own pgBackRest stanza (repository
    under the data directory) instead of pg_basebackup and a cp archive.
    """
    if fleet.exists():
        return _start_existing(fleet)
    claim_root(fleet)
    data_root = prepare_data_root(fleet)
    archive = server_dir(fleet, data_root / "archive")
    backups = server_dir(fleet, data_root / "backups")
    production = server_dir(fleet, data_root / "production")
    cfg = FleetConfig(
        mode="managed", archive_dir=str(archive), backup_dir=str(backups), data_dir=str(data_root)
    )
    if pgbackrest:  # the backup source is chosen once, when the fleet is created
        paths = managed_paths(data_root)
        for key in ("base", "repo", "socket", "log", "lock"):
            server_dir(fleet, paths[key])
        cfg.pgbackrest_stanza, cfg.pgbackrest_config = MANAGED_STANZA, str(paths["config"])
    source = open_source(fleet, cfg)
    try:
        cluster = pg.start_new_cluster(
            production / "data", {**PRODUCTION_SETTINGS, **source.production_settings()}
        )
        source.production_configured(cluster, new=True)
    except Exception:
        pg.Cluster(production / "data", 0).stop(mode="immediate")
        fleet.manifest.remove(production)
        raise
    cfg.port = cluster.port
    fleet.save(cfg)
    return cluster.dsn()


def _start_existing(fleet: LocalFleet) -> str:
    """Start the production of an existing fleet (on a free port if its own is taken)."""
    cfg = fleet.config()
    if cfg.mode == "adopted":
        check_adopted_reachable(cfg)
        return mask_dsn(cfg.dsn or "")
    cluster = fleet.production_cluster()
    if not cluster.is_running():
        if pg.port_in_use(cluster.port):
            cluster.port = pg.free_port()
            cfg.port = cluster.port
            cluster.configure({**PRODUCTION_SETTINGS, **fleet.source.production_settings()})
            fleet.source.production_configured(cluster, new=False)
            fleet.save(cfg)
        cluster.start()
    return cluster.dsn()


# ---------------------------------------------------------------------- an adopted production
def _check_dsn(dsn: str) -> None:
    if psycopg.conninfo.conninfo_to_dict(dsn).get("password") is not None:
        raise InvalidRequest(PASSWORD_IN_DSN)


def _adopt(fleet: LocalFleet, cfg: FleetConfig, password: str | None, check: Any = None) -> None:
    """Record an adopted production (cfg, whose DSN holds no password) after checking it is reachable.

    password (typed at the prompt) is kept in `<root>/pgpass` (0600); check(cfg) runs last.
    """
    _check_dsn(cfg.dsn or "")
    claim_root(fleet)
    if password is not None:
        cfg.dsn = _write_pgpass(fleet, cfg.dsn or "", password)
    try:
        check_adopted_reachable(cfg)
        if check is not None:
            check(cfg)
    except Exception:
        if password is not None:
            fleet.manifest.remove(fleet.root / PGPASS_FILE)
        raise
    cfg.data_dir = str(prepare_data_root(fleet))
    fleet.save(cfg)


def adopt_base_backups(
    fleet: LocalFleet, dsn: str, archive_dir: str, backup_dir: str, password: str | None = None
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
    cfg = FleetConfig(mode="adopted", archive_dir=str(archive), backup_dir=str(backups), dsn=dsn)
    _adopt(fleet, cfg, password)


def adopt_pgbackrest(
    fleet: LocalFleet,
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
    _check_dsn(dsn)
    cfg = FleetConfig(
        mode="adopted",
        archive_dir="",
        backup_dir="",
        dsn=dsn,
        pgbackrest_stanza=stanza,
        pgbackrest_config=config,
        pgbackrest_backup_type=backup_type,
    )
    source = open_source(fleet, cfg)  # refuses a bad stanza name before anything is created

    def check(cfg: FleetConfig) -> None:
        with connect(cfg.dsn or "") as conn:
            archive_command = conn.execute("SHOW archive_command").fetchone()[0]
        source.check_adoptable(archive_command)

    _adopt(fleet, cfg, password, check)


def _write_pgpass(fleet: LocalFleet, dsn: str, password: str) -> str:
    """Keep a prompted password in `<root>/pgpass` (0600); the DSN names it as its passfile."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)

    def field(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace(":", "\\:")

    line = ":".join(
        field(v) for v in ("*", "*", "*", params.get("user") or getpass.getuser(), password)
    )
    path = fleet.manifest.record(fleet.root / PGPASS_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(line + "\n")
    params["passfile"] = str(path)
    return psycopg.conninfo.make_conninfo(**params)


def check_adopted_reachable(cfg: FleetConfig) -> None:
    """Refuse an adopted cluster the tool cannot connect to, or whose WAL cannot serve a PITR."""
    with connect(cfg.dsn or "") as conn:
        wal_level = conn.execute("SHOW wal_level").fetchone()[0]
    if wal_level not in ("replica", "logical"):
        raise InvalidRequest(
            f"the adopted cluster has wal_level={wal_level}: point-in-time restore needs replica or logical"
        )


# ---------------------------------------------------------------------- stop and remove
def down(fleet: LocalFleet, purge: bool = False) -> list[str]:
    """Stop production (when managed) and remove every temporary cluster the manifest lists.

    purge also removes every path the manifest lists (never an adopted cluster's own archive
    or backups), then the manifest, then the root if nothing else is left in it.
    """
    removed = []
    for p in fleet.temp_dirs():
        if fleet.manifest.owns(p):
            removed.append(fleet.delete_temp(p.name))
    if fleet.exists() and fleet.config().mode == "managed":
        fleet.production_cluster().stop()
    if purge:
        purge_root(fleet)
    return removed


def purge_root(fleet: LocalFleet) -> dict[str, list[str]]:
    """Delete exactly what the manifest lists, then the root if it is empty; return what stayed."""
    manifest = fleet.manifest
    if not fleet.root.exists():
        return {"removed": [], "kept": []}  # purged already
    if not manifest.exists():
        raise FleetError(
            f"{fleet.root} has no {MANIFEST_FILE} (not a fleet root, or made by an older"
            " version): nothing is deleted; remove what you no longer need by hand"
        )
    removed: list[str] = []
    for path in reversed(manifest.paths()):
        if path == manifest.path:
            continue
        if manifest.remove(path):
            removed.append(str(path))
    manifest.path.unlink()
    kept = sorted(p.name for p in fleet.root.iterdir())
    if not kept:
        fleet.root.rmdir()
    return {"removed": removed, "kept": kept}
