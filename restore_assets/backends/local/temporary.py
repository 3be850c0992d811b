"""Temporary instances of a local fleet: restore one from a snapshot or to a point in time, list, delete."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from restore_assets.backends.local import pg, selective
from restore_assets.backends.local.archive import base_for, check_target, usable_snapshot
from restore_assets.backends.local.cluster import server_dir
from restore_assets.backends.local.pgbackrest import check_invalid_pages
from restore_assets.backends.local.sources import Materialization, Materialized
from restore_assets.backends.protocols import RecordResource, RestoreTarget, Snapshot, TempDatabase
from restore_assets.core.errors import FleetError, InvalidRequest

if TYPE_CHECKING:
    from restore_assets.backends.local.fleet import LocalFleet

TEMP_KIND = "local-temp-cluster"
IDENT_MAP = "restore_assets"
SOCKET_PATH_MAX = 100  # sun_path holds 107 bytes; `.s.PGSQL.<port>` is appended to the directory


def temp_dirs(fleet: LocalFleet) -> list[Path]:
    """The directories under the fleet's temp root, one per restore id."""
    if not fleet.temp_root.is_dir():
        return []
    return sorted(p for p in fleet.temp_root.iterdir() if p.is_dir())


def temp_instances(fleet: LocalFleet) -> list[dict[str, Any]]:
    """Every temporary cluster under the root, with its state."""
    out = []
    for d in temp_dirs(fleet):
        info = {"restore_id": d.name, "dir": str(d)}
        meta = d / "instance.json"
        if meta.exists():
            info.update(json.loads(meta.read_text()))
            info["running"] = pg.Cluster(d / "data", int(info["port"])).is_running()
        out.append(info)
    return out


def _base_of(fleet: LocalFleet, target: RestoreTarget, point: datetime | None) -> Snapshot:
    """The snapshot a restore to this target starts from."""
    if target.snapshot_id:
        return usable_snapshot(fleet, target.snapshot_id)
    assert point is not None
    return base_for(point, fleet.snapshots(), fleet.source.refused_bases())


def _new_workdir(
    fleet: LocalFleet, restore_id: str, base: Snapshot, record: RecordResource | None
) -> pg.Cluster:
    """Record the temporary cluster (audit first, then manifest) and make its directories."""
    workdir = fleet.temp_root / restore_id
    if workdir.exists():
        raise FleetError(f"a temporary cluster for restore {restore_id} already exists: {workdir}")
    port = pg.free_port()
    socket_dir = workdir / "socket"
    if len(str(socket_dir / f".s.PGSQL.{port}.lock")) > SOCKET_PATH_MAX:
        socket_dir = Path(tempfile.gettempdir()) / f"restore-assets-{os.urandom(6).hex()}"
    details = {
        "dir": str(workdir),
        "port": port,
        "socket_dir": str(socket_dir),
        "snapshot": base.id,
        "root": str(fleet.root),
    }
    if record:
        record(TEMP_KIND, restore_id, details)
    if not fleet.manifest.owns(fleet.temp_root):
        server_dir(fleet, fleet.temp_root)
    server_dir(fleet, workdir)
    meta = {**details, "created_at": datetime.now(UTC).isoformat(), "creator_pid": os.getpid()}
    (workdir / "instance.json").write_text(json.dumps(meta))
    if socket_dir.parent != workdir:
        fleet.manifest.record(socket_dir, base=True)
        os.mkdir(socket_dir, 0o700)  # fails on an existing path: never someone else's
    pg.give_to_server_user(socket_dir)
    os.chmod(socket_dir, 0o700)
    return pg.Cluster(workdir / "data", port, host=str(socket_dir))


