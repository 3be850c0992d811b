"""Selective provisioning of plain snapshots: only the restored database's files are copied
(real PostgreSQL). Data at T equals a full-copy PITR at T under concurrent writes to another
database and to other schemas; a kill -9 mid-copy is cleaned up by `restore-assets cleanup`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from restore_assets.backends.factory import build_services
from restore_assets.backends.local import selective
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from tests.conftest import REPO, scratch_dir
from tests.integration.fleet_helpers import execute, mark, postmasters_under

pytestmark = pytest.mark.integration

TENANT_DB = "tenantdb"
OTHER_DB = "otherdb"
# every database but the restored one is zero-filled, the system ones included
LEFT_OUT = sorted([OTHER_DB, "postgres", "template0", "template1"])


def table_sums(dsn: str, schema: str | None = None) -> dict[str, tuple[int, str]]:
    """schema.table -> (row count, md5 of every row in key order) for every user table (of one
    schema when given)."""
    out = {}
    tables = execute(
        dsn,
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname = coalesce(%s, n.nspname) ORDER BY 1, 2",
        (schema,),
    )
    for schema, table in tables:
        name = f'"{schema}"."{table}"'
        count, digest = execute(
            dsn,
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            f" FROM {name} t",
        )[0]
        out[f"{schema}.{table}"] = (count, digest)
    return out


@dataclass
class Scene:
    """A fleet with a tenant database and another database, written to between snapshot and T."""

    fleet: LocalFleet
    t: datetime
    other_oid: int
    tenant_oid: int
    writes: int


def _writer(fleet: LocalFleet, stop: threading.Event, count: list[int]) -> None:
    other = fleet.production_dsn(OTHER_DB)
    tenant = fleet.production_dsn(TENANT_DB)
    i = 0
    while not stop.is_set():
        i += 1
        execute(other, "UPDATE big SET payload = md5(payload) WHERE id %% 50 = %s", (i % 50,))
        execute(
            other, "INSERT INTO big (payload) SELECT md5(g::text) FROM generate_series(1, 200) g"
        )
        execute(tenant, "INSERT INTO t2.items (label) VALUES (%s)", (f"w{i}",))
        execute(tenant, "UPDATE t1.items SET label = label || '+' WHERE id = %s", (i % 20 + 1,))
        # the other schema of the same database (zero-filled when t1 alone is restored)
        execute(tenant, "UPDATE t3.bulk SET v = md5(v) WHERE id %% 40 = %s", (i % 40,))
        execute(tenant, "INSERT INTO t3.bulk (v) SELECT md5(g::text) FROM generate_series(1, 50) g")
        count[0] = i


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    """tenantdb (schemas t1, t2) and otherdb (big, cold); a writer runs across the snapshot up to
    T, and again after T (with a table created after the snapshot in each database)."""
    base = scratch_dir("ra-selective-")
    fleet = LocalFleet(base / "fleet")
    try:
        dsn = fleet.up()
        for db in (TENANT_DB, OTHER_DB):
            execute(dsn, f"CREATE DATABASE {db}")
        tenant, other = fleet.production_dsn(TENANT_DB), fleet.production_dsn(OTHER_DB)
        for schema in ("t1", "t2"):
            execute(tenant, f"CREATE SCHEMA {schema}")
            execute(
                tenant,
                f"CREATE TABLE {schema}.items (id serial PRIMARY KEY, label text NOT NULL)",
            )
            execute(
                tenant,
                f"INSERT INTO {schema}.items (label) SELECT 'seed' || g FROM generate_series(1, 500) g",
            )
        # t3: another tenant of the same database, with a TOASTed column, an index, a table
        # rewritten and one truncated after the snapshot, and one never touched again
        execute(tenant, "CREATE SCHEMA t3")
        execute(
            tenant,
            "CREATE TABLE t3.bulk (id serial PRIMARY KEY, v text NOT NULL, doc text)",
        )
        execute(
            tenant,
            "INSERT INTO t3.bulk (v, doc) SELECT md5(g::text), CASE WHEN g %% 100 = 0 THEN"
            " (SELECT string_agg(md5((g * 1000 + k)::text), '') FROM generate_series(1, 200) k)"
            " END FROM generate_series(1, 30000) g",
        )
        execute(tenant, "CREATE INDEX ON t3.bulk (v)")
        for name in ("cold", "rw", "tr"):
            execute(
                tenant,
                f"CREATE TABLE t3.{name} AS SELECT g AS id, md5(g::text) AS v"
                " FROM generate_series(1, 20000) g",
            )
        # a small table, never touched again (its file is below selective.LEAVE_OUT_BELOW)
        execute(tenant, "CREATE TABLE t3.tiny AS SELECT g AS id FROM generate_series(1, 10) g")
        # a view of t1 over t3 (its definition is dumped, t3's data never read) and t4, whose
        # foreign key to t3 makes a restore of t4 copy the whole database
        execute(tenant, "CREATE VIEW t1.over_t3 AS SELECT id, v FROM t3.cold WHERE id < 10")
        execute(tenant, "CREATE SCHEMA t4")
        execute(tenant, "CREATE TABLE t4.refs (id int PRIMARY KEY REFERENCES t3.bulk (id))")
        execute(other, "CREATE TABLE big (id serial PRIMARY KEY, payload text NOT NULL)")
        execute(
            other,
            "INSERT INTO big (payload) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 60000) g",
        )
        execute(
            other,
            "CREATE TABLE cold AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
        )
        execute(other, "CREATE TABLE vac AS SELECT g AS id FROM generate_series(1, 50000) g")
        execute(other, "CREATE TABLE tiny AS SELECT g AS id FROM generate_series(1, 10) g")
        stop, count = threading.Event(), [0]
        writer = threading.Thread(target=_writer, args=(fleet, stop, count))
        writer.start()
        try:
            time.sleep(0.5)
            fleet.snapshot()  # taken while the writer runs
            # all-visible marks: WAL records that carry no image of the heap page (replay finds
            # a zero-filled page it cannot apply them to)
            execute(other, "VACUUM vac")
            # the other schema: a VACUUM, a rewrite, a TRUNCATE, a new table
            execute(tenant, "VACUUM t3.bulk")
            execute(tenant, "ALTER TABLE t3.rw ALTER COLUMN id SET DATA TYPE bigint")
            execute(tenant, "TRUNCATE t3.tr")
            execute(tenant, "INSERT INTO t3.tr SELECT g, 'again' FROM generate_series(1, 10) g")
            execute(
                tenant, "CREATE TABLE t3.after_snap AS SELECT g AS id FROM generate_series(1, 77) g"
            )
            execute(
                tenant,
                "CREATE TABLE t1.after_snap AS SELECT g AS id FROM generate_series(1, 300) g",
            )
            execute(
                other, "CREATE TABLE after_snap AS SELECT g AS id FROM generate_series(1, 300) g"
            )
            time.sleep(1.0)
            t = mark(tenant)
            time.sleep(0.5)
        finally:
            stop.set()
            writer.join()
        execute(tenant, "INSERT INTO t1.items (label) VALUES ('after-t')")
        fleet.window(refresh=True)
        oids = dict(execute(dsn, "SELECT datname, oid::int FROM pg_database"))
        yield Scene(fleet, t, oids[OTHER_DB], oids[TENANT_DB], count[0])
    finally:
        fleet.down(purge=True)
        shutil.rmtree(base, ignore_errors=True)


def test_snapshot_records_the_database_map(scene: Scene):
    snap = scene.fleet.snapshots()[0]
    meta = json.loads((scene.fleet.backup_dir / f"{snap.id}.json").read_text())
    assert meta["databases"][OTHER_DB] == scene.other_oid
    assert meta["databases"][TENANT_DB] == scene.tenant_oid
    assert meta["full_page_writes"] == "on"


def test_selective_equals_full_pitr_at_t(scene: Scene):
    fleet = scene.fleet
    target = RestoreTarget(restore_time=scene.t)
    assert scene.writes > 3  # the writer really wrote across the snapshot and T
    sel = fleet.provision("sel-eq", target, databases=[TENANT_DB])
    try:
        full = fleet.provision("full-eq", target)
        try:
            prov = sel.details["provisioning"]
            assert prov["mode"] == "selective"
            assert prov["zero_filled_databases"] == LEFT_OUT
            assert prov["bytes_zero_filled"] > 0 and prov["connections_refused"] == LEFT_OUT
            assert prov["files_left_out"] > 0 and prov["files_zero_filled"] > 0
            # the WAL replay reads after the snapshot's own is copied beside it, ahead of replay
            # (how many depends on the race with replay: tests/unit/test_archive_window.py)
            assert prov["wal_segments_prefetched"] >= 0
            assert full.details["provisioning"]["mode"] == "full"
            # replay met zero-filled pages (VACUUM's all-visible records) in otherdb only
            log = Path(sel.details["log"]).read_text()
            assert f"of relation base/{scene.other_oid}/" in log
            assert f"of relation base/{scene.tenant_oid}/" not in log
            assert full.details["provisioning"]["bytes_zero_filled"] == 0
            sel_sums = table_sums(fleet.temp_dsn(sel, TENANT_DB))
            full_sums = table_sums(fleet.temp_dsn(full, TENANT_DB))
            assert sel_sums == full_sums
            # T falls after the table created after the snapshot, before 'after-t'
            assert "t1.after_snap" in sel_sums and sel_sums["t1.after_snap"][0] == 300
            labels = [
                r[0] for r in execute(fleet.temp_dsn(sel, TENANT_DB), "SELECT label FROM t1.items")
            ]
            assert "after-t" not in labels
            assert sel_sums["t2.items"][0] > 500  # concurrent writes to the other schema replayed
            # no zero-filled database can be connected to (its zero relation map refuses it);
            # the full copy's can; both stay paused at T, read-only
            for name in LEFT_OUT:
                with pytest.raises(psycopg.OperationalError, match="pg_filenode.map"):
                    psycopg.connect(fleet.temp_dsn(sel, name)).close()
            for db in (sel, full):
                paused = "SELECT pg_is_in_recovery(), pg_get_wal_replay_pause_state()"
                assert execute(fleet.temp_dsn(db, TENANT_DB), paused) == [(True, "paused")]
            assert (
                execute(fleet.temp_dsn(full, OTHER_DB), "SELECT count(*) FROM cold")[0][0] == 20000
            )
            _assert_other_db_sparse(
                Path(sel.details["dir"]) / "data", Path(full.details["dir"]) / "data", scene
            )
        finally:
            fleet.delete_temp("full-eq")
    finally:
        fleet.delete_temp("sel-eq")
    assert postmasters_under(fleet.temp_root) == []


def _assert_other_db_sparse(sel_data: Path, full_data: Path, scene: Scene) -> None:
    """Small relation files of the other database are not made; the others are sparse files of
    their size holding only what replay wrote."""
    other = scene.fleet.production_dsn(OTHER_DB)
    cold, big, tiny = execute(
        other,
        "SELECT pg_relation_filenode('cold'), pg_relation_filenode('big'),"
        " pg_relation_filenode('tiny')",
    )[0]
    d = sel_data / "base" / str(scene.other_oid)
    assert not (d / str(tiny)).exists()  # small: left out
    assert (full_data / "base" / str(scene.other_oid) / str(tiny)).stat().st_size > 0
    # no WAL after the snapshot touches cold: a hole of its size
    full_size = (full_data / "base" / str(scene.other_oid) / str(cold)).stat().st_size
    assert full_size >= selective.LEAVE_OUT_BELOW
    assert (d / str(cold)).stat().st_size == full_size and (d / str(cold)).stat().st_blocks == 0
    # `big` is written by replay: a file of its size, whose blocks are the pages replay rebuilt
    assert (d / str(big)).stat().st_size == (
        full_data / "base" / str(scene.other_oid) / str(big)
    ).stat().st_size
    sel_blocks = sum(p.stat().st_blocks for p in d.iterdir() if p.is_file())
    full_blocks = sum(
        p.stat().st_blocks
        for p in (full_data / "base" / str(scene.other_oid)).iterdir()
        if p.is_file()
    )
    full_cold = (full_data / "base" / str(scene.other_oid) / str(cold)).stat().st_blocks
    assert full_cold > 0 and sel_blocks <= full_blocks - full_cold
    # its relation map is a zero-filled file of the same size (a connection fails on it)
    fmap = d / "pg_filenode.map"
    assert fmap.stat().st_size > 0 and fmap.read_bytes().count(0) == fmap.stat().st_size
    # the restored database is whole: the same files, the same sizes
    mine = sel_data / "base" / str(scene.tenant_oid)
    assert sum(p.stat().st_blocks for p in mine.iterdir()) > 0
    for p in mine.iterdir():
        assert (
            p.stat().st_size == (full_data / "base" / str(scene.tenant_oid) / p.name).stat().st_size
        )


def test_without_a_map_provisioning_is_full(scene: Scene):
    fleet = scene.fleet
    snap = fleet.snapshots()[0]
    meta_file = fleet.backup_dir / f"{snap.id}.json"
    saved = meta_file.read_text()
    meta = json.loads(saved)
    del meta["databases"]
    meta_file.write_text(json.dumps(meta))
    try:
        db = fleet.provision("nomap", RestoreTarget(snapshot_id=snap.id), databases=[TENANT_DB])
        try:
            prov = db.details["provisioning"]
            assert prov["mode"] == "full" and "no database map" in prov["reason"]
            assert execute(fleet.temp_dsn(db, OTHER_DB), "SELECT count(*) FROM cold")[0][0] == 20000
        finally:
            fleet.delete_temp("nomap")
    finally:
        meta_file.write_text(saved)


def test_kill_9_during_selective_copy_then_cleanup(scene: Scene, tmp_path: Path):
    from restore_assets.cli import main as cli

    fleet = scene.fleet
    rid = "sel-crash"
    workdir = fleet.temp_root / rid
    other_dir = workdir / "data" / "base" / str(scene.other_oid)
    err = open(tmp_path / "err", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "restore_assets.cli.main",
            "restore",
            "--root",
            str(fleet.root),
            "--database",
            TENANT_DB,
            "--schema",
            "t1",
            "--restore-time",
            scene.t.isoformat(),
            "--suffix",
            "crash",
            "--restore-id",
            rid,
            "--json",
        ],  # fmt: skip
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (other_dir.is_dir() and any(other_dir.iterdir())):
            assert proc.poll() is None, (tmp_path / "err").read_text()[-2000:]
            assert time.monotonic() < deadline, "the selective copy never started"
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the restore process only, as a crash would
        proc.wait()
        err.close()
    assert fleet.manifest.owns(workdir)
    assert not (workdir / "data" / "postmaster.pid").exists()  # killed before recovery began
    assert cli.main(["cleanup", "--root", str(fleet.root), "--restore-id", rid, "--json"]) == 0
    assert not workdir.exists()
    assert postmasters_under(fleet.temp_root) == []
    rec = build_services({"root": str(fleet.root)}).audit.get(rid)
    assert rec["status"] == "failed"
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_plan_and_audit_name_the_path(scene: Scene):
    from restore_assets.jobs.launch import plan_schema_restore, run_schema_restore

    fleet = scene.fleet
    request = {"database": TENANT_DB, "schemas": ["t1"], "restore_time": scene.t.isoformat()}
    config = {"root": str(fleet.root)}
    planned = plan_schema_restore(request, config)["would_create"][0]["provisioning"]
    assert planned["path"] == "schemas" and planned["zero_filled_databases"] == LEFT_OUT
    assert planned["zero_filled_schemas"] == 3  # t2, t3 and t4
    # t4's foreign key to t3: the schema path falls back to copying tenantdb whole
    t4 = plan_schema_restore({**request, "schemas": ["t4"]}, config)["would_create"][0]
    assert t4["provisioning"]["path"] == "databases"
    assert "depend on schema(s) t3" in t4["provisioning"]["schemas_copied_because"]
    forced = plan_schema_restore({**request, "full_provision": True}, config)
    assert forced["would_create"][0]["provisioning"]["mode"] == "full"
    out = run_schema_restore({**request, "suffix": "audited"}, config, compare=False)
    assert out["status"] == "succeeded", out["cause"]
    rec = build_services(config).audit.get(out["restore_id"])
    prov = next(p for p in rec["phases"] if p["phase"] == "provision")["metadata"]
    path = prov["details"]["provisioning"]
    assert path["mode"] == "selective" and path["zero_filled_databases"] == LEFT_OUT
    assert path["path"] == "schemas" and path["zero_filled_relations"] > 0
    assert path["bytes_copied"] > 0 and path["bytes_zero_filled"] > 0
    assert rec["inputs"]["full_provision"] is False
    restored = table_sums(fleet.production_dsn(TENANT_DB))
    assert restored["t1_audited.items"][0] == restored["t1.items"][0] - 1  # all but 'after-t'


def _dump(dsn: str, schema: str) -> str:
    """pg_dump --schema of the temporary instance (as the tool runs it), without its header."""
    from restore_assets.backends.local import pg

    out = pg.run_server_cmd(
        [pg.pg_bin("pg_dump"), "--schema", schema, "--no-owner", "-d", dsn]
    ).stdout
    # comments and pg_dump's random \restrict key differ between two runs
    keep = (line for line in out.splitlines() if not line.startswith(("--", "\\restrict", "\\unr")))
    return "\n".join(keep)


def test_schema_path_equals_full_pitr_at_t(scene: Scene):
    """Restoring t1 alone: t2's and t3's relations in tenantdb are zero-filled too; t1 at T is the
    same as from a full copy, and pg_dump of t1 reads nothing zero-filled."""
    fleet = scene.fleet
    target = RestoreTarget(restore_time=scene.t)
    sel = fleet.provision("sch-eq", target, databases=[TENANT_DB], schemas=["t1"])
    try:
        full = fleet.provision("sch-full", target)
        try:
            prov = sel.details["provisioning"]
            assert prov["path"] == "schemas", prov
            assert prov["zero_filled_schemas"] == 3 and prov["zero_filled_relations"] >= 8
            assert full.details["provisioning"]["path"] == "full"
            sums = table_sums(fleet.temp_dsn(full, TENANT_DB))
            t1 = {k: v for k, v in sums.items() if k.startswith("t1.")}
            sel_dsn = fleet.temp_dsn(sel, TENANT_DB)
            for name, expected in t1.items():
                schema, table = name.split(".")
                got = execute(
                    sel_dsn,
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text),"
                    f' \'\')) FROM "{schema}"."{table}" t',
                )[0]
                assert tuple(got) == expected, name
            assert t1["t1.after_snap"][0] == 300
            dumped = _dump(sel_dsn, "t1")
            assert "CREATE VIEW t1.over_t3" in dumped
            assert dumped == _dump(fleet.temp_dsn(full, TENANT_DB), "t1")
            # replay met zero-filled pages of t3 only (its VACUUM), never of t1
            filenodes = dict(
                execute(
                    fleet.temp_dsn(full, TENANT_DB),
                    "SELECT c.relname, c.relfilenode::int FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 't1'",
                )
            )
            log = Path(sel.details["log"]).read_text()
            for f in filenodes.values():
                assert f"of relation base/{scene.tenant_oid}/{f} " not in log
            # t3's small table has no file, its large untouched one is a hole of its size, the
            # written one holds the pages replay wrote; t3.rw was rewritten after the snapshot (its
            # new file is built by replay), t3.after_snap created after it
            data = Path(sel.details["dir"]) / "data" / "base" / str(scene.tenant_oid)
            assert not (data / str(_snapshot_filenode(fleet, "t3", "tiny"))).exists()
            cold = data / str(_snapshot_filenode(fleet, "t3", "cold"))
            assert cold.stat().st_size > 0 and cold.stat().st_blocks == 0
            bulk = data / str(_snapshot_filenode(fleet, "t3", "bulk"))
            assert bulk.stat().st_blocks > 0  # its pages are those replay wrote (its VACUUM: all)
            # never read by the tool: a left-out relation fails, a zero-filled one has no rows
            with pytest.raises(psycopg.errors.UndefinedFile):
                execute(sel_dsn, "SELECT count(*) FROM t3.tiny")
            assert execute(sel_dsn, "SELECT count(*) FROM t3.cold") == [(0,)]
            assert sums["t3.rw"][0] == 20000 and sums["t3.tr"][0] == 10
            assert sums["t3.after_snap"][0] == 77
        finally:
            fleet.delete_temp("sch-full")
    finally:
        fleet.delete_temp("sch-eq")
    assert postmasters_under(fleet.temp_root) == []


def _snapshot_filenode(fleet: LocalFleet, schema: str, table: str) -> int:
    """The relfilenode a table had at the snapshot (from its relation map)."""
    snap = fleet.snapshots()[0]
    relmap = json.loads((fleet.backup_dir / f"{snap.id}.relmap.json").read_text())
    for db in relmap.values():
        for f, (owner, kind, name) in db["relations"].items():
            if owner == schema and kind == "r" and name == f"{schema}.{table}":
                return int(f)
    raise AssertionError(f"{schema}.{table} not in the relation map")


def test_snapshot_records_the_relation_map(scene: Scene):
    snap = scene.fleet.snapshots()[0]
    path = scene.fleet.backup_dir / f"{snap.id}.relmap.json"
    assert path.stat().st_mode & 0o777 == 0o600
    db = json.loads(path.read_text())[str(scene.tenant_oid)]
    owners = {tuple(v) for v in db["relations"].values()}
    assert ("t3", "r", "t3.bulk") in owners and ("t3", "i", "t3.bulk_v_idx") in owners
    assert ("t1", "S", "t1.items_id_seq") in owners
    # bulk's TOAST table and its index belong to t3
    assert sum(1 for s, k, n in owners if s == "t3" and n.startswith("pg_toast.")) >= 2
    assert db["depends"] == {"t4": ["t3"]}  # the foreign key; not t1's view (its data is not read)


@pytest.mark.parametrize("below", [0, 1 << 40])
def test_the_files_left_out_change_no_data(
    scene: Scene, below: int, monkeypatch: pytest.MonkeyPatch
):
    """Leaving small relation files out only saves files: with every zero-filled file made (0),
    or every one left out, large and written ones included (replay makes those it writes to), t1
    at T is the same as from the default provision."""
    fleet = scene.fleet
    target = RestoreTarget(restore_time=scene.t)
    monkeypatch.setattr(selective, "LEAVE_OUT_BELOW", below)
    sel = fleet.provision(f"below-{below}", target, databases=[TENANT_DB], schemas=["t1"])
    try:
        prov = sel.details["provisioning"]
        data = Path(sel.details["dir"]) / "data" / "base" / str(scene.other_oid)
        cold, big = execute(
            fleet.production_dsn(OTHER_DB),
            "SELECT pg_relation_filenode('cold'), pg_relation_filenode('big')",
        )[0]
        if below == 0:
            assert prov["files_left_out"] == 0
            f = data / str(cold)
            assert f.stat().st_size > 0 and f.stat().st_blocks == 0  # a hole of its full size
        else:
            assert prov["files_zero_filled"] < 20 and prov["files_left_out"] > 100
            assert not (data / str(cold)).exists()
            assert (data / str(big)).stat().st_blocks > 0  # made by replay, which wrote to it
        monkeypatch.undo()
        ref = fleet.provision(f"below-ref-{below}", target, databases=[TENANT_DB], schemas=["t1"])
        try:
            got, want = (table_sums(fleet.temp_dsn(db, TENANT_DB), "t1") for db in (sel, ref))
            assert got == want and got["t1.after_snap"][0] == 300
        finally:
            fleet.delete_temp(f"below-ref-{below}")
    finally:
        fleet.delete_temp(f"below-{below}")


def test_promotion_wait_fails_at_once_on_a_database_that_is_gone(scene: Scene):
    """The wait connects to the restored database: one dropped before the restore point fails it
    at once, instead of retrying until the timeout."""
    from restore_assets.backends.local.pg import Cluster
    from restore_assets.core.errors import FleetError

    port = int(execute(scene.fleet.production_dsn(), "SHOW port")[0][0])
    cluster = Cluster(scene.fleet.root / "production" / "data", port)
    # (waiting out the timeout would say "not promoted within")
    with pytest.raises(FleetError, match="'no_such_db' does not exist at the restore point"):
        cluster.wait_promoted(600, dbname="no_such_db")
