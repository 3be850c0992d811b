"""The server restore of a managed fleet backed up by its own pgBackRest stanza: `pgbackrest
restore --delta` into a copy of the set-aside directory, recovery to the backup's consistent point
or to a point in time, promotion with WAL archiving held until the server is verified; after a
rollback that comes once archiving was released, the original is moved above the abandoned
timeline."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from restore_assets.backends.local import pg
from restore_assets.backends.local.server_restore.names import IDENTIFIER, RESTORED_KIND
from restore_assets.backends.local.server_restore.recovery import (
    CONFIG_FILES,
    HOLD_MARK,
    copy_config_files,
    recover_and_promote,
)
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.core.errors import FleetError, InvalidRequest
from restore_assets.core.server_restore.model import Described
from restore_assets.core.server_restore.protocols import InPlaceRestore

if TYPE_CHECKING:
    from restore_assets.backends.local.fleet import LocalFleet
    from restore_assets.backends.local.server_restore.backend import LocalInstanceBackend

# what the seed copy of the set-aside directory leaves out: its WAL (pgBackRest restores none and
# --delta would delete it) and the files of a server that ran
SEED_SKIP = ("pg_wal", "postmaster.pid", "postmaster.opts")


def backup_info(fleet: LocalFleet, snap: Any, source: Described) -> dict[str, Any]:
    """A pgBackRest backup (by label) of the stanza's current database, as a restore's base."""
    source_repo = fleet.pgbackrest
    assert source_repo is not None
    info = source_repo.repo.info()
    backup = next(b for b in info.get("backup", []) if b.get("label") == snap.id)
    db_id = backup.get("database", {}).get("id")
    versions = {d.get("id"): str(d.get("version")) for d in info.get("db", [])}
    current = max(versions, default=None)
    if db_id != current or versions.get(db_id) != source.config["pg_version"]:
        raise InvalidRequest(
            f"backup {snap.id} is of PostgreSQL {versions.get(db_id)} (stanza database"
            f" {db_id}), production runs {source.config['pg_version']}: restore it into a"
            " temporary cluster instead"
        )
    return {**snap.to_dict(), "pg_version": versions[db_id], "label": snap.id}


def check_seedable(datadir: Path) -> None:
    """Refuse a data directory whose WAL or tablespaces live elsewhere: a copy of it would
    point at the original's own directories, and --delta would write into them."""
    if (datadir / "pg_wal").is_symlink():
        raise InvalidRequest(
            f"{datadir}/pg_wal is a link to another directory: a pgBackRest server restore"
            " cannot keep the original untouched; restore schemas instead"
        )
    tblspc = datadir / "pg_tblspc"
    if tblspc.is_dir() and any(tblspc.iterdir()):
        raise InvalidRequest(
            "production has tablespaces: a pgBackRest server restore would write into their"
            " directories, which the set-aside original still uses; restore schemas instead"
        )


def _seed(aside: Path, datadir: Path) -> None:
    """A new data directory holding a copy of the set-aside one (no WAL), for --delta."""
    check_seedable(aside)
    os.mkdir(datadir, 0o700)
    pg.give_to_server_user(datadir)
    entries = sorted(str(p) for p in aside.iterdir() if p.name not in SEED_SKIP)
    if entries:
        pg.run_server_cmd(["cp", "-a", *entries, f"{datadir}/"], timeout=24 * 3600)
    pg.run_server_cmd(["mkdir", "-m", "700", "-p", str(datadir / "pg_wal" / "archive_status")])


def restore(backend: LocalInstanceBackend, job: InPlaceRestore) -> dict[str, Any]:
    """Seed a copy of the set-aside directory, `pgbackrest restore --delta` into it, recover
    to the backup's consistent point or to the point in time, promote; archiving held."""
    fleet, names = backend.fleet, job.names
    port = int(job.source.config["port"])
    datadir = Path(names["datadir"])
    aside = Path(names["renamed_dir"])
    label = job.snapshot["id"]
    restore_time = job.snapshot.get("restore_time")
    source_repo = fleet.pgbackrest
    if source_repo is None:
        raise FleetError("this fleet has no pgBackRest stanza any more")
    if os.path.lexists(datadir):
        raise FleetError(f"{datadir} exists: the original was not set aside")
    tablespaces = datadir.parent / f"tablespaces-{names['suffix']}"
    job.record(
        RESTORED_KIND,
        IDENTIFIER,
        {"datadir": str(datadir), "snapshot": label, "by": "pgbackrest restore --delta"},
    )
    # a rollback removes only these: the seeded directory, and what pgBackRest would put
    # for tablespaces of the backup (refused below)
    fleet.manifest.record(datadir)
    fleet.manifest.record(tablespaces)
    t0 = time.monotonic()
    _seed(aside, datadir)
    seeded = time.monotonic()
    if restore_time:
        target = RestoreTarget(restore_time=datetime.fromisoformat(restore_time))
    else:
        target = RestoreTarget(snapshot_id=label)
    source_repo.repo.restore(
        datadir, label, target, None, source_repo.process_max, tablespaces, delta=True
    )
    delta = time.monotonic()
    if os.path.lexists(tablespaces):
        raise FleetError(
            f"backup {label} holds tablespaces: not restorable in place (restore schemas)"
        )
    for name in CONFIG_FILES:
        (datadir / name).unlink(missing_ok=True)  # pgBackRest's recovery settings included
    copy_config_files(aside, datadir)
    for name in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        (datadir / name).unlink(missing_ok=True)
    cluster = pg.Cluster(datadir, port)
    recovery = {
        "restore_command": pg.quote_setting(source_repo.repo.restore_command(datadir)),
        "recovery_target_action": "'promote'",
    }
    if restore_time:
        stamp = target.restore_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        recovery["recovery_target_time"] = f"'{stamp}'"
        recovery["recovery_target_timeline"] = "'latest'"  # production's own lineage
    else:
        recovery["recovery_target"] = "'immediate'"
        recovery["recovery_target_timeline"] = "'current'"  # the backup's own timeline
    # PostgreSQL keeps the WAL (.ready) while archive_command is empty: nothing of the new
    # timeline reaches the repository before wait_restored has verified the server
    timeline = recover_and_promote(
        cluster, recovery, backend.start_timeout, HOLD_MARK + "archive_command = ''\n"
    )
    recovered = time.monotonic()
    return {
        "port": port,
        "timeline": timeline,
        "snapshot": label,
        "restore_time": restore_time,
        "by": "pgbackrest restore --delta",
        "archiving": "held until verified",
        "timings_s": {
            "seed_copy": round(seeded - t0, 3),
            "pgbackrest_delta": round(delta - seeded, 3),
            "recovery": round(recovered - delta, 3),
        },
    }


def above_abandoned_timeline(backend: LocalInstanceBackend, cluster: pg.Cluster) -> int:
    """Start the (stopped, put back) original through archive recovery to its own end and
    promote it: PostgreSQL picks a timeline above every one in the repository, so restores
    that follow the latest timeline follow the original, never the abandoned restore."""
    source_repo = backend.fleet.pgbackrest
    assert source_repo is not None
    # no target: to the end of its own WAL (a clean shutdown: nothing to replay), then promote
    recovery = {
        "restore_command": pg.quote_setting(source_repo.repo.restore_command(cluster.datadir)),
        "recovery_target_timeline": "'current'",
    }
    timeline = recover_and_promote(cluster, recovery, backend.start_timeout)
    backend.fleet.switch_wal()  # its history file reaches the repository
    return timeline
