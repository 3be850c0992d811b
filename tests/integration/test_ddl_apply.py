"""apply() and the guard on real PostgreSQL: one transaction, bounded lock waits, clear errors."""

from __future__ import annotations

import psycopg
import pytest

from restore_assets.core.ddl import apply, build_bundle, dump_schema_ddl, extract
from restore_assets.core.errors import DdlError, GuardViolation
from tests.integration.test_ddl_roundtrip import run_script

pytestmark = pytest.mark.integration

SOURCE = """
CREATE SCHEMA shared;
CREATE TABLE shared.countries (code text PRIMARY KEY);
CREATE SCHEMA t1;
CREATE TABLE t1.a (id integer PRIMARY KEY, c text REFERENCES shared.countries (code));
SET check_function_bodies = off;  -- a body pg_dump will dump but that cannot be validated
CREATE FUNCTION t1.body_refers_to_missing() RETURNS int LANGUAGE sql AS $$ SELECT n FROM t1.nope $$;
"""


def schemas(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}


def test_pre_and_post_apply_with_function_bodies_unchecked(fresh_db: str) -> None:
    run_script(fresh_db, SOURCE)
    bundle = extract(fresh_db, ["t1"], "r1")
    with psycopg.connect(fresh_db) as conn:
        apply(conn, bundle.pre, allowed_schemas=bundle.target_schemas)
        apply(conn, bundle.post, allowed_schemas=bundle.target_schemas)
        # settings were transaction-local: the caller's session is as it was
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert conn.execute("SHOW check_function_bodies").fetchone() == ("on",)
    assert "t1_r1" in schemas(fresh_db)
    assert "REFERENCES shared.countries(code)" in dump_schema_ddl(fresh_db, ["t1_r1"])


def test_failure_names_the_statement_and_rolls_back(fresh_db: str) -> None:
    run_script(fresh_db, SOURCE)
    bundle = extract(fresh_db, ["t1"], "r2")
    broken = [*bundle.pre, "CREATE TABLE t1_r2.b (x t1_r2.no_such_type)"]
    with psycopg.connect(fresh_db) as conn:
        with pytest.raises(DdlError) as err:
            apply(conn, broken, allowed_schemas=bundle.target_schemas)
    message = str(err.value)
    assert "CREATE TABLE t1_r2.b (x t1_r2.no_such_type)" in message
    assert 'type "t1_r2.no_such_type" does not exist' in message
    assert f"statement {len(broken)} of {len(broken)}" in message
    assert "t1_r2" not in schemas(fresh_db)  # nothing of pre is left behind


def test_lock_timeout_bounds_waits_behind_application_locks(fresh_db: str) -> None:
    run_script(fresh_db, SOURCE)
    bundle = extract(fresh_db, ["t1"], "r3")
    with psycopg.connect(fresh_db) as conn:
        apply(conn, bundle.pre, allowed_schemas=bundle.target_schemas)
    with psycopg.connect(fresh_db) as app, psycopg.connect(fresh_db) as conn:
        app.execute("LOCK TABLE shared.countries IN ACCESS EXCLUSIVE MODE")  # held until rollback
        with pytest.raises(DdlError, match="lock timeout") as err:
            apply(conn, bundle.post, lock_timeout="200ms", allowed_schemas=bundle.target_schemas)
        assert "REFERENCES shared.countries" in str(err.value)
        app.rollback()
    with psycopg.connect(fresh_db) as conn:  # once the application lets go, post goes through
        apply(conn, bundle.post, lock_timeout="2s", allowed_schemas=bundle.target_schemas)


def test_statement_timeout(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        with pytest.raises(DdlError, match="statement timeout"):
            apply(conn, ["SELECT pg_sleep(0.5)"], statement_timeout="50ms")


def test_guard_refuses_a_hostile_dump_before_anything_runs(fresh_db: str) -> None:
    run_script(fresh_db, SOURCE)
    dump = dump_schema_ddl(fresh_db, ["t1"])
    hostile = (
        dump
        + "\nCREATE FUNCTION public.backdoor() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
        + "ALTER TABLE shared.countries ADD COLUMN pwned boolean;\n"
        + "DROP TABLE shared.countries;\n"
    )
    bundle = build_bundle(hostile, {"t1": "t1_h"})
    with psycopg.connect(fresh_db) as conn:
        with pytest.raises(GuardViolation, match="backdoor"):
            apply(conn, bundle.pre + bundle.post, allowed_schemas=bundle.target_schemas)
        with pytest.raises(GuardViolation, match="shared.countries ADD COLUMN pwned"):
            apply(conn, bundle.post[-2:], allowed_schemas=bundle.target_schemas)
        with pytest.raises(GuardViolation, match="DROP TABLE shared.countries"):
            apply(conn, bundle.post[-1:], allowed_schemas=bundle.target_schemas)
    # nothing ran: no new schema, no function in public, shared intact
    assert "t1_h" not in schemas(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT to_regproc('public.backdoor')").fetchone() == (None,)
        cols = conn.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_schema = 'shared' AND table_name = 'countries'"
        ).fetchone()
        assert cols == (1,)