def provision(
    fleet: LocalFleet,
    restore_id: str,
    target: RestoreTarget,
    record: RecordResource | None = None,
    timeout: float = 300,
    databases: list[str] | None = None,
    schemas: list[str] | None = None,
) -> TempDatabase:
    """Restore a temporary cluster on a free port from a snapshot or to a point in time.

    Databases (when given) are the only ones whose files are restored: pgBackRest's
    `--db-include`, or a selective copy of a plain snapshot (`selective`; a full copy when the
    snapshot does not allow it). The others exist in the catalog but cannot be connected to.
    Schemas (when given with one database) narrow a plain snapshot's copy to them: other schemas'
    relations are zero-filled too (`selective`), unless the snapshot's relation map forbids it.
    `details["provisioning"]` says which path was taken and the bytes copied and zero-filled.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", restore_id):
        raise InvalidRequest(
            f"restore id {restore_id!r} may hold only letters, digits, '.', '_' and '-'"
        )
    point = check_target(fleet, target)
    base = _base_of(fleet, target, point)
    cluster = _new_workdir(fleet, restore_id, base, record)
    made: Materialized | None = None
    try:
        made = fleet.source.materialize(Materialization(cluster, base, target, databases, schemas))
        provisioning = made.provisioning
        prepare_recovery(fleet, cluster, target, made.restore_command, made.recovery_settings())
        t0 = time.monotonic()
        if made.prefetch is not None:
            made.prefetch.start()
        cluster.start(timeout=timeout)
        # the temporary cluster admits the tool on its unix socket (cluster.host), as its role;
        # a selective copy is connected to in a restored database only (postgres may be zero-filled)
        own = databases[0] if made.selective and databases else "postgres"
        cluster.wait_promoted(
            timeout, user=fleet.superuser(), what="temporary cluster", dbname=own, paused=True
        )
        provisioning["recovery_seconds"] = round(time.monotonic() - t0, 3)
        if made.prefetch is not None:
            made.prefetch.stop()
            provisioning["wal_segments_prefetched"] = made.prefetch.staged
        if made.selective:
            zero = fleet.source.left_out_oids(cluster.dsn(own), databases, made)
            check_invalid_pages(cluster.logfile, zero, made.zero_files)
            provisioning["connections_refused"] = selective.check_zero_filled(
                cluster.dsn(own), zero, databases or []
            )
    except BaseException:
        if made is not None and made.prefetch is not None:
            made.prefetch.stop()  # before its directory goes
        # nothing usable was made: stop the server and remove its directory (its last log
        # error is already in the exception), so a failed restore leaves no instance behind
        delete_temp(fleet, restore_id)
        raise
    return TempDatabase(
        restore_id=restore_id,
        identifier=f"local:{restore_id}",
        host=cluster.host,
        port=cluster.port,
        user=fleet.superuser(),
        details={
            "dir": str(cluster.datadir.parent),
            "snapshot": base.id,
            "log": str(cluster.logfile),
            "provisioning": provisioning,
        },
    )


# Nothing of a temporary instance is kept, and after a crash the cleanup removes it: its replay,
# restartpoints and end-of-recovery checkpoint need not wait for the disk (it is never a production
# server: prepare_recovery configures temporary instances only).
THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "checkpoint_timeout": "'1h'",
    "max_wal_size": "'16GB'",
}


def prepare_recovery(
    fleet: LocalFleet,
    cluster: pg.Cluster,
    target: RestoreTarget,
    restore_cmd: str,
    extra: dict[str, str] | None = None,
) -> None:
    """Configure a restored data directory to recover to the target, privately, and pause there."""
    for name in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        (cluster.datadir / name).unlink(missing_ok=True)
    settings = {
        **pg.BASE_SETTINGS,
        **THROWAWAY_SETTINGS,
        "archive_mode": "off",
        "archive_command": "''",
        "restore_command": pg.quote_setting(restore_cmd),
        # the instance stays a hot standby paused at the target: everything the tool does there
        # reads (pg_dump, COPY TO), and promotion would only add an end-of-recovery checkpoint
        # of every page replay wrote and a new timeline
        "recovery_target_action": "'pause'",
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
    role = fleet.superuser()
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


def plan_resources(fleet: LocalFleet, plan: Any) -> list[dict[str, Any]]:
    """What a restore of this plan would create on this machine (nothing is created)."""
    target = plan.request.target
    base = _base_of(fleet, target, plan.restore_point)
    free = shutil.disk_usage(fleet.root).free
    databases = None if plan.request.full_provision else [plan.request.database]
    schemas = None if plan.request.full_provision else sorted(plan.targets)
    out: list[dict[str, Any]] = [
        {
            "kind": TEMP_KIND,
            "from_snapshot": base.id,
            "recovery": "immediate"
            if target.snapshot_id
            else f"to {plan.restore_point.isoformat()}",
            "disk_bytes": base.size_bytes,
            "provisioning": fleet.source.plan_provisioning(base, databases, schemas),
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
            "dir": str(fleet.root / "artifacts"),
            "files": ["pre.sql", "post.sql", "full.sql"],
        }
    )
    return out


def temp_dsn(fleet: LocalFleet, db: TempDatabase, database: str = "postgres") -> str:
    """Connection string to one database of a temporary cluster."""
    return pg.dsn(db.port, database, user=db.user, host=db.host)


def delete_resource(fleet: LocalFleet, kind: str, identifier: str, details: dict[str, Any]) -> None:
    """Delete one recorded resource; a resource already gone is success."""
    if kind != TEMP_KIND:
        raise FleetError(f"the local fleet cannot delete a resource of kind {kind!r}")
    delete_temp(fleet, identifier)


def delete_temp(fleet: LocalFleet, restore_id: str) -> str:
    """Stop and delete the temporary cluster of a restore (idempotent).

    Only a directory the fleet manifest lists is deleted; any other path is refused.
    """
    workdir = fleet.temp_root / restore_id
    if workdir.parent != fleet.temp_root or restore_id in ("", ".", ".."):
        raise InvalidRequest(f"restore id {restore_id!r} is not a temporary cluster's name")
    if not os.path.lexists(workdir):
        return restore_id
    if not fleet.manifest.owns(workdir):
        raise FleetError(
            f"{workdir} is not listed in the fleet manifest: it was not created by this tool"
            " and is left in place"
        )
    meta = workdir / "instance.json"
    socket_dir = None
    # a restore left running by a crashed provision: stop it before deleting what it wrote
    fleet.source.stop_materializing(workdir / "data")
    if meta.exists():
        info = json.loads(meta.read_text())
        pg.Cluster(workdir / "data", int(info["port"])).stop(mode="immediate")
        socket_dir = Path(info["socket_dir"]) if info.get("socket_dir") else None
    elif (workdir / "data").exists():
        pg.Cluster(workdir / "data", 0).stop(mode="immediate")
    fleet.manifest.remove(workdir)
    if socket_dir is not None and socket_dir.parent != workdir and fleet.manifest.owns(socket_dir):
        fleet.manifest.remove(socket_dir)
    return restore_id
