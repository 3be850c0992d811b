"""Fleet lifecycle: up twice, status, delete_snapshot, failed recoveries and crashed callers clean up."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from restore_assets.backends.local import pg
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.core.errors import FleetError, InvalidRequest
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import commit, execute, postmasters_under

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def temp_leftovers(fleet: LocalFleet) -> dict:
    temp = fleet.temp_root
    return {
        "temp_dirs": sorted(p.name for p in temp.iterdir()) if temp.exists() else [],
        "temp_instances": fleet.temp_instances(),
        "postmasters": postmasters_under(temp),
    }


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    """A managed fleet with one snapshot of a small table."""
    base = scratch_dir("ra-fleet-life-")
    fleet = LocalFleet(base / "fleet")
    try:
        dsn = fleet.up()
        execute(dsn, "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL)")
        commit(dsn, "seed")
        fleet.snapshot()
        yield fleet
    finally:
        fleet.down(purge=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def production_up(fleet: LocalFleet) -> Iterator[None]:
    """Tests may stop production; each test starts and leaves it running."""
    fleet.up()
    yield
    fleet.up()


def test_up_twice_reuses_the_running_cluster(fleet: LocalFleet):
    cluster = fleet.production_cluster()
    pid = cluster.pid()
    assert fleet.up() == cluster.dsn()
    assert fleet.up() == cluster.dsn()
    assert cluster.pid() == pid  # not restarted
    assert fleet.production_cluster().datadir == cluster.datadir


def test_up_after_down_restarts_the_same_cluster_on_the_same_port(fleet: LocalFleet):
    cluster = fleet.production_cluster()
    execute(cluster.dsn(), "CREATE TABLE IF NOT EXISTS kept (x int)")
    fleet.down()
    assert not cluster.is_running()
    assert not pg.port_in_use(cluster.port)
    assert fleet.up() == cluster.dsn()
    assert fleet.production_cluster().port == cluster.port
    assert execute(cluster.dsn(), "SELECT count(*) FROM kept") == [(0,)]


def test_up_moves_to_a_free_port_when_its_port_is_taken(fleet: LocalFleet):
    cluster = fleet.production_cluster()
    fleet.down()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", cluster.port))
        squatter.listen()
        dsn = fleet.up()
    moved = fleet.production_cluster()
    assert moved.port != cluster.port
    assert moved.datadir == cluster.datadir
    assert dsn == moved.dsn()
    assert execute(dsn, "SELECT label FROM items ORDER BY id")[0] == ("seed",)
    assert LocalFleet(fleet.root).config().port == moved.port  # saved for the next process
    fleet.window(refresh=True)  # archiving still works after the move


def test_status_reports_production_snapshots_window_and_temporary(fleet: LocalFleet):
    snap = fleet.snapshots()[-1]
    db = fleet.provision("status-probe", RestoreTarget(snapshot_id=snap.id))
    try:
        status = json.loads(json.dumps(fleet.status()))  # JSON-ready
        cluster = fleet.production_cluster()
        assert status["mode"] == "managed"
        assert status["root"] == str(fleet.root)
        assert status["production"]["running"] is True
        assert status["production"]["port"] == cluster.port
        assert status["production"]["datadir"] == str(cluster.datadir)
        assert execute(status["production"]["dsn"], "SELECT 1") == [(1,)]
        assert status["archive_dir"] == str(fleet.archive_dir)
        assert status["backup_dir"] == str(fleet.backup_dir)
        assert [s["id"] for s in status["snapshots"]] == [s.id for s in fleet.snapshots()]
        assert status["window"]["earliest"] == fleet.snapshots()[0].completed_at.isoformat()
        assert status["window"]["latest"] is not None
        [temp] = status["temporary"]
        assert temp["restore_id"] == "status-probe"
        assert temp["running"] is True
        assert temp["port"] == db.port
        assert temp["snapshot"] == snap.id
    finally:
        fleet.delete_temp("status-probe")
    assert fleet.status()["temporary"] == []
    fleet.down()
    assert fleet.status()["production"]["running"] is False


def test_delete_snapshot_removes_one(fleet: LocalFleet):
    first = fleet.snapshots()[0]
    second = fleet.snapshot()
    assert fleet.snapshots()[-1].id == second.id
    assert fleet.window().earliest == first.completed_at
    fleet.delete_snapshot(first.id)
    assert first.id not in [s.id for s in fleet.snapshots()]
    assert second.id in [s.id for s in fleet.snapshots()]
    assert not (fleet.backup_dir / first.id).exists()
    assert not (fleet.backup_dir / f"{first.id}.json").exists()
    assert fleet.window().earliest == second.completed_at
    between = first.completed_at + (second.completed_at - first.completed_at) / 2
    with pytest.raises(InvalidRequest, match="is before the earliest snapshot"):
        fleet.check_target(RestoreTarget(restore_time=between))
    with pytest.raises(InvalidRequest, match=f"unknown snapshot id '{first.id}'"):
        fleet.delete_snapshot(first.id)


@contextlib.contextmanager
def knocking_on(fleet: LocalFleet, restore_id: str) -> Iterator[None]:
    """Keep connecting to a temporary cluster's port (read from temp_instances) until exit."""
    stop = threading.Event()

    def knock() -> None:
        port = None
        while not stop.is_set():
            if port is None:
                try:  # instance.json may be half written or already gone
                    found = [i for i in fleet.temp_instances() if i["restore_id"] == restore_id]
                except (OSError, ValueError):
                    found = []
                port = found[0].get("port") if found else None
                host = found[0].get("socket_dir") if found else None
                time.sleep(0.005)
                continue
            try:  # through its private unix socket (a temporary cluster has no TCP listener)
                psycopg.connect(pg.dsn(port, host=host), connect_timeout=1).close()
            except psycopg.Error:
                pass
            time.sleep(0.001)

    threads = [threading.Thread(target=knock) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_failed_recovery_leaves_nothing_behind(fleet: LocalFleet):
    # a segment missing from the archive: the target passes the checks, recovery cannot reach it
    dsn = fleet.production_dsn()
    commit(dsn, "in-the-gap")
    gap = execute(dsn, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    fleet.switch_wal()
    time.sleep(0.2)
    point = execute(dsn, "SELECT clock_timestamp()")[0][0]
    time.sleep(0.2)
    commit(dsn, "after-point")
    fleet.window(refresh=True)
    moved = fleet.root.parent / f"{gap}.moved"
    shutil.move(fleet.archive_dir / gap, moved)
    try:
        before = temp_leftovers(fleet)
        # clients knocking while the copy recovers get refused; the error must name the cause
        with knocking_on(fleet, "gap"):
            with pytest.raises(
                FleetError, match="FATAL:  recovery ended before configured recovery target"
            ):
                fleet.provision("gap", RestoreTarget(restore_time=point))
        assert temp_leftovers(fleet) == before
    finally:
        shutil.move(moved, fleet.archive_dir / gap)
    db = fleet.provision("gap", RestoreTarget(restore_time=point))
    try:
        labels = [r[0] for r in execute(fleet.temp_dsn(db), "SELECT label FROM items")]
        assert "in-the-gap" in labels and "after-point" not in labels
    finally:
        fleet.delete_temp("gap")


def test_last_log_error_names_the_cause_not_a_refused_client(tmp_path: Path):
    # the tail of a temporary cluster's log whose recovery failed while a client knocked
    cluster = pg.Cluster(tmp_path / "data", 5432)
    cluster.logfile.write_text(
        "2026-11-22 00:22:06.090 UTC [7007] LOG:  redo done at 0/2000100\n"
        "2026-11-22 00:22:06.090 UTC [7007] FATAL:  recovery ended before configured"
        " recovery target was reached\n"
        "2026-11-22 00:22:06.091 UTC [7010] FATAL:  the database system is in recovery mode\n"
        "2026-11-22 00:22:06.092 UTC [7004] LOG:  startup process (PID 7007) exited with exit code 1\n"
        "2026-11-22 00:22:06.093 UTC [7011] FATAL:  the database system is shutting down\n"
        "2026-11-22 00:22:06.099 UTC [7004] LOG:  database system is shut down\n"
    )
    assert cluster.last_log_error().endswith(
        "FATAL:  recovery ended before configured recovery target was reached"
    )


def test_temp_cluster_of_a_killed_process_is_removed_by_down(fleet: LocalFleet):
    snap = fleet.snapshots()[-1]
    script = textwrap.dedent(
        f"""
        import time
        from restore_assets.backends.protocols import RestoreTarget
        from restore_assets.backends.local.fleet import LocalFleet

        LocalFleet({str(fleet.root)!r}).provision("crashed", RestoreTarget(snapshot_id={snap.id!r}))
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            running = [
                i
                for i in fleet.temp_instances()
                if i["restore_id"] == "crashed" and i.get("running")
            ]
            if running:
                break
            assert proc.poll() is None, f"the provisioning process died: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "the temporary cluster never came up"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    [inst] = running
    assert inst["restore_id"] == "crashed"
    assert inst["creator_pid"] == proc.pid
    workdir = Path(inst["dir"])
    # the killed process took nothing down with it: its cluster is orphaned, still serving
    socket = Path(inst["socket_dir"]) / f".s.PGSQL.{inst['port']}"
    assert postmasters_under(workdir) != []
    assert socket.exists()

    assert LocalFleet(fleet.root).down() == ["crashed"]
    assert postmasters_under(workdir) == []
    assert not workdir.exists()
    assert not socket.exists()
    assert LocalFleet(fleet.root).temp_instances() == []
    assert fleet.delete_temp("crashed") == "crashed"  # deleting again is success


def test_snapshot_window_survives_a_restart(fleet: LocalFleet):
    # the restore window is read from the archive, not from the running server's memory
    before = fleet.window(refresh=True)
    fleet.down()
    after = LocalFleet(fleet.root).window()
    assert after == before
    assert after.latest - after.earliest > timedelta(0)
