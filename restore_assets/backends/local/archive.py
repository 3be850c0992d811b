"""The restore window of a local fleet: archived WAL, the last commit in it, and the checks of a target."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from restore_assets.backends.local import pg
from restore_assets.backends.protocols import RestoreTarget, RestoreWindow, Snapshot
from restore_assets.core.errors import FleetError, InvalidRequest

if TYPE_CHECKING:
    from restore_assets.backends.local.fleet import LocalFleet

WAL_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
# pg_waldump runs with TZ=UTC: its commit times are printed in UTC
WALDUMP_TIME = re.compile(r"desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")


# (directory, identities of the newest segments) -> the last commit in them: a restore asks for the
# window up to three times (the request's check, validate, provision), and archived segments do
# not change; a new, replaced or growing segment has another identity, so it is read again
_LAST_COMMITS: dict[tuple, datetime | None] = {}


def _identity(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (path.name, st.st_ino, st.st_size, st.st_mtime_ns)


def last_commit_in(directory: Path, segments: list[str]) -> datetime | None:
    """Time of the last commit in the newest of these WAL segments of a directory (pg_waldump)."""
    newest = segments[-8:]
    key = (str(directory), tuple(_identity(directory / seg) for seg in newest))
    if key in _LAST_COMMITS:
        return _LAST_COMMITS[key]
    found_at = None
    for seg in reversed(newest):
        proc = subprocess.run(
            [pg.pg_bin("pg_waldump"), "--path", str(directory), "--rmgr=Transaction", seg],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={**os.environ, "TZ": "UTC"},
        )
        found = WALDUMP_TIME.findall(proc.stdout)
        if found:
            found_at = datetime.fromisoformat(found[-1]).replace(tzinfo=UTC)
            break
    if len(_LAST_COMMITS) >= 64:
        _LAST_COMMITS.clear()
    _LAST_COMMITS[key] = found_at
    return found_at


def segments_in(directory: Path) -> list[str]:
    """Names of the WAL segments in a directory, oldest first."""
    return sorted(f.name for f in directory.iterdir() if WAL_SEGMENT.match(f.name))


def reported_archived(segment: str, last_archived_wal: str | None) -> bool:
    """True once pg_stat_archiver's last archived file is this segment or a later one (segments
    are archived in order, each reported once archive_command has succeeded)."""
    return bool(last_archived_wal) and str(last_archived_wal)[:24] >= segment


def switch_wal(fleet: LocalFleet, timeout: float = 60) -> None:
    """Commit a marker transaction, switch WAL segment and wait until it is archived."""
    with psycopg.connect(fleet.production_dsn(), autocommit=True, connect_timeout=10) as conn:
        switched_at = conn.execute("SELECT pg_catalog.clock_timestamp()").fetchone()[0]
        conn.execute("SELECT pg_catalog.txid_current()")
        lsn = conn.execute("SELECT pg_catalog.pg_switch_wal()").fetchone()[0]
        seg = conn.execute("SELECT pg_catalog.pg_walfile_name(%s)", (lsn,)).fetchone()[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            failed_wal, failed_at, archived_at, archived_wal = conn.execute(
                "SELECT last_failed_wal, last_failed_time, last_archived_time,"
                " last_archived_wal FROM pg_stat_archiver"
            ).fetchone()
            if fleet.source.is_archived(seg, archived_wal):
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


def window(fleet: LocalFleet, refresh: bool = False) -> RestoreWindow:
    """Earliest = oldest snapshot's completion; latest = last commit in the archived WAL."""
    if refresh:
        switch_wal(fleet)
    snaps = fleet.source.snapshots()
    earliest = None
    if snaps:
        first = snaps[0]
        earliest = first.completed_at or first.created_at
    latest = fleet.source.latest_archived_time() if snaps else None
    if latest is not None and earliest is not None and latest < earliest:
        # right after a snapshot nothing committed since it has reached the archive: no point
        # in time is restorable yet (the snapshot itself is, by its id); never a backwards window
        latest = None
    return RestoreWindow(earliest=earliest, latest=latest)


def check_target(fleet: LocalFleet, target: RestoreTarget) -> datetime:
    """Refuse a time in the future or outside the window, or an unknown snapshot; return the point."""
    fleet.source.check_ready()
    if target.snapshot_id:
        snap = usable_snapshot(fleet, target.snapshot_id)
        return snap.completed_at or snap.created_at
    t = target.past_time()
    snaps = fleet.source.snapshots()
    if not snaps:
        raise InvalidRequest(
            "no snapshot exists yet: take one with `restore-assets fleet snapshot`"
        )
    base_for(t, snaps, fleet.source.refused_bases())
    current = window(fleet)
    archiving = ""
    if current.latest is None or t >= current.latest:
        try:
            switch_wal(fleet)
        except FleetError as exc:
            # archiving is failing: the window ends at the last WAL that reached the archive
            archiving = f"; {exc}"
        current = window(fleet)
    if current.latest is None or t >= current.latest:
        latest = current.latest.isoformat() if current.latest else "none"
        raise InvalidRequest(
            f"restore time {t.isoformat()} is after the last archived WAL"
            f" (latest restorable {latest}){archiving}"
        )
    return t


