"""Fidelity repros of issue 12, on real PostgreSQL, through the restore job's own DDL path.

The path is the job's: extract -> guard -> apply pre -> copy -> ``parallel.apply_post`` (the post
waves), then ``pg_dump`` of the restored schema must equal the source's with the name substituted.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import psycopg
import pytest

from restore_assets.backends.local import pg
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.core.ddl import DdlBundle, apply, extract, guard, target_name
from restore_assets.core.ddl.parallel import apply_post
from restore_assets.core.ddl.tablespaces import map_tablespaces
from restore_assets.jobs.launch import run_schema_restore
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import execute
from tests.integration.test_ddl_roundtrip import SUFFIX, assert_same_dump, copy_data, run_script

pytestmark = pytest.mark.integration


def restore_waves(
    dsn: str,
    schema: str,
    suffix: str = SUFFIX,
    workers: int = 3,
    tablespace_map: dict[str, str] | None = None,
    **kwargs,
) -> tuple[DdlBundle, str]:
    """The restore job's DDL path inside one database: pre in one transaction, post in waves."""
    bundle = extract(dsn, [schema], suffix, **kwargs)
    if tablespace_map:
        bundle = map_tablespaces(bundle, tablespace_map)
    new = target_name(schema, suffix)
    bundle.check_guard()
    guard(bundle.pre + bundle.post, bundle.target_schemas)
    with psycopg.connect(dsn) as conn:
        apply(conn, bundle.pre, allowed_schemas=bundle.target_schemas)
        with conn.transaction():
            copy_data(conn, schema, new)
    apply_post(dsn, bundle.post, bundle.target_schemas, workers=workers)
    return bundle, new


def test_alter_statistics_set_statistics_restores(fresh_db: str) -> None:
    """Repro 1: pg_dump's ALTER STATISTICS ... SET STATISTICS is allowed and kept."""
    run_script(
        fresh_db,
        "CREATE SCHEMA s1; CREATE TABLE s1.t(a int, b int);"
        " CREATE STATISTICS s1.st ON a, b FROM s1.t;"
        " ALTER STATISTICS s1.st SET STATISTICS 1000;",
    )
    bundle, new = restore_waves(fresh_db, "s1")
    assert any("ALTER STATISTICS" in s for s in bundle.post)
    assert_same_dump(fresh_db, "s1", new)
    with psycopg.connect(fresh_db) as conn:
        target = conn.execute(
            "SELECT stxstattarget FROM pg_statistic_ext e JOIN pg_namespace n"
            " ON n.oid = e.stxnamespace WHERE n.nspname = %s AND e.stxname = 'st'",
            (new,),
        ).fetchone()
    assert target == (1000,)


def test_access_method_of_each_matview_survives_the_post_waves(fresh_db: str) -> None:
    """Repro 2: SET default_table_access_method travels with its statement, not hoisted."""
    run_script(
        fresh_db,
        "CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler;"
        " CREATE SCHEMA s4;"
        " CREATE MATERIALIZED VIEW s4.mv_a USING heap2 AS SELECT 1 AS x;"
        " CREATE MATERIALIZED VIEW s4.mv_b AS SELECT 2 AS x;"
        " CREATE TABLE s4.t_c (id int) USING heap2;"
        " CREATE TABLE s4.t_d (id int);",
    )
    _, new = restore_waves(fresh_db, "s4")
    with psycopg.connect(fresh_db) as conn:
        rows = dict(
            conn.execute(
                "SELECT c.relname, a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
                (new,),
            ).fetchall()
        )
    assert rows == {"mv_a": "heap2", "mv_b": "heap", "t_c": "heap2", "t_d": "heap"}
    assert_same_dump(fresh_db, "s4", new)


@pytest.fixture
def tablespace_dir() -> Iterator[str]:
    """An empty directory the server user owns, for CREATE TABLESPACE."""
    base = scratch_dir("ra-tblspc-")
    path = base / "ts"
    path.mkdir()
    pg.give_to_server_user(path)
    try:
        yield str(path)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_index_keeps_its_tablespace_through_the_post_waves(
    fresh_db: str, pg: pg.Cluster, tablespace_dir: str
) -> None:
    """Repro 2b: SET default_tablespace before an index stays with that index in the waves."""
    ts = "ra_fid_ts"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLESPACE {ts} LOCATION '{tablespace_dir}'")
    try:
        run_script(
            fresh_db,
            "CREATE SCHEMA s5;"
            f" CREATE TABLE s5.a (id int PRIMARY KEY USING INDEX TABLESPACE {ts}, v int)"
            f" TABLESPACE {ts};"
            f" CREATE INDEX a_v ON s5.a (v) TABLESPACE {ts};"
            " CREATE TABLE s5.b (id int PRIMARY KEY, v int);"
            " CREATE INDEX b_v ON s5.b (v);",
        )
        _, new = restore_waves(fresh_db, "s5")
        with psycopg.connect(fresh_db) as conn:
            rows = dict(
                conn.execute(
                    "SELECT c.relname, coalesce(t.spcname, '') FROM pg_class c"
                    " LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
                    (new,),
                ).fetchall()
            )
        assert rows == {"a": ts, "a_pkey": ts, "a_v": ts, "b": "", "b_pkey": "", "b_v": ""}
        assert_same_dump(fresh_db, "s5", new)
        # --tablespace-map ra_fid_ts=pg_default: the same objects, in the default tablespace
        bundle, moved = restore_waves(fresh_db, "s5", "moved", tablespace_map={ts: "pg_default"})
        assert not any(w.startswith("tablespace map") for w in bundle.warnings)
        with psycopg.connect(fresh_db) as conn:
            placed = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE c.reltablespace = 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
                (moved,),
            ).fetchone()
        assert placed == (6, 6)
    finally:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS s5 CASCADE")
            conn.execute(f'DROP SCHEMA IF EXISTS "s5_{SUFFIX}" CASCADE')
            conn.execute('DROP SCHEMA IF EXISTS "s5_moved" CASCADE')
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP TABLESPACE IF EXISTS {ts}")


