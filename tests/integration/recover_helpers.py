"""Helpers of the row recovery tests: a live schema and its 'restored copy' recorded as a restore."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from restore_assets.backends.factory import build_services


def services_for(fleet: Any) -> Any:
    """The local services of a fleet (its audit log and artifacts)."""
    return build_services({"root": str(fleet.root), "html_report": False})


def fresh_database(fleet: Any, name: str) -> str:
    """A new, empty database on the fleet's production cluster; its DSN."""
    with psycopg.connect(fleet.production_dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return fleet.production_dsn(name)


def drop_database(fleet: Any, name: str) -> None:
    """Drop a database the test created."""
    with psycopg.connect(fleet.production_dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def copy_as_restored(dsn: str, ddl: str, live: str, restored: str, tables: list[str]) -> None:
    """Create `restored` from the DDL template (`{s}` = schema) and copy live's rows into it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(ddl).format(s=sql.Identifier(restored)))
        conn.execute("SET session_replication_role = replica")  # a copy, as the restore loads it
        for t in tables:
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                    sql.Identifier(restored, t), sql.Identifier(live, t)
                )
            )


def record_restore(services: Any, dsn: str, database: str, pairs: dict[str, str]) -> str:
    """Record a succeeded schema restore of pairs {live: restored}, as the restore job does."""
    rid = services.audit.open("schema_restore", {"database": database, "schemas": list(pairs)})
    with psycopg.connect(dsn) as conn:
        for restored in pairs.values():
            oid = conn.execute(
                "SELECT oid::int FROM pg_namespace WHERE nspname = %s", (restored,)
            ).fetchone()[0]
            services.audit.resource(
                rid,
                "restored-schema",
                f"{database}.{restored}",
                {"database": database, "schema": restored, "oid": oid},
            )
    services.audit.update(rid, result={"restored": dict(pairs)})
    services.audit.close(rid, "succeeded")
    return rid


def rows(dsn: str, schema: str, table: str, key: str = "1") -> list[tuple]:
    """Every row of a table as text, in key order."""
    with psycopg.connect(dsn) as conn:
        return [
            r
            for r in conn.execute(
                sql.SQL("SELECT t::text FROM {} AS t ORDER BY {}").format(
                    sql.Identifier(schema, table), sql.SQL(key)
                )
            )
        ]


def checksum(dsn: str, schema: str, table: str) -> str:
    """md5 of every row's text in primary key order (row for row)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            sql.SQL(
                "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} AS t"
            ).format(sql.Identifier(schema, table))
        ).fetchone()[0]
