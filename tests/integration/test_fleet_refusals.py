"""Every bad restore target is refused with its message and leaves no cluster, port or directory."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.core.errors import FleetError, InvalidRequest
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import execute, postmasters_under

pytestmark = pytest.mark.integration


def leftovers(fleet: LocalFleet) -> dict:
    """What a refused request must not change: temp dirs, temp instances, postmasters under root."""
    temp = fleet.temp_root
    return {
        "temp_dirs": sorted(p.name for p in temp.iterdir()) if temp.exists() else [],
        "temp_instances": fleet.temp_instances(),
        "postmasters": postmasters_under(fleet.root),
    }


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    """A managed fleet with one snapshot and a table of committed rows."""
    base = scratch_dir("ra-fleet-refuse-")
    fleet = LocalFleet(base / "fleet")
    try:
        dsn = fleet.up()
        execute(dsn, "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL)")
        execute(dsn, "INSERT INTO items (label) VALUES ('seed')")
        fleet.snapshot()
        execute(dsn, "INSERT INTO items (label) VALUES ('after-snapshot')")
        fleet.window(refresh=True)
        yield fleet
    finally:
        fleet.down(purge=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def nothing_left(fleet: LocalFleet) -> Iterator[None]:
    """Check that the test leaves the fleet's temporary area and processes as it found them."""
    before = leftovers(fleet)
    assert before["temp_instances"] == []
    assert len(before["postmasters"]) == 1  # production only
    yield
    assert leftovers(fleet) == before


def bad_targets(fleet: LocalFleet) -> dict[str, tuple[RestoreTarget, str]]:
    first = fleet.snapshots()[0]
    return {
        "future": (
            RestoreTarget(restore_time=datetime.now(UTC) + timedelta(hours=1)),
            r"restore time .* is in the future \(now ",
        ),
        "before-earliest-snapshot": (
            RestoreTarget(restore_time=first.created_at - timedelta(minutes=1)),
            rf"restore time .* is before the earliest snapshot \({first.id}, consistent from ",
        ),
        "unknown-snapshot": (
            RestoreTarget(snapshot_id="snap-does-not-exist"),
            rf"unknown snapshot id 'snap-does-not-exist' \(known: {first.id}\)",
        ),
        "naive-time": (
            RestoreTarget(restore_time=datetime.now() - timedelta(seconds=1)),
            "restore time must be an ISO 8601 timestamp with a time zone",
        ),
        "no-target": (
            RestoreTarget(),
            "restore time must be an ISO 8601 timestamp with a time zone",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["future", "before-earliest-snapshot", "unknown-snapshot", "naive-time", "no-target"],
)
def test_bad_target_is_refused_and_leaves_nothing(fleet: LocalFleet, nothing_left, case: str):
    target, message = bad_targets(fleet)[case]
    with pytest.raises(InvalidRequest, match=message):
        fleet.check_target(target)
    with pytest.raises(InvalidRequest, match=message):
        fleet.provision(f"refused-{case}", target)


def test_bad_restore_id_is_refused(fleet: LocalFleet, nothing_left):
    snap = fleet.snapshots()[0]
    with pytest.raises(InvalidRequest, match=r"restore id '\.\./escape' may hold only letters"):
        fleet.provision("../escape", RestoreTarget(snapshot_id=snap.id))
    assert not (fleet.root / "escape").exists()


def break_archiving(dsn: str) -> None:
    """archive_command = 'false', then wait until the archiver has really failed once."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        failed = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0]
        conn.execute("ALTER SYSTEM SET archive_command = 'false'")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            conn.execute("SELECT txid_current()")
            conn.execute("SELECT pg_switch_wal()")
            for _ in range(30):
                row = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()
                if row[0] > failed:
                    return
                time.sleep(0.1)
    raise AssertionError("the archiver never failed with archive_command = 'false'")


def repair_archiving(fleet: LocalFleet) -> None:
    """Reset archive_command and wait until the backlog reaches the archive again."""
    execute(fleet.production_dsn(), "ALTER SYSTEM RESET archive_command")
    execute(fleet.production_dsn(), "SELECT pg_reload_conf()")
    deadline = time.monotonic() + 60
    while True:
        try:
            fleet.switch_wal(timeout=30)
            return
        except FleetError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_time_after_the_last_archived_wal_is_refused(fleet: LocalFleet, nothing_left):
    dsn = fleet.production_dsn()
    break_archiving(dsn)
    try:
        last_archived = fleet.window().latest
        execute(dsn, "INSERT INTO items (label) VALUES ('never-archived')")
        time.sleep(0.2)
        point = execute(dsn, "SELECT clock_timestamp()")[0][0]
        assert point > last_archived  # in the past, yet later than anything in the archive
        message = (
            re.escape(
                f"restore time {point.isoformat()} is after the last archived WAL"
                f" (latest restorable {last_archived.isoformat()}); archiving WAL segment "
            )
            + r"\w+ failed .*check archive_command"
        )
        with pytest.raises(InvalidRequest, match=message):
            fleet.check_target(RestoreTarget(restore_time=point))
        with pytest.raises(InvalidRequest, match=message):
            fleet.provision("refused-after-wal", RestoreTarget(restore_time=point))
    finally:
        repair_archiving(fleet)
    # once the archive caught up, the same point in time is restorable
    assert fleet.check_target(RestoreTarget(restore_time=point)) == point
    db = fleet.provision("after-repair", RestoreTarget(restore_time=point))
    try:
        labels = [r[0] for r in execute(fleet.temp_dsn(db), "SELECT label FROM items ORDER BY id")]
        assert labels == ["seed", "after-snapshot", "never-archived"]
    finally:
        fleet.delete_temp(db.restore_id)


def test_missing_archive_directory_is_refused(fleet: LocalFleet, nothing_left):
    archive = fleet.archive_dir
    snap = fleet.snapshots()[0]
    point = fleet.window(refresh=True).latest - timedelta(microseconds=1)
    moved = archive.with_name(archive.name + ".moved")
    archive.rename(moved)
    try:
        message = f"archive directory missing: {archive}"
        for target in (RestoreTarget(restore_time=point), RestoreTarget(snapshot_id=snap.id)):
            with pytest.raises(InvalidRequest, match=message):
                fleet.check_target(target)
            with pytest.raises(InvalidRequest, match=message):
                fleet.provision("refused-no-archive", target)
        with pytest.raises(InvalidRequest, match=message):
            fleet.window()
    finally:
        moved.rename(archive)
    assert fleet.check_target(RestoreTarget(restore_time=point)) == point


@pytest.mark.parametrize("missing", ["archive", "backups"])
def test_adopt_with_a_missing_directory_is_refused(fleet: LocalFleet, missing: str):
    base = scratch_dir("ra-fleet-adopt-missing-")
    try:
        dirs = {"archive": base / "archive", "backups": base / "backups"}
        for name, path in dirs.items():
            if name != missing:
                path.mkdir()
        other = LocalFleet(base / "fleet")
        kind = {"archive": "archive", "backups": "base-backup"}[missing]
        with pytest.raises(InvalidRequest, match=f"{kind} directory missing: {dirs[missing]}"):
            other.adopt(fleet.production_dsn(), str(dirs["archive"]), str(dirs["backups"]))
        assert not other.exists()
        assert not (base / "fleet").exists()
        assert not dirs[missing].exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
