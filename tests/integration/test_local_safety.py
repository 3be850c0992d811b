"""The local backend deletes only what it created, keeps samples private and admits only the tool."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from restore_assets.backends.factory import build_services
from restore_assets.backends.local import pg
from restore_assets.backends.local.artifacts import LocalArtifacts
from restore_assets.backends.local.audit import SqliteAuditLog
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.local.manifest import Manifest
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.cli import main as cli
from restore_assets.core.errors import FleetError, InvalidRequest
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import execute, postmasters_under

pytestmark = pytest.mark.integration

INTRUDER = "ra-intruder"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    """A managed fleet with one table and one snapshot."""
    base = scratch_dir("ra-safety-")
    fleet = LocalFleet(base / "fleet")
    fleet.up()
    execute(fleet.production_dsn(), "CREATE TABLE items (id int PRIMARY KEY, label text)")
    execute(fleet.production_dsn(), "INSERT INTO items VALUES (1, 'secret-sample')")
    fleet.snapshot()
    try:
        yield fleet
    finally:
        fleet.down(purge=True)
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ fleet root and manifest
def test_purge_removes_what_the_manifest_lists_and_leaves_an_unrelated_file_and_its_root():
    base = scratch_dir("ra-safety-purge-")
    try:
        fleet = LocalFleet(base / "fleet")
        fleet.up()
        snap = fleet.snapshot()
        notes = fleet.root / "notes.txt"  # the user's, written after the fleet was made
        notes.write_text("mine")
        # what a restore's detached release writes (jobs/schema_phases: <root>/logs)
        (fleet.root / "logs").mkdir()
        (fleet.root / "logs" / "release-r-1.log").write_text("released")
        made = [
            fleet.root / n for n in ("fleet.json", "artifacts", "production", "backups", "logs")
        ]
        snap_dir = fleet.backup_dir / snap.id
        assert all(p.exists() for p in made)

        assert cli.main(["fleet", "down", "--purge", "--root", str(fleet.root)]) == 0

        assert notes.read_text() == "mine"
        assert sorted(p.name for p in fleet.root.iterdir()) == ["notes.txt"]
        assert not any(p.exists() for p in made)
        assert not snap_dir.exists()
        assert postmasters_under(fleet.root) == []
        # without the user's file, the emptied root goes too
        notes.unlink()
        other = LocalFleet(base / "fleet2")
        other.up()
        (other.root / "logs").mkdir()
        other.down(purge=True)
        assert not other.root.exists()
        other.up()  # the same root can be used again
        other.down(purge=True)
        assert not other.root.exists()
        assert base.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_fleet_up_refuses_a_non_empty_directory_that_is_not_a_fleet_root(capsys):
    base = scratch_dir("ra-safety-notfleet-")
    try:
        (base / "README.md").write_text("a repository")
        before = sorted(p.name for p in base.iterdir())
        with pytest.raises(InvalidRequest, match="is not empty and is not a fleet root"):
            LocalFleet(base).up()
        assert cli.main(["fleet", "up", "--root", str(base)]) == 2
        assert "not a fleet root" in capsys.readouterr().err
        # purge of a directory that is no fleet root deletes nothing
        assert cli.main(["fleet", "down", "--purge", "--root", str(base)]) == 2
        assert sorted(p.name for p in base.iterdir()) == before
        assert (base / "README.md").read_text() == "a repository"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_temp_cluster_delete_refuses_a_path_the_manifest_does_not_list(fleet: LocalFleet):
    stranger = fleet.temp_root / "not-ours"
    fleet.manifest.record(fleet.temp_root)
    pg.give_to_server_user(fleet.temp_root)
    stranger.mkdir()
    (stranger / "keep.txt").write_text("someone else's")
    try:
        with pytest.raises(FleetError, match="not listed in the fleet manifest"):
            fleet.delete_temp("not-ours")
        with pytest.raises(FleetError, match="not listed in the fleet manifest"):
            fleet.delete_resource("local-temp-cluster", "not-ours", {})
        assert fleet.down() == []  # down skips it too
        fleet.up()
        assert (stranger / "keep.txt").read_text() == "someone else's"
        # and a listed one goes
        snap = fleet.snapshots()[-1]
        db = fleet.provision("ours", RestoreTarget(snapshot_id=snap.id))
        assert fleet.manifest.owns(fleet.temp_root / "ours")
        assert fleet.delete_temp(db.restore_id) == "ours"
        assert not (fleet.temp_root / "ours").exists()
    finally:
        shutil.rmtree(stranger)


def test_manifest_refuses_to_record_or_remove_outside_paths(tmp_path: Path):
    manifest = Manifest(tmp_path / "root")
    (tmp_path / "root").mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    with pytest.raises(FleetError, match="outside the fleet root"):
        manifest.record(tmp_path / "root" / ".." / "outside.txt")
    with pytest.raises(FleetError, match="does not list it"):
        manifest.remove(outside)
    assert outside.exists()


def test_artifact_purge_refuses_a_directory_the_manifest_does_not_list(fleet: LocalFleet):
    arts = LocalArtifacts(fleet.root / "artifacts", manifest=fleet.manifest)
    arts.put("listed", "pre.sql", "CREATE TABLE t ()")
    foreign = fleet.root / "artifacts" / "foreign"
    foreign.mkdir()
    (foreign / "f.txt").write_text("not ours")
    try:
        with pytest.raises(FleetError, match="not listed in the fleet manifest"):
            arts.purge("foreign")
        assert (foreign / "f.txt").exists()
        with pytest.raises(Exception, match="not an artifact directory"):
            arts.purge("..")
        arts.purge("listed")
        assert not (fleet.root / "artifacts" / "listed").exists()
    finally:
        shutil.rmtree(foreign)


# ------------------------------------------------------------------ owner-only files
def test_artifacts_reports_and_audit_database_are_readable_by_their_owner_only(
    fleet: LocalFleet, fresh_db: str
):
    old = os.umask(0o022)  # a usual umask: the modes must not depend on it
    try:
        services = build_services({"root": str(fleet.root)})
        audit_file = fleet.root / "audit.sqlite"
        assert mode(audit_file) == 0o600
        rid = services.audit.open("schema_restore", {"database": "x", "schemas": ["s"]})
        uri = services.artifacts.put(rid, "pre.sql", "CREATE TABLE s.t ()")
        path = Path(uri.removeprefix("file://"))
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
        assert mode(fleet.root / "artifacts") == 0o700
        assert mode(fleet.config_path) == 0o600

        # an executed comparison notebook and its HTML hold sample keys
        from restore_assets.core.compare import compare_schemas

        for schema in ("s", "s_r"):
            execute(fresh_db, f"CREATE SCHEMA {schema}")
            execute(fresh_db, f"CREATE TABLE {schema}.t (id int PRIMARY KEY, v text)")
        execute(fresh_db, "INSERT INTO s.t VALUES (1, 'a'), (2, 'b')")
        execute(fresh_db, "INSERT INTO s_r.t VALUES (1, 'a'), (3, 'c')")
        comparison = compare_schemas(fresh_db, "s", "s_r").to_dict()
        html = Path(services.render_report(rid, "s", comparison))
        for written in (html, html.with_suffix(".ipynb")):
            assert written.exists()
            assert mode(written) == 0o600, written
        assert os.umask(0o022) == 0o022  # the previous umask is back
    finally:
        os.umask(old)


def test_audit_database_is_created_owner_only(tmp_path: Path):
    old = os.umask(0)
    try:
        SqliteAuditLog(tmp_path / "a.sqlite")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.sqlite") == 0o600


# ------------------------------------------------------------------ temporary instances
def _intruder() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(INTRUDER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(INTRUDER)


def _psql_as(user: pwd.struct_passwd | None, dsn: str) -> subprocess.CompletedProcess[str]:
    kwargs = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return subprocess.run(
        [pg.pg_bin("psql"), "-X", "-w", "-At", "-d", dsn, "-c", "SELECT label FROM items"],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/", "LC_ALL": "C"},
        timeout=60,
        check=False,
        **kwargs,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a second OS user needs root")
def test_another_os_user_cannot_connect_to_a_temporary_instance(fleet: LocalFleet):
    intruder = _intruder()
    snap = fleet.snapshots()[-1]
    db = fleet.provision("private", RestoreTarget(snapshot_id=snap.id))
    try:
        dsn = fleet.temp_dsn(db)
        socket_dir = Path(db.host)
        # the tool gets in; the socket directory is the server user's, 0700
        assert _psql_as(None, dsn).stdout.strip() == "secret-sample"
        assert mode(socket_dir) == 0o700
        assert socket_dir.stat().st_uid == pg.server_user().uid
        assert "password" not in dsn
        # another account: no TCP listener, and the socket directory is closed to it
        tcp = _psql_as(intruder, pg.dsn(db.port))
        assert tcp.returncode != 0 and "secret-sample" not in tcp.stdout
        assert "refused" in tcp.stderr
        sock = _psql_as(intruder, dsn)
        assert sock.returncode != 0 and "secret-sample" not in sock.stdout
        assert "Permission denied" in sock.stderr
        # even with the directory and socket opened up, peer authentication refuses it
        socket_file = socket_dir / f".s.PGSQL.{db.port}"
        path = [d for d in (socket_dir, *socket_dir.parents) if not mode(d) & 0o001]
        modes = {d: mode(d) for d in path}
        for d in path:
            os.chmod(d, mode(d) | 0o011)
        os.chmod(socket_file, 0o777)
        try:
            peer = _psql_as(intruder, dsn)
        finally:
            os.chmod(socket_file, 0o700)
            for d, m in modes.items():
                os.chmod(d, m)
        assert peer.returncode != 0 and "secret-sample" not in peer.stdout
        assert "authentication failed" in peer.stderr
    finally:
        fleet.delete_temp(db.restore_id)


# ------------------------------------------------------------------ adopting with a password
@pytest.fixture(scope="module")
def scram_cluster() -> Iterator[tuple[pg.Cluster, Path, Path]]:
    """A cluster that asks for a password on TCP (scram), with an archive and a backup directory."""
    base = scratch_dir("ra-safety-scram-")
    archive, backups = base / "archive", base / "backups"
    pg.give_to_server_user(archive)
    pg.give_to_server_user(backups)
    cmd = f"test ! -f '{archive}/%f' && cp '%p' '{archive}/%f'"
    cluster = pg.start_new_cluster(
        base / "cluster" / "data",
        {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": "'" + cmd.replace("'", "''") + "'",
            "max_wal_senders": "5",
        },
    )
    try:
        execute(cluster.dsn(), "ALTER ROLE postgres PASSWORD 'pr0d-s3cret'")
        cluster.write_file(
            "pg_hba.conf",
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host replication all 127.0.0.1/32 scram-sha-256\n",
        )
        execute(cluster.dsn() + " password=pr0d-s3cret", "SELECT pg_reload_conf()")
        yield cluster, archive, backups
    finally:
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


def test_adopt_refuses_a_password_on_the_command_line(scram_cluster, capsys):
    cluster, archive, backups = scram_cluster
    base = scratch_dir("ra-safety-adopt-")
    try:
        dsn = cluster.dsn() + " password=pr0d-s3cret"
        argv = ["fleet", "adopt", "--root", str(base / "fleet"), "--dsn", dsn]
        argv += ["--archive-dir", str(archive), "--backup-dir", str(backups)]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "holds a password" in err and "PGPASSWORD" in err
        assert "pr0d-s3cret" not in err
        assert not (base / "fleet").exists()
        with pytest.raises(InvalidRequest, match="holds a password"):
            LocalFleet(base / "f2").adopt(dsn, str(archive), str(backups))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_adopt_takes_the_password_from_pgpassword_and_stores_none(scram_cluster, monkeypatch):
    cluster, archive, backups = scram_cluster
    base = scratch_dir("ra-safety-adopt-env-")
    try:
        monkeypatch.setenv("PGPASSWORD", "pr0d-s3cret")
        fleet = LocalFleet(base / "fleet")
        fleet.adopt(cluster.dsn(), str(archive), str(backups))
        assert "pr0d-s3cret" not in fleet.config_path.read_text()
        assert not (fleet.root / "pgpass").exists()
        snap = fleet.snapshot()  # pg_basebackup, as the server user, gets it in its environment
        assert (backups / snap.id / "backup_label").exists()
        # without it, a clear error (and no password in it)
        monkeypatch.delenv("PGPASSWORD")
        with pytest.raises((FleetError, psycopg.OperationalError), match="password") as info:
            fleet.snapshot()
        assert "pr0d-s3cret" not in str(info.value)
        fleet.down(purge=True)
        assert (backups / snap.id).exists()  # a purge leaves what we put in the owner's directory
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_adopt_prompts_on_a_terminal_and_keeps_the_password_in_a_private_pgpass(
    scram_cluster, monkeypatch, capsys
):
    cluster, archive, backups = scram_cluster
    base = scratch_dir("ra-safety-adopt-tty-")
    try:
        monkeypatch.delenv("PGPASSWORD", raising=False)
        monkeypatch.setenv("PGPASSFILE", str(base / "none"))
        prompts = []
        monkeypatch.setattr("sys.stdin.isatty", lambda: True)
        monkeypatch.setattr("getpass.getpass", lambda p: prompts.append(p) or "pr0d-s3cret")
        root = base / "fleet"
        argv = ["fleet", "adopt", "--root", str(root), "--dsn", cluster.dsn()]
        argv += ["--archive-dir", str(archive), "--backup-dir", str(backups)]
        assert cli.main(argv) == 0
        assert len(prompts) == 1 and "pr0d-s3cret" not in prompts[0]
        assert "pr0d-s3cret" not in capsys.readouterr().out
        fleet = LocalFleet(root)
        assert "pr0d-s3cret" not in fleet.config_path.read_text()
        assert mode(root / "pgpass") == 0o600
        assert "pr0d-s3cret" in (root / "pgpass").read_text()
        with psycopg.connect(fleet.production_dsn()) as conn:  # the DSN names the pgpass file
            assert conn.execute("SELECT 1").fetchone() == (1,)
        snap = fleet.snapshot()
        assert (backups / snap.id / "backup_label").exists()
        fleet.down(purge=True)
        assert not root.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ a 0700 home as root
@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_a_fleet_in_a_private_home_keeps_it_private_and_places_data_elsewhere(capsys):
    home = Path(tempfile.mkdtemp(prefix="ra-home-"))  # 0700, root's: postgres cannot enter
    assert mode(home) == 0o700
    root = home / "clone" / ".demo"
    try:
        assert cli.main(["fleet", "up", "--root", str(root)]) == 0
        out = capsys.readouterr().out
        fleet = LocalFleet(root)
        data = fleet.data_root
        assert data != root and home not in data.parents
        assert f"PostgreSQL data is in {data}" in out
        assert mode(home) == 0o700  # never opened up
        assert mode(root) == 0o700
        assert mode(data) == 0o711 and data.stat().st_uid == 0
        for name in ("production", "archive", "backups"):
            assert (data / name).stat().st_uid == pg.server_user().uid
            assert mode(data / name) == 0o700
        # the demo's path: seed, snapshot, restore with its report
        from restore_assets.demo.story import run_story

        outcome = run_story(root, rows=20, activity_seconds=2.0, log=lambda m: None)
        assert outcome["status"] == "succeeded", outcome.get("cause")
        assert outcome["restored"]["customer_a1"].startswith("customer_a1_")
        assert fleet.temp_instances() == []
        fleet.down(purge=True)
        assert not data.exists() and not root.exists()
        assert (home / "clone").is_dir()
    finally:
        LocalFleet(root).down(purge=True) if root.exists() else None
        shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------ the demo touches only the demo
@pytest.fixture(scope="module")
def adopted() -> Iterator[tuple[LocalFleet, pg.Cluster]]:
    """A self-managed cluster whose tenant_a.customer_a1 is the user's own, adopted by a fleet."""
    base = scratch_dir("ra-safety-adopted-")
    archive, backups = base / "archive", base / "backups"
    pg.give_to_server_user(archive)
    pg.give_to_server_user(backups)
    cmd = f"test ! -f '{archive}/%f' && cp '%p' '{archive}/%f'"
    cluster = pg.start_new_cluster(
        base / "cluster" / "data",
        {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": "'" + cmd.replace("'", "''") + "'",
        },
    )
    fleet = LocalFleet(base / "fleet")
    try:
        execute(cluster.dsn(), "CREATE DATABASE tenant_a")
        execute(cluster.dsn("tenant_a"), "CREATE SCHEMA customer_a1")
        execute(cluster.dsn("tenant_a"), "CREATE TABLE customer_a1.users (id int, name text)")
        execute(cluster.dsn("tenant_a"), "INSERT INTO customer_a1.users VALUES (1, 'real')")
        fleet.adopt(cluster.dsn(), str(archive), str(backups))
        yield fleet, cluster
    finally:
        fleet.down(purge=True)
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


