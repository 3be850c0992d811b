"""Adopting a pgBackRest stanza: real pgbackrest, a local posix repository, archive-push archiving."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from restore_assets.backends.local import pg
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.core.errors import FleetError, InvalidRequest
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import commit, execute, mark, postmasters_under

pytestmark = [
    pytest.mark.integration,
]

REPO = Path(__file__).resolve().parents[2]
STANZA = "main"


@dataclass
class Stanza:
    """A self-managed cluster archiving with pgbackrest archive-push into a local repository."""

    base: Path
    config: Path
    repo: Path
    cluster: pg.Cluster

    def pgbackrest(self, stanza: str, *args: str) -> str:
        return pg.run_server_cmd(
            ["pgbackrest", f"--config={self.config}", f"--stanza={stanza}", *args]
        ).stdout


def make_stanza(base: Path, stanza: str) -> Stanza:
    """initdb a cluster whose archive_command is pgbackrest's, write the config, stanza-create."""
    config = base / "pgbackrest.conf"
    repo, sock = base / "repo", base / "sock"
    for d in (repo, sock, base / "log", base / "lock"):
        pg.give_to_server_user(d)
    push = f"pgbackrest --config={config} --stanza={stanza} archive-push %p"
    cluster = pg.start_new_cluster(
        base / "cluster" / "data",
        {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": f"'{push}'",
            "max_wal_senders": "5",
            "unix_socket_directories": f"'{sock}'",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
        },
    )
    config.write_text(
        textwrap.dedent(
            f"""\
            [global]
            repo1-path={repo}
            log-path={base / "log"}
            lock-path={base / "lock"}
            log-level-file=off
            compress-type=none
            start-fast=y
            archive-timeout=60

            [{stanza}]
            pg1-path={cluster.datadir}
            pg1-port={cluster.port}
            pg1-socket-path={sock}
            """
        )
    )
    config.chmod(0o644)
    st = Stanza(base, config, repo, cluster)
    st.pgbackrest(stanza, "stanza-create")
    return st


def rows(dsn: str) -> list[tuple[str, datetime]]:
    return execute(dsn, "SELECT label, committed_at FROM items ORDER BY id")


