"""The base of a restore on a pgBackRest fleet lies on the history of the latest timeline.

After a server restore is rolled back once archiving was released, the original continues on a
timeline (5) branched from the one it was on (3), above the abandoned restore's timeline (4). A
backup taken on timeline 4 is newer than the ancestors' backups, but recovery along timeline 5
cannot start from it ("requested timeline 5 is not in this server's history").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from restore_assets.backends.local.archive import base_for
from restore_assets.backends.local.pgbackrest import PgBackRest, ancestry, off_history
from restore_assets.core.errors import InvalidRequest

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
# PostgreSQL writes a blank line before each line it appends to its parent's history
HISTORY_5 = (
    "1\t0/3000000\tno recovery target specified\n"
    "\n2\t0/5000000\tno recovery target specified\n"
    "\n3\t0/A000000\tno recovery target specified\n"
)


def backup(label: str, at: int, wal: str, lsn: str, kind: str = "incr") -> dict[str, Any]:
    """One `pgbackrest info --output=json` backup entry, stopped `at` seconds after T0."""
    stamp = int(T0.timestamp()) + at
    return {
        "label": label,
        "type": kind,
        "timestamp": {"start": stamp - 5, "stop": stamp},
        "archive": {"start": wal, "stop": wal},
        "lsn": {"start": lsn, "stop": lsn},
        "info": {"size": 1},
    }


BACKUPS = [
    backup("F1", 100, "000000010000000000000002", "0/2000100", "full"),
    backup("I2", 200, "000000030000000000000009", "0/9000100"),  # timeline 3, before the branch
    backup("I3", 300, "00000003000000000000000B", "0/B000100"),  # timeline 3, past the branch
    backup("R4", 400, "00000004000000000000000D", "0/D000100"),  # the abandoned restore's
    backup("O5", 500, "00000005000000000000000F", "0/F000100"),  # the original's, after rollback
]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def snaps() -> list:
    return PgBackRest("production").snapshots({"backup": BACKUPS})


def test_ancestry_reads_the_branch_points_of_the_history() -> None:
    assert ancestry(5, HISTORY_5) == {1: 0x3000000, 2: 0x5000000, 3: 0xA000000, 5: None}
    assert ancestry(1, None) == {1: None}
    assert ancestry(2, "# comment\n1\t1/0\tbefore 2026-12-02\n") == {1: 1 << 32, 2: None}


def test_only_backups_on_the_latest_timelines_history_are_bases() -> None:
    refused = off_history(BACKUPS, 5, HISTORY_5)
    assert sorted(refused) == ["I3", "R4"]
    assert "timeline 4" in refused["R4"] and "not in the history" in refused["R4"]
    assert "0/B000100" in refused["I3"] and "0/A000000" in refused["I3"]


def test_a_time_before_the_post_rollback_backup_takes_the_ancestors_backup() -> None:
    refused = off_history(BACKUPS, 5, HISTORY_5)
    # within the second after the original's post-rollback backup stopped: not consistent yet
    assert base_for(at(500.5), snaps(), refused).id == "I2"
    assert base_for(at(450), snaps(), refused).id == "I2"
    assert base_for(at(250), snaps(), refused).id == "I2"
    assert base_for(at(150), snaps(), refused).id == "F1"
    assert base_for(at(501), snaps(), refused).id == "O5"
    # without the refusals the abandoned restore's backup would be taken
    assert base_for(at(450), snaps()).id == "R4"


def test_no_base_on_the_history_is_refused_naming_the_backups() -> None:
    only = [b for b in BACKUPS if b["label"] in ("R4", "O5")]
    refused = off_history(only, 5, HISTORY_5)
    found = PgBackRest("production").snapshots({"backup": only})
    with pytest.raises(InvalidRequest, match="R4 is on timeline 4"):
        base_for(at(450), found, refused)
    with pytest.raises(InvalidRequest, match="before the earliest snapshot"):
        base_for(at(350), found, refused)


def test_without_a_history_file_only_the_current_timeline_is_used() -> None:
    refused = off_history(BACKUPS, 1, None)
    assert sorted(refused) == ["I2", "I3", "O5", "R4"]
    assert off_history([{"label": "X", "archive": {}}], 5, HISTORY_5) == {}