def users_of(cluster: pg.Cluster) -> list[tuple]:
    return execute(cluster.dsn("tenant_a"), "SELECT id, name FROM customer_a1.users ORDER BY id")


def test_demo_commands_refuse_an_adopted_fleet(adopted, capsys):
    fleet, cluster = adopted
    for argv in (
        ["demo", "seed", "--replace", "--rows", "10"],
        ["demo", "activity", "--seconds", "1"],
        ["demo", "run", "--rows", "10"],
    ):
        assert cli.main([*argv, "--root", str(fleet.root)]) == 2, argv
        assert "adopts an existing cluster" in capsys.readouterr().err
    assert users_of(cluster) == [(1, "real")]


def test_demo_never_replaces_or_writes_into_a_schema_it_did_not_create(adopted):
    from restore_assets.demo import activity, incident, seed

    _fleet, cluster = adopted
    with pytest.raises(InvalidRequest, match="customer_a1.*not created by the demo"):
        seed(cluster.dsn, rows=10, replace=True)
    with pytest.raises(InvalidRequest, match="not created by the demo"):
        activity(cluster.dsn, seconds=1)
    with pytest.raises(InvalidRequest, match="not created by the demo"):
        incident(cluster.dsn("tenant_a"), "customer_a1")
    assert users_of(cluster) == [(1, "real")]
    # nothing else of the layout was created either (the refusal comes first)
    assert execute(cluster.dsn(), "SELECT 1 FROM pg_database WHERE datname = 'tenant_b'") == []


