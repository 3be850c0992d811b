"""The schema restore job builds each table's indexes while copying, and the result is complete."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from restore_assets.backends.factory import build_services
from restore_assets.jobs.launch import run_schema_restore

pytestmark = pytest.mark.integration


def _definitions(conn: psycopg.Connection, schema: str) -> dict[str, set]:
    def norm(text: str) -> str:
        return text.replace(f"{schema}.", "S.")

    indexes = {
        (name, norm(d))
        for name, d in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (schema,)
        )
    }
    constraints = {
        (name, kind, norm(d))
        for name, kind, d in conn.execute(
            "SELECT conname, contype::text, pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace WHERE nspname = %s",
            (schema,),
        )
    }
    return {"indexes": indexes, "constraints": constraints}


def test_indexes_built_while_copying_and_none_missing(demo_fleet):
    with psycopg.connect(demo_fleet.production_dsn("tenant_b")) as conn:
        live = _definitions(conn, "customer_b2")
    out = run_schema_restore(
        {
            "database": "tenant_b",
            "schemas": ["customer_b2"],
            "snapshot_id": demo_fleet.snapshots()[-1].id,
            "suffix": "piped",
        },
        {"root": str(demo_fleet.root)},
        compare=False,
    )
    assert out["status"] == "succeeded", out
    try:
        rec = build_services({"root": str(demo_fleet.root)}).audit.get(out["restore_id"])
        [post] = [p for p in rec["phases"] if p["phase"] == "post"]
        # the copy built the per-table indexes and keys, and the foreign keys between copied
        # tables as soon as both ends were complete; post ran only the rest
        assert post["metadata"]["built_while_copying"] > 0
        assert post["metadata"]["waves"]["per_table"] == 0
        assert post["metadata"]["waves"]["foreign_keys"] == 0
        with psycopg.connect(demo_fleet.production_dsn("tenant_b")) as conn:
            assert _definitions(conn, "customer_b2_piped") == live
            never_analyzed = conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'customer_b2_piped' AND c.relkind = 'r' AND c.reltuples < 0"
            ).fetchall()
            assert never_analyzed == []
    finally:
        with psycopg.connect(demo_fleet.production_dsn("tenant_b"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier("customer_b2_piped")
                )
            )
