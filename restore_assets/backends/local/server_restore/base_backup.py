"""The server restore of a fleet backed up by pg_basebackup into its WAL archive directory: copy
the base backup in place, recover to its consistent point, promote; on rollback, move the WAL of
the abandoned timeline out of the archive (never deleted)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from restore_assets.backends.local import pg
from restore_assets.backends.local.server_restore.names import IDENTIFIER, RESTORED_KIND
from restore_assets.backends.local.server_restore.recovery import (
    copy_config_files,
    recover_and_promote,
)
from restore_assets.core.errors import FleetError
from restore_assets.core.server_restore.protocols import InPlaceRestore

if TYPE_CHECKING:
    from restore_assets.backends.local.server_restore.backend import LocalInstanceBackend


def walfile_name(timeline: int, lsn: str, segment_size: int) -> str:
    """The WAL segment file name holding an LSN ('0/2000100') on a timeline."""
    hi, lo = (int(x, 16) for x in lsn.split("/"))
    segno = ((hi << 32) | lo) // segment_size
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def archive_names(archive: Path, pattern: str) -> list[str]:
    """Names of the files in the WAL archive directory matching a glob pattern, sorted."""
    return sorted(p.name for p in archive.glob(pattern)) if archive.is_dir() else []


def _clear_partial_conflict(
    backend: LocalInstanceBackend, snapshot: dict[str, Any], datadir: Path, suffix: str
) -> str | None:
    """Move aside an archived `.partial` the promotion would archive again under the same name."""
    if not snapshot.get("end_lsn") or not snapshot.get("timeline"):
        return None
    out = pg.run_server_cmd([pg.pg_bin("pg_controldata"), "-D", str(datadir)]).stdout
    found = re.search(r"Bytes per WAL segment:\s+(\d+)", out)
    seg_size = int(found.group(1)) if found else 16 * 1024 * 1024
    name = walfile_name(int(snapshot["timeline"]), snapshot["end_lsn"], seg_size) + ".partial"
    path = backend.fleet.archive_dir / name
    if not path.exists():
        return None
    target = backend.aside_root / f"superseded-{suffix}"
    target.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), target / name)
    return name


def restore(backend: LocalInstanceBackend, job: InPlaceRestore) -> dict[str, Any]:
    """Copy the base backup in place, keep production's configuration, recover, promote."""
    fleet, snapshot, names = backend.fleet, job.snapshot, job.names
    port = int(job.source.config["port"])
    datadir = Path(names["datadir"])
    aside = Path(names["renamed_dir"])
    if datadir.exists():
        raise FleetError(f"{datadir} exists: the original was not set aside")
    job.record(RESTORED_KIND, IDENTIFIER, {"datadir": str(datadir), "snapshot": snapshot["id"]})
    fleet.manifest.record(datadir)  # a rollback removes the restored directory only
    pg.run_server_cmd(["cp", "-a", snapshot["path"], str(datadir)])
    copy_config_files(aside, datadir)
    cluster = pg.Cluster(datadir, port)
    for name in ("postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal"):
        (datadir / name).unlink(missing_ok=True)
    moved = _clear_partial_conflict(backend, snapshot, datadir, names["suffix"])
    restore_cmd = f"cp {pg.shell_arg(fleet.archive_dir)}/%f %p"
    recovery = {
        "restore_command": pg.quote_setting(restore_cmd),
        "recovery_target": "'immediate'",
        "recovery_target_action": "'promote'",
        # the snapshot's own timeline: 'latest' could be a timeline that forked before it
        "recovery_target_timeline": "'current'",
    }
    timeline = recover_and_promote(cluster, recovery, backend.start_timeout)
    return {
        "port": port,
        "timeline": timeline,
        "snapshot": snapshot["id"],
        "moved_partial": moved,
    }


def quarantine_timelines(
    backend: LocalInstanceBackend, details: dict[str, Any], suffix: str
) -> list[str]:
    """Move the WAL of timelines the half-restored cluster started out of the archive."""
    archive = backend.fleet.archive_dir
    new_history = set(archive_names(archive, "*.history")) - set(details.get("history_before", []))
    new_partial = set(archive_names(archive, "*.partial")) - set(details.get("partial_before", []))
    timelines = {h.split(".")[0] for h in new_history}
    moved: list[str] = []
    target = backend.aside_root / f"abandoned-{suffix}"
    for f in sorted(archive.iterdir()) if archive.is_dir() else []:
        if f.name[:8] in timelines or f.name in new_partial:
            target.mkdir(parents=True, exist_ok=True)
            shutil.move(str(f), target / f.name)
            moved.append(f.name)
    return moved
