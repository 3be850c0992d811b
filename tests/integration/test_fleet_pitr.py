"""Point-in-time and snapshot restores of the local fleet into temporary clusters (real PostgreSQL)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget, Snapshot, TempDatabase
from restore_assets.core.errors import FleetError
from tests.conftest import product_settings, scratch_dir
from tests.integration.fleet_helpers import commit, execute, mark, postmasters_under

pytestmark = pytest.mark.integration


def labels(dsn: str) -> list[str]:
    """The items' labels in commit order."""
    return [r[0] for r in execute(dsn, "SELECT label FROM items ORDER BY id")]


def checksum(dsn: str) -> str:
    """A checksum over every row of the items table."""
    query = "SELECT md5(coalesce(string_agg(i::text, '|' ORDER BY id), '')) FROM items i"
    return execute(dsn, query)[0][0]


@dataclass
class History:
    """A managed fleet with two snapshots and commits around two restore points."""

    fleet: LocalFleet
    snap1: Snapshot
    snap2: Snapshot
    checksum1: str
    checksum2: str
    t_between: datetime  # after A, before B (between snapshot 1 and snapshot 2)
    t_after: datetime  # after C, before D (after snapshot 2)


@pytest.fixture(scope="module")
def history() -> Iterator[History]:
    """seed, snapshot 1, A, t_between, B, snapshot 2, C, t_after, D; WAL archived up to D."""
    base = scratch_dir("ra-fleet-pitr-")
    fleet = LocalFleet(base / "fleet")
    try:
        with product_settings():  # production as the product configures it (fsync on), see below
            dsn = fleet.up()
        execute(
            dsn,
            "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL,"
            " committed_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        commit(dsn, "seed")
        checksum1 = checksum(dsn)
        snap1 = fleet.snapshot()
        commit(dsn, "A")
        t_between = mark(dsn)
        commit(dsn, "B")
        checksum2 = checksum(dsn)
        snap2 = fleet.snapshot()
        commit(dsn, "C")
        t_after = mark(dsn)
        commit(dsn, "D")
        fleet.window(refresh=True)
        yield History(fleet, snap1, snap2, checksum1, checksum2, t_between, t_after)
    finally:
        fleet.down(purge=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def restore(history: History) -> Iterator:
    """Provision temporary clusters by target; delete them (and check they are gone) afterwards."""
    made: list[TempDatabase] = []

    def _restore(restore_id: str, target: RestoreTarget) -> TempDatabase:
        db = history.fleet.provision(restore_id, target)
        made.append(db)
        return db

    yield _restore
    for db in made:
        history.fleet.delete_temp(db.restore_id)
        workdir = history.fleet.temp_root / db.restore_id
        assert not workdir.exists()
        assert postmasters_under(workdir) == []
        assert not (Path(db.host) / f".s.PGSQL.{db.port}").exists()


def test_history_commits_are_ordered_around_the_restore_points(history: History):
    # guards the scenario itself: the restore points fall strictly between the commits
    dsn = history.fleet.production_dsn()
    at = dict(execute(dsn, "SELECT label, committed_at FROM items"))
    assert at["A"] < history.t_between < at["B"]
    assert at["C"] < history.t_after < at["D"]
    assert history.snap1.completed_at < history.t_between < history.snap2.completed_at
    assert history.snap2.completed_at < history.t_after
    assert labels(dsn) == ["seed", "A", "B", "C", "D"]


def test_pitr_between_snapshots_sees_only_commits_before_t(history: History, restore):
    db = restore("pitr-between", RestoreTarget(restore_time=history.t_between))
    assert db.details["snapshot"] == history.snap1.id
    dsn = history.fleet.temp_dsn(db)
    assert labels(dsn) == ["seed", "A"]
    # a read-only copy paused at T on its own port, not archiving into the fleet's archive
    assert db.port != history.fleet.production_cluster().port
    paused = "SELECT pg_is_in_recovery(), pg_get_wal_replay_pause_state()"
    assert execute(dsn, paused) == [(True, "paused")]
    assert execute(dsn, "SHOW archive_mode")[0][0] == "off"
    # no TCP listener: only a unix socket in a directory the server user alone can enter
    assert execute(dsn, "SHOW listen_addresses")[0][0] == ""
    assert execute(dsn, "SHOW unix_socket_directories")[0][0] == db.host
    # a throwaway copy: it does not wait for the disk; production does
    assert execute(dsn, "SHOW fsync")[0][0] == "off"
    assert execute(history.fleet.production_dsn(), "SHOW fsync")[0][0] == "on"


def test_pitr_after_newest_snapshot_uses_it(history: History, restore):
    db = restore("pitr-after", RestoreTarget(restore_time=history.t_after))
    assert db.details["snapshot"] == history.snap2.id
    assert labels(history.fleet.temp_dsn(db)) == ["seed", "A", "B", "C"]


def test_pitr_to_the_window_edges(history: History, restore):
    window = history.fleet.window()
    assert window.earliest == history.snap1.completed_at
    early = restore("pitr-earliest", RestoreTarget(restore_time=window.earliest))
    assert early.details["snapshot"] == history.snap1.id
    assert labels(history.fleet.temp_dsn(early)) == ["seed"]
    late_point = window.latest - timedelta(microseconds=1)
    late = restore("pitr-latest", RestoreTarget(restore_time=late_point))
    assert late.details["snapshot"] == history.snap2.id
    assert labels(history.fleet.temp_dsn(late)) == ["seed", "A", "B", "C", "D"]


@pytest.mark.parametrize("which", ["snap1", "snap2"])
def test_snapshot_restore_is_exactly_the_snapshot(history: History, restore, which: str):
    snap: Snapshot = getattr(history, which)
    expected = {"snap1": history.checksum1, "snap2": history.checksum2}[which]
    db = restore(f"snapshot-{which}", RestoreTarget(snapshot_id=snap.id))
    assert db.details["snapshot"] == snap.id
    dsn = history.fleet.temp_dsn(db)
    assert checksum(dsn) == expected
    assert labels(dsn) == {"snap1": ["seed"], "snap2": ["seed", "A", "B"]}[which]
    assert checksum(dsn) != checksum(history.fleet.production_dsn())
    # listed as a running temporary instance; a second restore under its id is refused
    [inst] = [i for i in history.fleet.temp_instances() if i["restore_id"] == db.restore_id]
    assert inst["running"] is True
    assert inst["port"] == db.port
    assert inst["snapshot"] == snap.id
    assert postmasters_under(history.fleet.temp_root / db.restore_id) != []
    with pytest.raises(FleetError, match=f"temporary cluster for restore {db.restore_id} already"):
        history.fleet.provision(db.restore_id, RestoreTarget(restore_time=history.t_after))
    assert checksum(dsn) == expected