def test_demo_replaces_only_its_own_schemas_and_never_their_outside_dependents(pg):
    from restore_assets.demo import seed

    database = "ra_safety_demo"
    dsn = pg.dsn(database)
    layout = {database: ["c1"]}
    execute(pg.dsn(), f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    try:
        seed(pg.dsn, rows=10, layout=layout)
        seed(pg.dsn, rows=10, layout=layout, replace=True)  # its own: replaced
        # a view of the user's in another schema depends on it: a CASCADE would drop it
        execute(dsn, "CREATE SCHEMA reporting")
        execute(dsn, "CREATE VIEW reporting.active AS SELECT id FROM c1.users")
        with pytest.raises(InvalidRequest, match="dependents outside it.*reporting.active"):
            seed(pg.dsn, rows=10, layout=layout, replace=True)
        assert execute(dsn, "SELECT count(*) FROM reporting.active")[0][0] == 10
        # a copy carrying the demo's comment is not the demo's: the mark names another oid
        comment = execute(dsn, "SELECT obj_description('c1'::regnamespace, 'pg_namespace')")[0][0]
        execute(dsn, "CREATE SCHEMA c2")
        execute(dsn, "CREATE TABLE c2.keep (id int)")
        execute(dsn, f"COMMENT ON SCHEMA c2 IS '{comment}'")
        with pytest.raises(InvalidRequest, match="c2.*not created by the demo"):
            seed(pg.dsn, rows=10, layout={database: ["c2"]}, replace=True)
        assert execute(dsn, "SELECT count(*) FROM c2.keep") == [(0,)]
    finally:
        execute(pg.dsn(), f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def test_manifest_rename_moves_the_listing_with_the_path(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    manifest = Manifest(root)
    made = manifest.record(root / "a")
    made.mkdir()
    manifest.rename(root / "a", root / "b")
    assert manifest.owns(root / "b") and not manifest.owns(root / "a")
    (root / "c").mkdir()
    with pytest.raises(FleetError, match="does not list it"):
        manifest.rename(root / "c", root / "d")
    assert (root / "c").exists() and not (root / "d").exists()
    assert manifest.remove(root / "b") and not (root / "b").exists()


def test_adopt_without_a_password_off_a_terminal_says_where_to_put_it(
    scram_cluster, monkeypatch, capsys
):
    cluster, archive, backups = scram_cluster
    base = scratch_dir("ra-safety-adopt-nopw-")
    try:
        monkeypatch.delenv("PGPASSWORD", raising=False)
        monkeypatch.setenv("PGPASSFILE", str(base / "none"))
        monkeypatch.setattr("sys.stdin.isatty", lambda: False)
        argv = ["fleet", "adopt", "--root", str(base / "fleet"), "--dsn", cluster.dsn()]
        argv += ["--archive-dir", str(archive), "--backup-dir", str(backups)]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "no password supplied" in err and "PGPASSWORD or a pgpass file" in err
        assert not LocalFleet(base / "fleet").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
