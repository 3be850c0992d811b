"""What the demo owns: schemas it created (marked with their own oid) on a fleet it manages.

A schema the demo creates gets the comment `restore-assets demo schema, oid <its oid>`. A copy of
it (a restore, a dump loaded elsewhere) has another oid, and a schema someone else created has no
such comment: the demo refuses to drop, replace or write into either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core.errors import InvalidRequest
from restore_assets.core.schema_restore.drop_restored import outside_dependents

DEMO_MARK = "restore-assets demo schema"


def demo_fleet(root: str | Path) -> Any:
    """The LocalFleet under root, refused when it adopts a cluster the tool does not manage."""
    from restore_assets.backends.local.fleet import LocalFleet

    fleet = LocalFleet(root)
    if fleet.exists() and fleet.config().mode != "managed":
        raise InvalidRequest(
            f"the fleet under {fleet.root} adopts an existing cluster: the demo creates, drops and"
            " writes tenant schemas, so it runs only on a fleet it manages;"
            " use another --root (e.g. `restore-assets demo run --root .demo`)"
        )
    return fleet


def _oid(conn: psycopg.Connection, schema: str) -> int | None:
    row = conn.execute(
        "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,)
    ).fetchone()
    return None if row is None else int(row[0])


def mark(conn: psycopg.Connection, schema: str) -> None:
    """Mark a schema the demo just created as its own (a comment naming the schema's oid)."""
    oid = _oid(conn, schema)
    if oid is None:
        raise InvalidRequest(f"schema {schema!r} does not exist: nothing to mark")
    conn.execute(
        sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            sql.Identifier(schema), sql.Literal(f"{DEMO_MARK}, oid {oid}")
        )
    )


def owned(conn: psycopg.Connection, schema: str) -> bool | None:
    """True when the demo created this schema, False when someone else did, None when it is absent."""
    oid = _oid(conn, schema)
    if oid is None:
        return None
    comment = conn.execute(
        "SELECT pg_catalog.obj_description(%s, 'pg_namespace')", (oid,)
    ).fetchone()[0]
    return comment == f"{DEMO_MARK}, oid {oid}"


def require_owned(conn: psycopg.Connection, database: str, schema: str) -> None:
    """Refuse a schema that exists and was not created by the demo."""
    if owned(conn, schema) is False:
        raise InvalidRequest(
            f"schema {schema!r} in database {database!r} was not created by the demo (it lacks"
            " the demo's mark): the demo never drops, replaces or writes into it; use a fleet"
            " made by `restore-assets fleet up`, or drop the schema yourself"
        )


def drop_owned(conn: psycopg.Connection, database: str, schema: str) -> bool:
    """Drop a schema the demo created, refusing one it did not or one with dependents elsewhere."""
    require_owned(conn, database, schema)
    if owned(conn, schema) is None:
        return False
    outside = outside_dependents(conn, [schema])
    if outside:
        raise InvalidRequest(
            f"schema {schema!r} in database {database!r} has dependents outside it, which"
            f" replacing it would drop: {', '.join(outside)}; drop or change them first"
        )
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return True
