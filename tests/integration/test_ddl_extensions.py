"""Extensions installed inside a restored schema (citext, from PostgreSQL's contrib)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from restore_assets.backends.local.pg import Cluster
from restore_assets.core.ddl import extract
from restore_assets.core.errors import DdlError, InvalidRequest
from restore_assets.core.request import RestoreRequest, plan_restore
from tests.integration.test_ddl_fidelity import restore_waves
from tests.integration.test_ddl_roundtrip import assert_same_dump, run_script

pytestmark = pytest.mark.integration

TENANT = (
    "CREATE SCHEMA s; CREATE EXTENSION citext SCHEMA s;"
    " CREATE TABLE s.users (id int PRIMARY KEY, email s.citext UNIQUE);"
    " CREATE FUNCTION s.find(e s.citext) RETURNS int LANGUAGE sql"
    " RETURN (SELECT id FROM s.users WHERE email = e);"
    " INSERT INTO s.users VALUES (1, 'Ann@Example.com');"
)


class ProductionOnly:
    """The two Fleet calls plan_restore makes, answered for one local cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def production_dsn(self, database: str = "postgres") -> str:
        return self.cluster.dsn(database)

    def check_target(self, target) -> datetime:  # noqa: ANN001
        return datetime(2026, 1, 2, tzinfo=UTC)


def test_extension_in_the_tenant_schema_fails_validation_and_extract(
    fresh_db: str, pg: Cluster
) -> None:
    run_script(fresh_db, TENANT)
    database = psycopg.conninfo.conninfo_to_dict(fresh_db)["dbname"]
    request = RestoreRequest.parse(
        {"database": database, "schemas": ["s"], "snapshot_id": "snap-1"}
    )
    with pytest.raises(InvalidRequest, match="extension citext is installed in schema s") as err:
        plan_restore(request, ProductionOnly(pg))  # type: ignore[arg-type]
    assert "ALTER EXTENSION citext SET SCHEMA public (it is relocatable)" in str(err.value)
    assert "nothing was created" in str(err.value)
    with pytest.raises(DdlError, match="extension citext is installed in schema s"):
        extract(fresh_db, ["s"], "x")
    with psycopg.connect(fresh_db) as conn:
        made = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 's_x'").fetchone()
    assert made == (0,)


def test_the_way_out_restores_a_schema_whose_types_exist(fresh_db: str, pg: Cluster) -> None:
    run_script(fresh_db, TENANT + " ALTER EXTENSION citext SET SCHEMA public;")
    database = psycopg.conninfo.conninfo_to_dict(fresh_db)["dbname"]
    request = RestoreRequest.parse(
        {"database": database, "schemas": ["s"], "snapshot_id": "snap-1"}
    )
    plan_restore(request, ProductionOnly(pg))  # type: ignore[arg-type]
    _, new = restore_waves(fresh_db, "s")
    assert_same_dump(fresh_db, "s", new)
    with psycopg.connect(fresh_db) as conn:
        column_type = conn.execute(
            "SELECT t.typnamespace::regnamespace::text || '.' || t.typname FROM pg_attribute a"
            " JOIN pg_type t ON t.oid = a.atttypid"
            " WHERE a.attrelid = %s::regclass AND a.attname = 'email'",
            (f"{new}.users",),
        ).fetchone()
        found = conn.execute(f"SELECT {new}.find('Ann@Example.com')").fetchone()
        # citext's own comparison is case-insensitive: the restored column really is citext
        matches = conn.execute(
            f"SELECT count(*) FROM {new}.users WHERE email = 'ann@EXAMPLE.com'::public.citext"
        ).fetchone()
    assert column_type == ("public.citext",)
    assert found == (1,) and matches == (1,)


def test_plan_refuses_a_tablespace_map_to_an_unknown_tablespace(fresh_db: str, pg: Cluster) -> None:
    run_script(fresh_db, "CREATE SCHEMA s; CREATE TABLE s.t (id int)")
    database = psycopg.conninfo.conninfo_to_dict(fresh_db)["dbname"]
    base = {"database": database, "schemas": ["s"], "snapshot_id": "snap-1"}
    fleet = ProductionOnly(pg)
    with pytest.raises(InvalidRequest, match="unknown tablespace.*ra_no_such_ts"):
        plan_restore(
            RestoreRequest.parse({**base, "tablespace_map": ["ts1=ra_no_such_ts"]}),
            fleet,  # type: ignore[arg-type]
        )
    plan = plan_restore(
        RestoreRequest.parse({**base, "tablespace_map": ["ts1=pg_default"]}),
        fleet,  # type: ignore[arg-type]
    )
    assert plan.request.tablespace_map == (("ts1", "pg_default"),)
