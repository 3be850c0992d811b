"""Adopting a self-managed cluster: its own pg_basebackup and archive_command, no fleet metadata."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from restore_assets.backends.local import pg
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import commit, execute, mark, postmasters_under

pytestmark = pytest.mark.integration

BACKUP_ID = "base-1"


def rows(dsn: str) -> list[tuple[str, datetime]]:
    return execute(dsn, "SELECT label, committed_at FROM items ORDER BY id")


def label_time(text: str, key: str, zone: str) -> datetime:
    """START/STOP TIME of a backup label or history file, read with the cluster's log_timezone."""
    value = re.search(rf"^{key} TIME: (\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d) ", text, re.M).group(1)
    local = datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo(zone))
    return local.astimezone(UTC)


def files(path: Path) -> dict[str, int]:
    """Every file below path with its size."""
    return {str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*") if p.is_file()}


@dataclass
class Own:
    """What a user of pg_basebackup + archive_command already has, and the fleet adopting it."""

    zone: str
    cluster: pg.Cluster
    archive: Path
    backups: Path
    fleet: LocalFleet


def take_backup(cluster: pg.Cluster, target: Path) -> None:
    """pg_basebackup while another session keeps committing (a live production server)."""
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO items (label) VALUES ('during-backup')")
                time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.1)
        pg.run_server_cmd(
            [pg.pg_bin("pg_basebackup"), "-d", cluster.dsn(), "-D", str(target)]
            + ["-Fp", "-X", "stream", "-c", "fast"]
        )
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()


def wait_for_history_file(cluster: pg.Cluster, archive: Path) -> None:
    """Switch WAL until the backup history file (`*.backup`) reaches the user's archive."""
    deadline = time.monotonic() + 60
    while not list(archive.glob("*.backup")):
        assert time.monotonic() < deadline, "the backup history file never reached the archive"
        execute(cluster.dsn(), "SELECT pg_switch_wal()")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def own() -> Iterator[Own]:
    """A self-managed cluster, its archive and one base backup; adopted by a fleet.

    Like many self-managed servers it logs in a local time zone, not UTC: backup labels then
    print times with that zone's abbreviation (PST), which the fleet must read right.
    """
    zone = "America/Los_Angeles"
    base = scratch_dir("ra-fleet-adopt-")
    archive, backups = base / "wal-archive", base / "base-backups"
    pg.give_to_server_user(archive)
    pg.give_to_server_user(backups)
    archive_cmd = f"test ! -f '{archive}/%f' && cp '%p' '{archive}/%f'"
    cluster = pg.start_new_cluster(
        base / "cluster" / "data",
        {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": "'" + archive_cmd.replace("'", "''") + "'",
            "max_wal_senders": "5",
            "timezone": f"'{zone}'",
            "log_timezone": f"'{zone}'",
        },
    )
    fleet = LocalFleet(base / "fleet")
    try:
        execute(
            cluster.dsn(),
            "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL,"
            " committed_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        commit(cluster.dsn(), "seed")
        take_backup(cluster, backups / BACKUP_ID)
        wait_for_history_file(cluster, archive)
        fleet.adopt(cluster.dsn(), str(archive), str(backups))
        # the backup counts as complete one second after its printed (whole-second) STOP TIME:
        # restore points the tests pick must come after that, as they would for a user
        while datetime.now(UTC) <= fleet.window().earliest:
            time.sleep(0.1)
        yield Own(zone, cluster, archive, backups, fleet)
    finally:
        fleet.down(purge=True)
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def restore(own: Own) -> Iterator:
    """Provision temporary clusters of the adopted fleet; delete them and check they are gone."""
    made = []

    def _restore(restore_id: str, target: RestoreTarget):
        db = own.fleet.provision(restore_id, target)
        made.append(db)
        return db

    yield _restore
    for db in made:
        own.fleet.delete_temp(db.restore_id)
        assert not (own.fleet.temp_root / db.restore_id).exists()
        assert postmasters_under(own.fleet.temp_root) == []
        assert not (Path(db.host) / f".s.PGSQL.{db.port}").exists()


def test_adopted_backup_is_listed_with_times_from_label_and_history(own: Own):
    assert list(own.backups.glob("*.json")) == []  # no fleet sidecar: only what pg_basebackup wrote
    [snap] = own.fleet.snapshots()
    assert snap.id == BACKUP_ID
    label = (own.backups / BACKUP_ID / "backup_label").read_text()
    [history] = own.archive.glob("*.backup")
    start = label_time(label, "START", own.zone)
    stop = label_time(history.read_text(), "STOP", own.zone)
    assert snap.created_at == start
    assert snap.completed_at is not None
    # label times are whole seconds: the backup ended within the second after the printed STOP
    assert stop <= snap.completed_at <= stop + timedelta(seconds=1)
    assert snap.size_bytes > 0
    assert own.fleet.status()["mode"] == "adopted"


def test_adopted_window_spans_backup_to_last_archived_commit(own: Own):
    dsn = own.cluster.dsn()
    commit(dsn, "window-probe")
    window = own.fleet.window(refresh=True)
    [snap] = own.fleet.snapshots()
    assert window.earliest == snap.completed_at
    probe = dict(rows(dsn))["window-probe"]
    assert window.latest > probe


def test_adopted_pitr_sees_only_commits_before_t(own: Own, restore):
    dsn = own.cluster.dsn()
    commit(dsn, "A")
    point = mark(dsn)
    commit(dsn, "B")
    own.fleet.window(refresh=True)
    db = restore("adopted-pitr", RestoreTarget(restore_time=point))
    assert db.details["snapshot"] == BACKUP_ID
    restored = [label for label, _ in rows(own.fleet.temp_dsn(db))]
    expected = [label for label, at in rows(dsn) if at < point]
    assert restored == expected
    assert "A" in restored and "B" not in restored
    # the copy neither archives into nor forks a timeline in the user's archive
    assert execute(own.fleet.temp_dsn(db), "SHOW archive_mode")[0][0] == "off"
    assert list(own.archive.glob("*.history")) == []


def test_adopted_restore_to_the_earliest_point(own: Own, restore):
    # the backup was taken under live writes: the earliest point must already be consistent
    earliest = own.fleet.window().earliest
    db = restore("adopted-earliest", RestoreTarget(restore_time=earliest))
    restored = rows(own.fleet.temp_dsn(db))
    assert restored[0][0] == "seed"
    assert all(at <= earliest for _, at in restored)


def test_adopted_snapshot_restore(own: Own, restore):
    db = restore("adopted-snapshot", RestoreTarget(snapshot_id=BACKUP_ID))
    labels = {label for label, _ in rows(own.fleet.temp_dsn(db))}
    assert "seed" in labels
    assert "A" not in labels


def test_down_purge_leaves_the_users_cluster_archive_and_backups(own: Own):
    db = own.fleet.provision("before-down", RestoreTarget(snapshot_id=BACKUP_ID))
    archive_before, backups_before = files(own.archive), files(own.backups)
    own.fleet.down(purge=True)
    assert not (Path(db.host) / f".s.PGSQL.{db.port}").exists()
    assert postmasters_under(own.fleet.root) == []
    assert not own.fleet.exists()
    assert not own.fleet.temp_root.exists()
    # the user's files are untouched (the archive may only have grown), the server still runs
    assert files(own.backups) == backups_before
    archive_after = files(own.archive)
    assert {k: archive_after.get(k) for k in archive_before} == archive_before
    assert own.cluster.is_running()
    commit(own.cluster.dsn(), "still-writable")
