"""Dropping the restored schemas of a finished restore: the explicit, audited `drop-restored`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core.audit import NotOwner, check_restore_id, process_owner
from restore_assets.core.errors import RestoreError
from restore_assets.core.schema_restore.services import SCHEMA_RESOURCE

# catalogs of the objects a schema holds, each with its namespace column
NAMESPACED = (
    ("pg_class", "relnamespace"),
    ("pg_type", "typnamespace"),
    ("pg_proc", "pronamespace"),
    ("pg_constraint", "connamespace"),
    ("pg_collation", "collnamespace"),
    ("pg_operator", "oprnamespace"),
)
# catalogs of dependents that belong to a table (pg_identify_object names no schema), with the
# table's column
ON_TABLE = (
    ("pg_attrdef", "adrelid"),
    ("pg_rewrite", "ev_class"),
    ("pg_trigger", "tgrelid"),
    ("pg_policy", "polrelid"),
)


def _regclass(catalog: str) -> sql.Composable:
    return sql.SQL("{}::regclass").format(sql.Literal(f"pg_catalog.{catalog}"))


# objects outside the schemas that depend on an object inside them (views, foreign keys, defaults,
# triggers, policies, columns of their types): the schema of each dependent is resolved from its
# table where pg_identify_object leaves it empty; an unresolved one counts as outside
DEPENDENTS = sql.SQL("""
WITH ns AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(schemas)s)),
ours AS (
  SELECT 'pg_catalog.pg_namespace'::regclass AS classid, oid AS objid FROM ns
{ours}
),
deps AS (
  SELECT DISTINCT d.classid, d.objid, d.objsubid
  FROM pg_catalog.pg_depend d JOIN ours o ON d.refclassid = o.classid AND d.refobjid = o.objid
  WHERE d.deptype IN ('n', 'a')
),
placed AS (
  SELECT pg_catalog.pg_describe_object(classid, objid, objsubid) AS what,
    CASE classid
{on_table}
      ELSE (SELECT n.oid FROM pg_catalog.pg_namespace n
        WHERE n.nspname = (pg_catalog.pg_identify_object(classid, objid, objsubid)).schema)
    END AS nsp
  FROM deps
)
SELECT what FROM placed WHERE nsp IS NULL OR nsp NOT IN (SELECT oid FROM ns) ORDER BY what
""").format(
    ours=sql.SQL("\n").join(
        sql.SQL("  UNION ALL SELECT {}, oid FROM {} WHERE {} IN (SELECT oid FROM ns)").format(
            _regclass(catalog), sql.Identifier("pg_catalog", catalog), sql.Identifier(column)
        )
        for catalog, column in NAMESPACED
    ),
    on_table=sql.SQL("\n").join(
        sql.SQL(
            "      WHEN {} THEN (SELECT c.relnamespace FROM {} x"
            " JOIN pg_catalog.pg_class c ON c.oid = x.{} WHERE x.oid = objid)"
        ).format(_regclass(catalog), sql.Identifier("pg_catalog", catalog), sql.Identifier(column))
        for catalog, column in ON_TABLE
    ),
)

LOCK_TABLES = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') ORDER BY 1, 2
"""


def schema_is_ours(details: dict[str, Any], oid: int, xmin: int) -> bool:
    """Whether a schema (its oid and creating xid) is the one a restore recorded when creating it."""
    return (details.get("oid") is not None and int(details["oid"]) == oid) or (
        details.get("xid") is not None and int(details["xid"]) % (1 << 32) == xmin
    )


def schema_identity(conn: psycopg.Connection, schema: str) -> tuple[int, int] | None:
    """A schema's oid and creating transaction id (xmin), or None when it does not exist."""
    row = conn.execute(
        "SELECT oid::int, xmin::text::bigint FROM pg_catalog.pg_namespace WHERE nspname = %s",
        (schema,),
    ).fetchone()
    return (row[0], row[1]) if row else None


def outside_dependents(conn: psycopg.Connection, schemas: list[str]) -> list[str]:
    """Objects outside these schemas that depend on something inside them."""
    return [r[0] for r in conn.execute(DEPENDENTS, {"schemas": schemas}).fetchall()]


def drop_restored(services: Any, restore_id: str) -> dict[str, Any]:
    """Drop the restored schemas of a finished restore, proven its own, when nothing outside needs them.

    Refused (NotOwner / RestoreError, nothing dropped) while the restore is running, when a schema
    is not the one the restore created (oid / creating xid), or while objects outside the schemas
    depend on them (listed). The drop and each refusal are recorded in the audit log.
    """
    check_restore_id(restore_id)
    audit = services.audit
    rec = audit.get(restore_id)
    started = datetime.now(UTC).isoformat()
    by = process_owner()

    def refuse(error: RestoreError) -> RestoreError:
        audit.phase(
            restore_id,
            "drop_restored",
            "refused",
            started_at=started,
            error=str(error),
            metadata={"by": by},
        )
        return error

    if rec["status"] not in ("succeeded", "failed"):
        raise refuse(
            NotOwner(
                f"restore {restore_id} is {rec['status']}: only the schemas of a finished"
                " (succeeded or failed) restore can be dropped"
                + (
                    " — wait until it ends, or run `cleanup` after a crash"
                    if rec["status"] == "running"
                    else ""
                )
            )
        )
    by_db: dict[str, list[dict[str, Any]]] = {}
    for res in audit.resources(restore_id):
        if res["kind"] == SCHEMA_RESOURCE:
            by_db.setdefault(res["details"]["database"], []).append(res)
    dropped: list[str] = []
    gone: list[str] = []
    for database, resources in by_db.items():
        dsn = services.fleet.production_dsn(database)
        with psycopg.connect(dsn, connect_timeout=10) as conn:  # one transaction per database
            conn.execute("SET LOCAL lock_timeout = '30s'")
            present: list[str] = []
            for res in resources:
                schema = res["details"]["schema"]
                row = schema_identity(conn, schema)
                if row is None:
                    gone.append(res["identifier"])
                    continue
                if not schema_is_ours(res["details"], *row):
                    raise refuse(
                        NotOwner(
                            f"schema {database}.{schema} is not the one restore {restore_id}"
                            " created (its oid and creating transaction differ): left in place"
                        )
                    )
                present.append(schema)
            if not present:
                continue
            # no new foreign key or view can reference the tables while we check and drop
            for nsp, rel in conn.execute(LOCK_TABLES, (present,)).fetchall():
                conn.execute(
                    sql.SQL("LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE").format(
                        sql.Identifier(nsp), sql.Identifier(rel)
                    )
                )
            outside = outside_dependents(conn, present)
            if outside:
                raise refuse(
                    RestoreError(
                        f"restore {restore_id}: {', '.join(present)} in {database} cannot be"
                        f" dropped: objects outside depend on them: {'; '.join(outside)}."
                        " Drop or change those first."
                    )
                )
            for schema in present:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
                dropped.append(f"{database}.{schema}")
    for ident in dropped + gone:
        audit.resource_deleted(restore_id, SCHEMA_RESOURCE, ident)
    audit.phase(
        restore_id,
        "drop_restored",
        "succeeded",
        started_at=started,
        metadata={"dropped": dropped, "already_gone": gone, "by": by},
    )
    return {"restore_id": restore_id, "dropped": dropped, "already_gone": gone}