def test_fleet_snapshot_and_temp_instance_of_a_cluster_with_a_tablespace(
    tablespace_dir: str,
) -> None:
    """Repro 3: snapshot maps the tablespace into the snapshot; the temp copy uses its own."""
    base = scratch_dir("ra-fleet-ts-")
    fleet = LocalFleet(base / "fleet")
    try:
        dsn = fleet.up()
        execute(dsn, f"CREATE TABLESPACE ts1 LOCATION '{tablespace_dir}'")
        execute(dsn, "CREATE TABLE items (id int PRIMARY KEY, label text) TABLESPACE ts1")
        execute(dsn, "INSERT INTO items SELECT g, 'x' || g FROM generate_series(1, 50) g")
        snap = fleet.snapshot()
        temp = fleet.provision("fid-ts-1", RestoreTarget(snapshot_id=snap.id), timeout=120)
        try:
            tdsn = fleet.temp_dsn(temp)
            rows = execute(tdsn, "SELECT count(*) FROM items")
            location = execute(
                tdsn, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname='ts1'"
            )[0][0]
            # the temporary cluster reads its own copy, never production's tablespace directory
            assert rows == [(50,)]
            assert location.startswith(str(fleet.temp_root / "fid-ts-1")), location
            # and it is read-only: paused in recovery at its target
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                execute(tdsn, "INSERT INTO items VALUES (51, 'temp only')")
        finally:
            fleet.delete_temp("fid-ts-1")
        # production's tablespace was not touched by the temporary cluster
        assert execute(dsn, "SELECT count(*) FROM items") == [(50,)]
    finally:
        fleet.down(purge=True)
        shutil.rmtree(base, ignore_errors=True)


def test_schema_restore_job_keeps_or_maps_tablespaces_on_a_fleet_with_one(
    tablespace_dir: str,
) -> None:
    """The whole job: snapshot of a cluster with a tablespace; objects keep it, or move with a map."""
    base = scratch_dir("ra-fleet-ts-job-")
    fleet = LocalFleet(base / "fleet")
    try:
        fleet.up()
        execute(fleet.production_dsn(), "CREATE DATABASE tsdb")
        dsn = fleet.production_dsn("tsdb")
        execute(dsn, f"CREATE TABLESPACE ts1 LOCATION '{tablespace_dir}'")
        execute(
            dsn,
            "CREATE SCHEMA acme; CREATE TABLE acme.big (id int PRIMARY KEY USING INDEX TABLESPACE"
            " ts1, v text) TABLESPACE ts1; CREATE INDEX big_v ON acme.big (v) TABLESPACE ts1;"
            " CREATE TABLE acme.small (id int PRIMARY KEY);"
            " INSERT INTO acme.big SELECT g, 'v' || g FROM generate_series(1, 20) g;"
            # built in the rest wave right after big_v (built while copying), same tablespace
            " CREATE MATERIALIZED VIEW acme.mv AS SELECT id FROM acme.big;"
            " CREATE INDEX mv_id ON acme.mv (id) TABLESPACE ts1;",
        )
        snap = fleet.snapshot()
        where = (
            "SELECT c.relname, coalesce(t.spcname, '') FROM pg_class c"
            " LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s ORDER BY 1"
        )
        kept = {
            "big": "ts1",
            "big_pkey": "ts1",
            "big_v": "ts1",
            "mv": "",
            "mv_id": "ts1",
            "small": "",
            "small_pkey": "",
        }
        request = {"database": "tsdb", "schemas": ["acme"], "snapshot_id": snap.id}
        out = run_schema_restore(
            {**request, "suffix": "kept"}, {"root": str(fleet.root)}, compare=False
        )
        assert out["status"] == "succeeded", out
        assert dict(execute(dsn, where, ("acme_kept",))) == kept
        assert execute(dsn, "SELECT count(*) FROM acme_kept.big") == [(20,)]
        out = run_schema_restore(
            {**request, "suffix": "moved", "tablespace_map": ["ts1=pg_default"]},
            {"root": str(fleet.root)},
            compare=False,
        )
        assert out["status"] == "succeeded", out
        assert dict(execute(dsn, where, ("acme_moved",))) == {k: "" for k in kept}
    finally:
        fleet.down(purge=True)
        shutil.rmtree(base, ignore_errors=True)