def allocated(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file below path."""
    size = blocks = 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            size += st.st_size
            blocks += st.st_blocks * 512
    return size, blocks


@pytest.fixture(scope="module")
def own() -> Iterator[tuple[Stanza, LocalFleet]]:
    """Stanza `main` with one full backup: database tenants (small) and bulk (most of the data)."""
    base = scratch_dir("ra-pgbr-")
    st = make_stanza(base, STANZA)
    fleet = LocalFleet(base / "fleet")
    try:
        dsn = st.cluster.dsn()
        execute(dsn, "CREATE DATABASE tenants")
        execute(dsn, "CREATE DATABASE bulk")
        execute(
            st.cluster.dsn("bulk"),
            "CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 20) AS pad"
            " FROM generate_series(1, 100000) g",
        )
        tdsn = st.cluster.dsn("tenants")
        execute(
            tdsn,
            "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL,"
            " committed_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        commit(tdsn, "seed")
        st.pgbackrest(STANZA, "backup", "--type=full")
        fleet.adopt_pgbackrest(dsn, STANZA, str(st.config))
        while datetime.now(UTC) <= fleet.window().earliest:
            time.sleep(0.1)
        yield st, fleet
    finally:
        fleet.down(purge=True)
        st.cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def restore(own) -> Iterator:
    """Provision temporary clusters; delete them and check they are gone."""
    _st, fleet = own
    made = []

    def _restore(restore_id: str, target: RestoreTarget, databases=("tenants",)):
        db = fleet.provision(restore_id, target, databases=list(databases) if databases else None)
        made.append(db)
        return db

    yield _restore
    for db in made:
        fleet.delete_temp(db.restore_id)
        assert not (fleet.temp_root / db.restore_id).exists()
    assert postmasters_under(fleet.temp_root) == []


def test_backups_are_snapshots_and_window_comes_from_info(own):
    st, fleet = own
    info = json.loads(st.pgbackrest(STANZA, "info", "--output=json"))[0]
    [backup] = info["backup"]
    [snap] = fleet.snapshots()
    assert snap.id == backup["label"]
    assert snap.kind == "pgbackrest-full"
    assert snap.size_bytes == backup["info"]["size"]
    assert snap.created_at == datetime.fromtimestamp(backup["timestamp"]["start"], UTC)
    stop = datetime.fromtimestamp(backup["timestamp"]["stop"], UTC)
    assert stop < snap.completed_at <= stop + timedelta(seconds=1)
    tdsn = st.cluster.dsn("tenants")
    commit(tdsn, "window-probe")
    window = fleet.window(refresh=True)
    assert window.earliest == snap.completed_at
    assert window.latest > dict(rows(tdsn))["window-probe"]
    status = fleet.status()
    assert status["pgbackrest"]["stanza"] == STANZA
    assert status["snapshots"][0]["kind"] == "pgbackrest-full"


def test_pitr_before_and_after_changes_restores_only_the_target_database(own, restore):
    st, fleet = own
    tdsn = st.cluster.dsn("tenants")
    commit(tdsn, "A")
    before = mark(tdsn)
    commit(tdsn, "B")
    after = mark(tdsn)
    commit(tdsn, "C")
    fleet.window(refresh=True)
    db1 = restore("pgbr-before", RestoreTarget(restore_time=before))
    db2 = restore("pgbr-after", RestoreTarget(restore_time=after))
    live = rows(tdsn)
    for db, point in ((db1, before), (db2, after)):
        restored = [label for label, _ in rows(fleet.temp_dsn(db, "tenants"))]
        assert restored == [label for label, at in live if at < point]
    assert "A" in restored and "B" in restored and "C" not in restored
    assert [r for r, _ in rows(fleet.temp_dsn(db1, "tenants"))][-1] == "A"
    assert execute(fleet.temp_dsn(db1, "tenants"), "SHOW archive_mode")[0][0] == "off"
    assert execute(fleet.temp_dsn(db1, "tenants"), "SHOW listen_addresses")[0][0] == ""
    # bulk's files were not copied: pgBackRest leaves them sparse (allocated ~0, apparent size kept)
    oids = dict(execute(st.cluster.dsn(), "SELECT datname, oid FROM pg_database"))
    datadir = Path(db1.details["dir"]) / "data"
    bulk_size, bulk_alloc = allocated(datadir / "base" / str(oids["bulk"]))
    _t_size, t_alloc = allocated(datadir / "base" / str(oids["tenants"]))
    assert bulk_size > 10_000_000
    assert bulk_alloc < bulk_size / 100
    assert t_alloc > 1_000_000
    # pgBackRest zero-fills the left-out database's relation map too: no connection to it
    with pytest.raises(psycopg.OperationalError, match="pg_filenode.map"):
        execute(fleet.temp_dsn(db1, "bulk"), "SELECT count(*) FROM filler")


def test_full_restore_without_db_include_copies_every_database(own, restore):
    st, fleet = own
    [snap] = [s for s in fleet.snapshots() if s.kind == "pgbackrest-full"][:1]
    db = restore("pgbr-all", RestoreTarget(snapshot_id=snap.id), databases=None)
    assert execute(fleet.temp_dsn(db, "bulk"), "SELECT count(*) FROM filler")[0][0] == 100000


def test_incremental_snapshot_by_label(own, restore):
    st, fleet = own
    tdsn = st.cluster.dsn("tenants")
    commit(tdsn, "before-incr")
    snap = fleet.snapshot()
    assert snap.kind == "pgbackrest-incr"
    commit(tdsn, "after-incr")
    info = json.loads(st.pgbackrest(STANZA, "info", "--output=json"))[0]
    assert snap.id in [b["label"] for b in info["backup"] if b["type"] == "incr"]
    db = restore("pgbr-incr", RestoreTarget(snapshot_id=snap.id))
    labels = [label for label, _ in rows(fleet.temp_dsn(db, "tenants"))]
    assert "before-incr" in labels and "after-incr" not in labels
    assert db.details["snapshot"] == snap.id


def test_refusals_outside_the_window_and_delete_snapshot(own):
    st, fleet = own
    first = fleet.snapshots()[0]
    with pytest.raises(InvalidRequest, match="before the earliest snapshot"):
        fleet.provision("pgbr-early", RestoreTarget(restore_time=first.created_at))
    with pytest.raises(InvalidRequest, match="in the future"):
        fleet.provision(
            "pgbr-future", RestoreTarget(restore_time=datetime.now(UTC) + timedelta(hours=1))
        )
    with pytest.raises(InvalidRequest, match="unknown snapshot id"):
        fleet.provision("pgbr-nosuch", RestoreTarget(snapshot_id="20000101-000000F"))
    listing = sorted(str(p) for p in st.repo.rglob("*"))
    with pytest.raises(InvalidRequest, match="retention is pgBackRest's"):
        fleet.delete_snapshot(first.id)
    assert sorted(str(p) for p in st.repo.rglob("*")) == listing
    assert not (fleet.temp_root / "pgbr-early").exists()


def test_adopting_an_unknown_stanza_is_refused_with_pgbackrests_message(own):
    st, _fleet = own
    other = LocalFleet(st.base / "fleet-unknown")
    with pytest.raises(InvalidRequest, match="archive_command pushes WAL to stanza 'main'"):
        other.adopt_pgbackrest(st.cluster.dsn(), "nosuch", str(st.config))
    assert not other.exists()


def test_a_server_not_archiving_with_pgbackrest_is_refused(pg):
    base = scratch_dir("ra-pgbr-plain-")
    fleet = LocalFleet(base / "fleet")
    try:
        with pytest.raises(InvalidRequest, match="archive_command"):
            fleet.adopt_pgbackrest(pg.dsn(), STANZA)
        assert not fleet.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_stanza_without_backups_and_missing_stanza():
    base = scratch_dir("ra-pgbr-empty-")
    st = make_stanza(base, "empty")
    fleet = LocalFleet(base / "fleet")
    try:
        fleet.adopt_pgbackrest(st.cluster.dsn(), "empty", str(st.config))
        assert fleet.snapshots() == []
        with pytest.raises(InvalidRequest, match="no valid backups"):
            fleet.provision("pgbr-empty", RestoreTarget(restore_time=datetime.now(UTC)))
        # down --purge removes the tool's files only: the repository and the server are the user's
        listing = sorted(str(p) for p in st.repo.rglob("*"))
        fleet.down(purge=True)
        assert not fleet.exists()
        assert sorted(str(p) for p in st.repo.rglob("*")) == listing
        assert st.cluster.is_running()
        # the stanza's directories gone from the repository: pgBackRest's own message
        pg.run_server_cmd(["mv", str(st.repo / "backup"), str(st.repo / "backup-away")])
        pg.run_server_cmd(["mv", str(st.repo / "archive"), str(st.repo / "archive-away")])
        other = LocalFleet(base / "fleet-missing")
        with pytest.raises(InvalidRequest, match="missing stanza path"):
            other.adopt_pgbackrest(st.cluster.dsn(), "empty", str(st.config))
        assert not other.exists()
    finally:
        fleet.down(purge=True)
        st.cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


def test_kill_9_mid_restore_then_cleanup(own):
    st, fleet = own
    snap = fleet.snapshots()[0]
    workdir = fleet.temp_root / "pgbr-crashed"
    script = textwrap.dedent(
        f"""
        from restore_assets.backends.protocols import RestoreTarget
        from restore_assets.backends.local.fleet import LocalFleet

        LocalFleet({str(fleet.root)!r}).provision(
            "pgbr-crashed", RestoreTarget(snapshot_id={snap.id!r})
        )
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        restore_pid = None
        while restore_pid is None:
            try:
                restore_pid = int((workdir / "pgbackrest-restore.pid").read_text())
            except (OSError, ValueError):
                assert proc.poll() is None, "the provisioning process ended before its restore"
                assert time.monotonic() < deadline, "pgbackrest restore never started"
                time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert fleet.manifest.owns(workdir)
    fleet.delete_temp("pgbr-crashed")
    assert not workdir.exists()
    assert not Path(f"/proc/{restore_pid}").exists()
    assert postmasters_under(fleet.temp_root) == []
    # the user's cluster and repository still work
    commit(st.cluster.dsn("tenants"), "after-crash")
    st.pgbackrest(STANZA, "check")


def test_delete_temp_never_signals_a_pid_that_is_not_its_restore(own, tmp_path):
    _st, fleet = own
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        from restore_assets.backends.local.pgbackrest import stop_restore

        (tmp_path / "pgbackrest-restore.pid").write_text(str(victim.pid))
        assert stop_restore(tmp_path / "data") is False
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_a_failed_restore_leaves_nothing(own):
    _st, fleet = own
    with pytest.raises(FleetError):
        fleet.provision(
            "pgbr-bad-db",
            RestoreTarget(snapshot_id=fleet.snapshots()[0].id),
            databases=["no_such_database"],
        )
    assert not (fleet.temp_root / "pgbr-bad-db").exists()


def test_schema_restore_job_on_a_pgbackrest_fleet(own):
    from restore_assets.jobs.launch import run_schema_restore

    st, fleet = own
    tdsn = st.cluster.dsn("tenants")
    execute(tdsn, "CREATE SCHEMA cust")
    execute(tdsn, "CREATE TABLE cust.orders (id int PRIMARY KEY, note text)")
    execute(tdsn, "INSERT INTO cust.orders SELECT g, 'ok ' || g FROM generate_series(1, 50) g")
    point = mark(tdsn)
    execute(tdsn, "DELETE FROM cust.orders WHERE id > 10")
    fleet.window(refresh=True)
    out = run_schema_restore(
        {
            "database": "tenants",
            "schemas": ["cust"],
            "restore_time": point.isoformat(),
            "suffix": "pgbr",
        },
        {"root": str(fleet.root)},
        compare=False,
    )
    assert out["status"] == "succeeded", out
    assert out["restored"] == {"cust": "cust_pgbr"}
    assert execute(tdsn, "SELECT count(*) FROM cust_pgbr.orders")[0][0] == 50
    assert execute(tdsn, "SELECT count(*) FROM cust.orders")[0][0] == 10
    assert fleet.temp_instances() == []
    execute(tdsn, "DROP SCHEMA cust_pgbr CASCADE")
    execute(tdsn, "DROP SCHEMA cust CASCADE")


def test_invalid_pages_fail_only_outside_the_left_out_databases(tmp_path):
    from restore_assets.backends.local.pgbackrest import check_invalid_pages

    log = tmp_path / "server.log"
    left_out = "WARNING:  page 4 of relation base/16397/760179 is uninitialized\n"
    log.write_text(left_out + "WARNING:  WAL contains references to invalid pages\n")
    check_invalid_pages(log, {16397})  # only the left-out database: accepted
    log.write_text(left_out + "WARNING:  page 9 of relation base/16384/2619_vm does not exist\n")
    with pytest.raises(FleetError, match="base/16384/2619_vm"):
        check_invalid_pages(log, {16397})
    log.write_text("WARNING:  page 1 of relation global/1262 is uninitialized\n")
    with pytest.raises(FleetError, match="global/1262"):
        check_invalid_pages(log, {16397})


def test_snapshot_job_runs_pgbackrest_backup_and_instance_restore_is_refused(own):
    from restore_assets.backends.factory import server_restore_backend
    from restore_assets.core.server_restore.steps import plan_instance_restore
    from restore_assets.jobs.snapshot import run_snapshot_job

    st, fleet = own
    before = {s.id for s in fleet.snapshots()}
    out = run_snapshot_job({}, {"root": str(fleet.root)})
    assert out["status"] == "succeeded", out
    info = json.loads(st.pgbackrest(STANZA, "info", "--output=json"))[0]
    new = [b for b in info["backup"] if b["label"] not in before]
    assert [b["type"] for b in new] == ["incr"]
    named = run_snapshot_job({"snapshot_identifier": "mine"}, {"root": str(fleet.root)})
    assert named["status"] != "succeeded"
    assert "by label" in json.dumps(named)
    assert {
        b["label"] for b in json.loads(st.pgbackrest(STANZA, "info", "--output=json"))[0]["backup"]
    } == before | {new[0]["label"]}
    with pytest.raises(InvalidRequest, match="not available on a pgBackRest fleet"):
        plan_instance_restore(
            server_restore_backend({"root": str(fleet.root)}), {"snapshot_id": "snap-x"}
        )


def test_demo_story_on_a_fleet_with_its_own_pgbackrest_stanza():
    from restore_assets.demo.ownership import demo_fleet
    from restore_assets.demo.story import run_story

    root = scratch_dir("ra-pgbr-demo-") / "demo"
    try:
        out = run_story(root, rows=20, activity_seconds=2.0, log=lambda m: None, pgbackrest=True)
        assert out["status"] == "succeeded", out.get("cause")
        fleet = LocalFleet(root)
        cfg = fleet.config()
        assert cfg.mode == "managed" and cfg.pgbackrest_stanza == "production"
        [snap] = fleet.snapshots()
        assert snap.kind == "pgbackrest-full"  # the first incr of a new stanza is made full
        archive = execute(fleet.production_dsn(), "SHOW archive_command")[0][0]
        assert "archive-push" in archive and "--stanza=production" in archive
        assert not (fleet.data_root / "backups").exists() or not any(
            (fleet.data_root / "backups").iterdir()
        )
        assert out["recovery"]["tables"]["customer_a1.orders"]["inserts"] > 0
        with pytest.raises(InvalidRequest, match="uses a pgBackRest stanza"):
            run_story(root, rows=20, activity_seconds=1.0, log=lambda m: None)
    finally:
        if root.exists():
            demo_fleet(root).down(purge=True)
        shutil.rmtree(root.parent, ignore_errors=True)
