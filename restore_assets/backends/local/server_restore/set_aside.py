"""The original data directory of a local server restore: set aside (production stopped, its
directory renamed to data.old-<suffix> and recorded), copied to a final backup, then removed."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from restore_assets.backends.local import pg
from restore_assets.backends.local.server_restore.base_backup import archive_names
from restore_assets.backends.local.server_restore.names import ASIDE_KIND, IDENTIFIER
from restore_assets.backends.local.server_restore.recovery import control_state
from restore_assets.core.errors import FleetError
from restore_assets.core.server_restore.protocols import Record

if TYPE_CHECKING:
    from restore_assets.backends.local.server_restore.backend import LocalInstanceBackend


def set_aside(
    backend: LocalInstanceBackend, cluster: pg.Cluster, names: dict[str, Any], record: Record
) -> dict[str, Any]:
    """Archive the last WAL, stop production, rename its data directory to data.old-<suffix>."""
    fleet = backend.fleet
    aside = Path(names["renamed_dir"])
    if aside.exists():
        raise FleetError(f"{aside} already exists")
    running = cluster.is_running()
    details = {
        "datadir": str(cluster.datadir),
        "aside": str(aside),
        "port": cluster.port,
        "was_running": running,
        "history_before": archive_names(fleet.archive_dir, "*.history"),
        "partial_before": archive_names(fleet.archive_dir, "*.partial"),
    }
    record(ASIDE_KIND, IDENTIFIER, details)
    # recorded in the fleet manifest before the rename: the only set-aside directory (and log)
    # a later delete_old or rollback may remove
    fleet.manifest.record(aside)
    fleet.manifest.record(aside.parent / f"{aside.name}.log")
    if running:
        fleet.switch_wal()
        cluster.stop(mode="fast")
        if cluster.is_running():
            raise FleetError(f"production on port {cluster.port} did not stop")
    os.rename(cluster.datadir, aside)
    if cluster.logfile.exists():
        os.rename(cluster.logfile, aside.parent / f"{aside.name}.log")
    return {"aside": str(aside), "stopped": running}


def final_backup(
    backend: LocalInstanceBackend, datadir: Path, name: str, names: dict[str, Any]
) -> dict[str, Any]:
    """A copy of a STOPPED data directory into final-backups/<name> (the local twin of an RDS
    final snapshot). A copy, not pg_basebackup: the set-aside cluster is stopped, and starting
    it would archive WAL of its old timeline into the fleet's archive."""
    manifest = backend.fleet.manifest
    if pg.Cluster(datadir, 0).is_running():
        raise FleetError(f"{datadir} has a running server: not copied, not removed")
    root = backend.final_backups
    if not root.exists():
        manifest.record(root)
        pg.give_to_server_user(root)
        os.chmod(root, 0o700)
    target = root / name
    if os.path.lexists(target):
        raise FleetError(f"final backup {target} already exists: nothing removed")
    manifest.record(target, keep=True)
    pg.run_server_cmd(["cp", "-a", str(datadir), str(target)])
    meta = {
        "name": name,
        "path": str(target),
        "copied_from": str(datadir),
        "restore_id": names.get("restore_id"),
        "taken_at": datetime.now(UTC).isoformat(),
        "cluster_state": control_state(target),
        "pg_version": (target / "PG_VERSION").read_text().strip(),
        "how_to_use": f"pg_ctl -D {target} -o '-p <free port> -c archive_mode=off' start",
    }
    meta_path = manifest.record(root / f"{name}.json", keep=True)
    meta_path.write_text(json.dumps(meta, indent=2))
    os.chmod(meta_path, 0o600)
    return meta


def delete_old(
    backend: LocalInstanceBackend, names: dict[str, Any], keep_old: bool, skip_final: bool
) -> dict[str, Any]:
    """Back data.old-<suffix> up (the final snapshot), then remove it; or keep it. Only the
    directory the fleet manifest recorded at set_aside is removed."""
    manifest = backend.fleet.manifest
    aside = Path(names["renamed_dir"])
    if keep_old:
        return {"kept": str(aside)}
    if not manifest.owns(aside):
        raise FleetError(
            f"{aside} is not recorded in the fleet manifest as set aside by the tool: kept"
        )
    out: dict[str, Any] = {"removed": str(aside)}
    if names.get("final_snapshot") and not skip_final and aside.exists():
        out["final_snapshot"] = final_backup(backend, aside, names["final_snapshot"], names)
    manifest.remove(aside)
    log_file = aside.parent / f"{aside.name}.log"
    if manifest.owns(log_file):
        manifest.remove(log_file)
    return out
