"""extract/dump_schema_ddl/read_sequence_values on real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from restore_assets.core.ddl import (
    dump_schema_ddl,
    extract,
    read_sequence_values,
    read_unpopulated_matviews,
)
from restore_assets.core.errors import DdlError
from tests.integration.test_ddl_roundtrip import run_script

pytestmark = pytest.mark.integration


def test_dump_matches_schema_names_exactly(fresh_db: str) -> None:
    run_script(
        fresh_db,
        'CREATE SCHEMA "t.1"; CREATE TABLE "t.1".a (x int);'
        " CREATE SCHEMA tx1; CREATE TABLE tx1.b (x int);"  # "t.1" as a pattern would match tx1
        ' CREATE SCHEMA "T*"; CREATE TABLE "T*".c (x int);'
        " CREATE SCHEMA tz; CREATE TABLE tz.d (x int);",  # ... and "T*" would match tz
    )
    dump = dump_schema_ddl(fresh_db, ["t.1", "T*"])
    assert 'CREATE TABLE "t.1".a' in dump and 'CREATE TABLE "T*".c' in dump
    assert "tx1" not in dump and "tz" not in dump
    assert "\\restrict" not in dump and "\\unrestrict" not in dump


def test_missing_schema_is_an_error_not_an_empty_dump(fresh_db: str) -> None:
    with pytest.raises(DdlError, match="no matching schemas"):
        dump_schema_ddl(fresh_db, ["nope"])


def test_sequence_values_and_unpopulated_matviews(fresh_db: str) -> None:
    run_script(
        fresh_db,
        "CREATE SCHEMA s; CREATE SEQUENCE s.fresh START 7; CREATE SEQUENCE s.used;"
        " SELECT nextval('s.used'), nextval('s.used');"
        " CREATE TABLE s.t (id int GENERATED ALWAYS AS IDENTITY, v int);"
        " INSERT INTO s.t (v) VALUES (1);"
        " CREATE MATERIALIZED VIEW s.empty AS SELECT 1 AS one WITH NO DATA;"
        " CREATE MATERIALIZED VIEW s.populated AS SELECT 1 AS one;",
    )
    with psycopg.connect(fresh_db) as conn:
        assert read_sequence_values(conn, ["s"]) == {
            ("s", "fresh"): (7, False),
            ("s", "used"): (2, True),
            ("s", "t_id_seq"): (1, True),
        }
        assert read_unpopulated_matviews(conn, ["s"]) == {("s", "empty")}
    bundle = extract(fresh_db, ["s"], "x")
    assert "REFRESH MATERIALIZED VIEW s_x.populated" in bundle.post
    assert "REFRESH MATERIALIZED VIEW s_x.empty" not in bundle.post
    assert "SELECT pg_catalog.setval('s_x.fresh', 7, false)" in bundle.post
    assert "SELECT pg_catalog.setval('s_x.t_id_seq', 1, true)" in bundle.post


def test_extension_inside_the_schema_is_refused_before_anything_is_created(fresh_db: str) -> None:
    run_script(
        fresh_db,
        "CREATE SCHEMA s; CREATE EXTENSION pgcrypto SCHEMA s;"
        " CREATE TABLE s.t (h bytea DEFAULT s.digest('x', 'sha256'))",
    )
    with pytest.raises(DdlError, match="extension pgcrypto is installed in schema s") as err:
        extract(fresh_db, ["s"], "x")
    assert "ALTER EXTENSION pgcrypto SET SCHEMA public" in str(err.value)
