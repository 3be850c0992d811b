"""Which tables of a schema to copy, in which order, with which columns and COPY format."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from restore_assets.core.errors import CopyError

# OIDs below this are assigned by initdb (built-in objects): identical on every cluster.
FIRST_NORMAL_OBJECT_ID = 16384

_TABLES_SQL = """
SELECT c.oid, c.relname, c.relkind, c.relispartition,
       pg_total_relation_size(c.oid) AS size,
       (SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
         WHERE i.inhrelid = c.oid AND c.relispartition) AS parent
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

_LEAVES_SQL = """
SELECT t.relid::oid FROM pg_partition_tree(%(oid)s::oid) t
 WHERE t.isleaf
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, a.atttypid
  FROM pg_attribute a
 WHERE a.attrelid = ANY(%(oids)s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attgenerated = ''
 ORDER BY a.attrelid, a.attnum
"""

# Every type reachable from the column types through array elements and domain bases.
_TYPES_SQL = """
WITH RECURSIVE reach(oid) AS (
    SELECT unnest(%(oids)s::oid[])
  UNION
    SELECT x.oid
      FROM reach r JOIN pg_type t ON t.oid = r.oid
      CROSS JOIN LATERAL (VALUES (CASE WHEN t.typcategory = 'A' THEN t.typelem END),
                                 (nullif(t.typbasetype, 0))) AS x(oid)
     WHERE x.oid IS NOT NULL AND x.oid <> 0
)
SELECT t.oid, t.oid::regtype::text, t.typtype, t.typcategory = 'A' AND t.typelem <> 0,
       t.typelem, t.typbasetype, t.typsend::oid <> 0 AND t.typreceive::oid <> 0
  FROM pg_type t WHERE t.oid IN (SELECT oid FROM reach)
"""


@dataclass
class TablePlan:
    """One table to copy: source and target names, the column list and the COPY format."""

    schema: str
    table: str
    target_schema: str
    columns: list[str]
    format: str  # 'binary' | 'text'
    size_bytes: int
    parent: str | None = None  # partitioned table this leaf belongs to, if any
    text_reason: str | None = None  # why text format was chosen, if it was
    kind: str = field(default="table")  # 'table' | 'partition'


@dataclass(frozen=True)
class _TypeInfo:
    oid: int
    name: str
    typtype: str
    is_array: bool
    elem: int
    base: int
    has_binary_io: bool


def _text_reason(oid: int, types: dict[int, _TypeInfo]) -> str | None:
    """Why values of this type cannot travel in binary COPY between two clusters (None: they can)."""
    t = types.get(oid)
    if t is None:
        return f"type oid {oid} not found"
    if not t.has_binary_io:
        return f"type {t.name} has no binary send/receive functions"
    if t.typtype == "d":
        # A domain is sent in the representation of its base type: no OID on the wire.
        return _text_reason(t.base, types)
    if t.is_array:
        elem = types.get(t.elem)
        if t.elem >= FIRST_NORMAL_OBJECT_ID:
            # Binary arrays carry their element type's OID, which differs between clusters.
            name = elem.name if elem else str(t.elem)
            return f"array of user-defined type {name}"
        return _text_reason(t.elem, types)
    if oid >= FIRST_NORMAL_OBJECT_ID:
        return f"user-defined type {t.name} (its OID may differ between source and target)"
    return None


def plan_schema(
    source_conn: psycopg.Connection,
    schema: str,
    target_schema: str,
    tables: list[str] | None = None,
) -> list[TablePlan]:
    """The tables of a schema to copy (ordinary tables and partition leaves), largest first."""
    rels = source_conn.execute(_TABLES_SQL, {"schema": schema}).fetchall()
    by_name = {r[1]: r for r in rels}
    by_oid = {r[0]: r for r in rels}
    if (
        not rels
        and not source_conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    ):
        raise CopyError(f"schema {schema!r} does not exist in the source database")

    if tables is None:
        chosen = [r for r in rels if r[2] == "r"]
    else:
        chosen, seen = [], set()
        for name in tables:
            rel = by_name.get(name)
            if rel is None or rel[2] not in ("r", "p"):
                what = "is not a table" if rel else "does not exist"
                raise CopyError(
                    f"table {schema}.{name} {what} in the source database: check the"
                    f" request's tables list"
                )
            if rel[2] == "r":
                leaves = [rel]
            else:
                oids = source_conn.execute(_LEAVES_SQL, {"oid": rel[0]}).fetchall()
                leaves = [by_oid[o] for (o,) in oids if o in by_oid and by_oid[o][2] == "r"]
            for leaf in leaves:
                if leaf[0] not in seen:
                    seen.add(leaf[0])
                    chosen.append(leaf)

    if not chosen:
        return []
    oids = [r[0] for r in chosen]
    columns: dict[int, list[tuple[str, int]]] = {o: [] for o in oids}
    for relid, attname, typid in source_conn.execute(_COLUMNS_SQL, {"oids": oids}):
        columns[relid].append((attname, typid))
    type_oids = sorted({typ for cols in columns.values() for _, typ in cols})
    types = {
        row[0]: _TypeInfo(*row)
        for row in source_conn.execute(_TYPES_SQL, {"oids": type_oids}).fetchall()
    }

    plans = []
    for oid, relname, _kind, is_partition, size, parent in chosen:
        reason = None
        for col, typ in columns[oid]:
            why = _text_reason(typ, types)
            if why:
                reason = f"column {col}: {why}"
                break
        plans.append(
            TablePlan(
                schema=schema,
                table=relname,
                target_schema=target_schema,
                columns=[c for c, _ in columns[oid]],
                format="text" if reason else "binary",
                size_bytes=int(size or 0),
                parent=parent,
                text_reason=reason,
                kind="partition" if is_partition else "table",
            )
        )
    plans.sort(key=lambda p: (-p.size_bytes, p.table))
    return plans
