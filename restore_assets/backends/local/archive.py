"""The restore window of a local fleet: archived WAL, the last commit in it, and the checks of a target."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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


# a block reference in pg_waldump's output: rel <tablespace>/<database>/<relfilenode>
BLOCK_REF = re.compile(rb"rel \d+/(\d+)/(\d+)")
WALDUMP_TIME_BYTES = re.compile(WALDUMP_TIME.pattern.encode())
LABEL_START = re.compile(r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)", re.M)
LABEL_TIMELINE = re.compile(r"^START TIMELINE: (\d+)", re.M)
HISTORY_FILE = re.compile(r"^([0-9A-F]{8})\.history$")


def relations_replayed(
    directory: Path,
    backup_label: str,
    until: datetime | None,
    stop: threading.Event | None = None,
    timeout: float = 600,
    parts: int = 2,
) -> set[tuple[int, int]] | None:
    """(database oid, relfilenode) of every block that replay from a base backup to `until` (None:
    to the backup's end) can touch, read with pg_waldump from the archive; None when unknown."""
    start, tli = LABEL_START.search(backup_label), LABEL_TIMELINE.search(backup_label)
    if not start or not tli:
        return None
    timeline = int(tli.group(1))
    if any(
        int(m.group(1), 16) > timeline
        for f in os.listdir(directory)
        if (m := HISTORY_FILE.match(f))
    ):
        return None  # replay may follow a newer timeline, which pg_waldump does not
    hi, lo = (int(x, 16) for x in start.group(1).split("/"))
    span = _contiguous_span(directory, timeline, (hi << 32) | lo)
    if span is None:
        return None
    # consecutive ranges of whole segments, read by one pg_waldump each, side by side
    first, end, size = span
    s0, n = first // size, (end - first + size - 1) // size
    inner = sorted({(s0 + k * n // parts) * size for k in range(1, parts)})
    cuts = [first, *(c for c in inner if first < c < end), end]
    ranges = [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    scan = _RangeScan(
        [pg.pg_bin("pg_waldump"), "--path", str(directory), "--timeline", str(timeline)],
        # pg_waldump prints commit times as 2026-01-02 03:04:05.000006: they compare as strings
        until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f").encode() if until else None,
        stop or threading.Event(),
        time.monotonic() + timeout,
    )
    with ThreadPoolExecutor(len(ranges)) as pool:
        results = list(pool.map(scan.read, range(len(ranges)), ranges))
    # every range up to the one where replay stops must have been read (a range pg_waldump
    # could not read would hide its relations)
    needed = range(min(scan.reached, len(ranges) - 1) + 1)
    if any(results[i] is None or i not in scan.read_ok for i in needed):
        return None
    return {(int(db), int(rel)) for i in needed for db, rel in results[i] or ()}


def _lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass
class _RangeScan:
    """pg_waldump over one LSN range of the replay: the block references, until the target."""

    args: list[str]
    last: bytes | None  # the target as pg_waldump prints times; None: up to the backup's end
    stop: threading.Event
    deadline: float
    reached: int = 1 << 30  # the first range where replay stops: later ones need not be read
    read_ok: set[int] = field(default_factory=set)  # ranges that held records
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, index: int, bounds: tuple[int, int]) -> set[tuple[bytes, bytes]] | None:
        """The (database, relfilenode) byte pairs of one range; None when it could not be read."""
        proc = subprocess.Popen(
            [*self.args, "--start", _lsn(bounds[0]), "--end", _lsn(bounds[1])],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
        )
        found: set[tuple[bytes, bytes]] = set()
        tail = b""
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read(1 << 20):
                cut = chunk.rfind(b"\n") + 1
                lines, tail = tail + chunk[:cut], chunk[cut:]
                if b"rmgr: " in lines:
                    self.read_ok.add(index)
                found.update(BLOCK_REF.findall(lines))
                # replay stops before the first commit after the target (or at the backup's
                # end): what follows in this chunk is read too, a harmless superset
                if (self.last is None and b"desc: BACKUP_END" in lines) or (
                    self.last is not None
                    and max(WALDUMP_TIME_BYTES.findall(lines), default=b"") > self.last
                ):
                    with self.lock:
                        self.reached = min(self.reached, index)
                    break
                if self.reached < index:
                    break  # an earlier range holds the end of replay: nothing here is replayed
                if time.monotonic() > self.deadline or self.stop.is_set():
                    return None
        finally:
            proc.kill()
            proc.wait()
        return found


def _contiguous_span(directory: Path, timeline: int, start: int) -> tuple[int, int, int] | None:
    """(start, end, segment size): where the archive's WAL from start on this timeline stops
    being contiguous (given to pg_waldump, which otherwise waits seconds for a next segment)."""
    segments = set(segments_in(directory))

    def name(segno: int, size: int) -> str:
        per_id = 0x100000000 // size
        return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"

    size = (directory / next(iter(segments))).stat().st_size if segments else 0  # all alike
    if size <= 0 or size & (size - 1) or name(start // size, size) not in segments:
        return None
    segno = start // size
    while name(segno + 1, size) in segments:
        segno += 1
    return start, (segno + 1) * size, size
