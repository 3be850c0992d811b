"""The last commit in the archived WAL is read once per set of segments (pg_waldump is not rerun)."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from restore_assets.backends.local import archive

SEGMENT = "000000010000000000000003"


@pytest.fixture
def waldump(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """pg_waldump replaced by a fake that reports one commit at a time read from the segment."""
    calls: list[list[str]] = []
    real_run = subprocess.run

    def fake_run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        if not args[0].endswith("pg_waldump"):
            return real_run(args, **kw)  # type: ignore[call-overload]
        calls.append(args)
        stamp = (Path(args[2]) / args[-1]).read_text().strip()
        out = f"rmgr: Transaction desc: COMMIT {stamp} UTC\n"
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")

    monkeypatch.setattr(archive.subprocess, "run", fake_run)
    monkeypatch.setattr(archive, "_LAST_COMMITS", {})
    return calls


def test_unchanged_segments_are_read_once(tmp_path: Path, waldump: list[list[str]]):
    (tmp_path / SEGMENT).write_text("2026-12-02 10:00:00.5\n")
    first = archive.last_commit_in(tmp_path, [SEGMENT])
    again = archive.last_commit_in(tmp_path, [SEGMENT])
    assert first == again == datetime(2026, 12, 2, 10, 0, 0, 500000, tzinfo=UTC)
    assert len(waldump) == 1


def test_a_changed_or_new_segment_is_read_again(tmp_path: Path, waldump: list[list[str]]):
    seg = tmp_path / SEGMENT
    seg.write_text("2026-12-02 10:00:00\n")
    archive.last_commit_in(tmp_path, [SEGMENT])
    seg.write_text("2026-12-02 11:00:00.25\n")  # grew (a segment still being copied in)
    os.utime(seg, ns=(1, 2))
    assert archive.last_commit_in(tmp_path, [SEGMENT]) == datetime(
        2026, 12, 2, 11, 0, 0, 250000, tzinfo=UTC
    )
    newer = "000000010000000000000004"
    (tmp_path / newer).write_text("2026-12-02 12:00:00\n")
    assert archive.last_commit_in(tmp_path, [SEGMENT, newer]) == datetime(
        2026, 12, 2, 12, 0, tzinfo=UTC
    )
    assert len(waldump) == 3


LABEL = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n"
NAMES = [f"0000000100000000000000{n:02X}" for n in range(1, 8)]


def _segments(wal: Path, names: list[str], at: list[float], size: int = 16 << 20) -> None:
    """Archived segments (sparse files of the segment size) with the given archive times."""
    wal.mkdir(exist_ok=True)
    for name, stamp in zip(names, at, strict=True):
        with open(wal / name, "wb") as fh:
            fh.write(name.encode())
            fh.truncate(size)
        os.utime(wal / name, (stamp, stamp))


def test_segments_to_prefetch_are_those_replay_reads_up_to_the_target(tmp_path: Path):
    wal = tmp_path / "archive"
    # segment 6 is missing: replay would fetch it, and what follows, as it goes
    _segments(wal, NAMES[:5] + NAMES[6:], [100, 200, 300, 400, 500, 700])
    until = datetime.fromtimestamp(250, UTC)
    got = archive.segments_to_prefetch(wal, LABEL, until)
    # from the backup's start (segment 2), up to the first one archived after the target
    assert [p.name for p in got] == NAMES[1:3]
    later = archive.segments_to_prefetch(wal, LABEL, datetime.fromtimestamp(10_000, UTC))
    assert [p.name for p in later] == NAMES[1:5]  # stops before the gap
    assert archive.segments_to_prefetch(wal, LABEL, None) == []  # a snapshot target: nothing
    assert archive.segments_to_prefetch(wal, "no label", until) == []
    (wal / "00000002.history").write_text("1\t0/5000000\tno reason\n")
    assert archive.segments_to_prefetch(wal, LABEL, until) == []  # replay may switch timelines


def test_prefetch_stages_whole_segments_ahead_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    wal, stage, pg_wal = tmp_path / "archive", tmp_path / "stage", tmp_path / "pg_wal"
    _segments(wal, NAMES, [100] * len(NAMES), size=1 << 16)
    stage.mkdir()
    pg_wal.mkdir()
    (pg_wal / NAMES[1]).write_bytes(b"from the snapshot")  # replay has it: not staged
    monkeypatch.setattr(archive, "PREFETCH_AHEAD", 3)
    prefetch = archive.WalPrefetch([wal / n for n in NAMES[1:]], stage, pg_wal)
    assert prefetch.restore_command("cp a/%f %p").startswith(f"mv -f {stage}/%f %p 2>/dev/null ||")
    prefetch.start()
    deadline = time.monotonic() + 30
    while len(os.listdir(stage)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    # three waiting (the limit ahead of replay), whole, in order, none of them the snapshot's
    assert sorted(os.listdir(stage)) == NAMES[2:5]
    assert all((stage / n).read_bytes() == (wal / n).read_bytes() for n in NAMES[2:5])
    assert all((stage / n).stat().st_mode & 0o777 == 0o600 for n in NAMES[2:5])
    os.rename(stage / NAMES[2], pg_wal / "RECOVERYXLOG")  # replay takes one: one more comes
    while len(os.listdir(stage)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(os.listdir(stage)) == NAMES[3:6]
    prefetch.stop()
    assert prefetch.staged == 4 and sorted(os.listdir(stage)) == NAMES[3:6]


def test_a_segment_is_archived_once_the_server_reports_it_and_its_file_is_there(tmp_path: Path):
    from restore_assets.backends.local.basebackups import BaseBackupSource

    seg = "000000010000000000000005"
    source = BaseBackupSource(None, SimpleNamespace(archive_dir=str(tmp_path)))  # type: ignore[arg-type]
    (tmp_path / seg).write_bytes(b"partly copied")  # archive_command's cp is still writing
    assert not source.is_archived(seg, "000000010000000000000004")
    assert not source.is_archived(seg, None)
    assert source.is_archived(seg, seg) and source.is_archived(seg, "000000010000000000000006")
    assert not source.is_archived("000000010000000000000006", "000000010000000000000006")
