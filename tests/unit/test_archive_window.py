"""The last commit in the archived WAL is read once per set of segments (pg_waldump is not rerun)."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

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