def base_for(t: datetime, snaps: list[Snapshot], refused: dict[str, str] | None = None) -> Snapshot:
    """The newest snapshot consistent at or before t and not refused (id -> why recovery to the
    latest timeline cannot start from it); refused when t is before the first one."""
    consistent = [s for s in snaps if (s.completed_at or s.created_at) <= t]
    usable = [s for s in consistent if s.id not in (refused or {})]
    if not usable and consistent:
        why = "; ".join((refused or {})[s.id] for s in consistent[-3:])
        raise InvalidRequest(
            f"restore time {t.isoformat()}: no snapshot consistent before it lies on the history"
            f" of the latest timeline ({why})"
        )
    if not usable:
        first = snaps[0]
        raise InvalidRequest(
            f"restore time {t.isoformat()} is before the earliest snapshot"
            f" ({first.id}, consistent from {(first.completed_at or first.created_at).isoformat()})"
        )
    return usable[-1]


def usable_snapshot(fleet: LocalFleet, snapshot_id: str) -> Snapshot:
    """One snapshot by id, refused (with why) when recovery to the latest timeline cannot start from it."""
    snap = fleet.get_snapshot(snapshot_id)
    why = fleet.source.refused_bases().get(snap.id)
    if why:
        raise InvalidRequest(f"snapshot {snap.id} cannot be restored: {why}")
    return snap


LABEL_START = re.compile(r"^START WAL LOCATION: ([0-9A-F]+)/([0-9A-F]+)", re.M)
LABEL_TIMELINE = re.compile(r"^START TIMELINE: (\d+)", re.M)
HISTORY_FILE = re.compile(r"^([0-9A-F]{8})\.history$")
PREFETCH_MAX_SEGMENTS = 4096  # segments named ahead of replay (64 GB of 16 MB segments)
PREFETCH_AHEAD = 32  # staged segments replay has not taken yet, at most


def segments_to_prefetch(directory: Path, backup_label: str, until: datetime | None) -> list[Path]:
    """The archived segments replay from this base backup reads first, in order: from the
    backup's start, consecutive ones on its timeline archived up to `until` and the one after it
    (a segment's mtime is when it was archived, after every record in it). Empty for a snapshot
    target, an unreadable label, or an archive holding a later timeline (replay may switch)."""
    start, tli = LABEL_START.search(backup_label), LABEL_TIMELINE.search(backup_label)
    if until is None or not start or not tli:
        return []
    timeline = int(tli.group(1))
    names = os.listdir(directory)
    if any(int(m.group(1), 16) > timeline for f in names if (m := HISTORY_FILE.match(f))):
        return []
    segments = [f for f in names if WAL_SEGMENT.match(f)]
    try:
        size = (directory / segments[0]).stat().st_size if segments else 0  # all alike
    except OSError:
        return []
    if size <= 0 or size & (size - 1):
        return []
    first = ((int(start.group(1), 16) << 32) | int(start.group(2), 16)) // size
    per_id = 0x100000000 // size
    out: list[Path] = []
    for segno in range(first, first + PREFETCH_MAX_SEGMENTS):
        path = directory / f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"
        try:
            st = path.stat()
        except OSError:
            break
        if st.st_size != size:
            break
        out.append(path)
        if st.st_mtime > until.timestamp():
            break  # archived after the target: replay stops in it or before
    return out


class WalPrefetch:
    """Copies the archived segments replay asks for first into a staging directory of the
    temporary instance, in a thread, ahead of replay (at most PREFETCH_AHEAD waiting): each
    appears there whole (written under another name, then renamed), and the restore_command
    moves it into pg_wal (a rename) instead of copying it from the archive while replay waits.
    A segment not staged yet is copied from the archive as before."""

    def __init__(self, segments: list[Path], stage: Path, pg_wal: Path) -> None:
        self.segments, self.stage, self.pg_wal = segments, stage, pg_wal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-prefetch", daemon=True)
        self.staged = 0

    def restore_command(self, fallback: str) -> str:
        """The restore_command taking a staged segment, else running `fallback`."""
        return f"mv -f {pg.shell_arg(self.stage)}/%f %p 2>/dev/null || {fallback}"

    def start(self) -> None:
        """Start copying, in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop copying (replay is done, or the provision failed) and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        user = pg.server_user()
        try:
            for segment in self.segments:
                while len(os.listdir(self.stage)) >= PREFETCH_AHEAD and not self._stop.is_set():
                    self._stop.wait(0.01)
                if self._stop.is_set():
                    return
                if (self.pg_wal / segment.name).exists():
                    continue  # replay took it from the archive already
                part = self.stage / f".{segment.name}.part"
                shutil.copyfile(segment, part)
                os.chmod(part, 0o600)  # WAL holds every tenant's rows: its owner's only
                if not user.is_current:
                    os.chown(part, user.uid, user.gid)
                os.rename(part, self.stage / segment.name)
                self.staged += 1
        except OSError:
            return  # what is not staged is copied from the archive
