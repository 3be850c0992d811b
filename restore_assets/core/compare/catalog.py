"""Catalog reads for one schema: tables, columns, keys, constraints, indexes, policies, sequences.

Definitions are read with `search_path = pg_catalog`, so every reference to a user object is
schema-qualified; `normalize` then rewrites the restored schema's name to the live one so the
two sides compare as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

_TABLES_SQL = """
SELECT c.oid, c.relname, c.relkind, c.relispartition, c.relrowsecurity, c.relforcerowsecurity,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(greatest(l.reltuples, 0)), 0)
                    FROM pg_catalog.pg_partition_tree(c.oid) AS pt
                    JOIN pg_catalog.pg_class l ON l.oid = pt.relid
                   WHERE pt.isleaf)
            ELSE greatest(c.reltuples, 0) END::bigint
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = %(ns)s AND c.relkind IN ('r', 'p')
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       a.attgenerated <> '', a.attidentity, a.attnotnull,
       bn.nspname, b.typname, tn.nspname, t.typname
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
  JOIN pg_catalog.pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
  JOIN pg_catalog.pg_namespace bn ON bn.oid = b.typnamespace
 WHERE c.relnamespace = %(ns)s AND c.relkind IN ('r', 'p') AND a.attnum > 0
   AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""

_PKEYS_SQL = """
SELECT con.conrelid, array_agg(a.attname ORDER BY k.ord)
  FROM pg_catalog.pg_constraint con
 CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
 WHERE con.contype = 'p' AND con.connamespace = %(ns)s
 GROUP BY con.conrelid
"""

_CONSTRAINTS_SQL = """
SELECT c.relname, con.conname, pg_catalog.pg_get_constraintdef(con.oid)
  FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
 WHERE c.relnamespace = %(ns)s
"""

_INDEXES_SQL = """
SELECT t.relname, i.relname, pg_catalog.pg_get_indexdef(x.indexrelid)
  FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
 WHERE t.relnamespace = %(ns)s
"""

_POLICIES_SQL = """
SELECT c.relname, p.polname,
       CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END
       || ' FOR ' || CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                   WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END
       || ' TO ' || coalesce((SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC'
                                                     ELSE pg_catalog.quote_ident(ro.rolname) END,
                                                ', ' ORDER BY 1)
                                FROM unnest(p.polroles) AS r
                                LEFT JOIN pg_catalog.pg_roles ro ON ro.oid = r), 'PUBLIC')
       || coalesce(' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', '')
       || coalesce(' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')',
                   '')
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
 WHERE c.relnamespace = %(ns)s
"""

_TRIGGERS_SQL = """
SELECT c.relname, t.tgname, pg_catalog.pg_get_triggerdef(t.oid)
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = %(ns)s AND NOT t.tgisinternal
"""

_SEQUENCES_SQL = """
SELECT s.oid, s.relname, q.seqincrement
  FROM pg_catalog.pg_class s JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid
 WHERE s.relnamespace = %(ns)s AND s.relkind = 'S'
"""

# Columns fed by a sequence: identity and serial ownership, and column defaults calling it.
_SEQUENCE_USERS_SQL = """
SELECT d.objid, tn.nspname, t.relname, a.attname
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.deptype IN ('a', 'i') AND d.objid = ANY(%(oids)s::oid[]) AND NOT t.relispartition
UNION
SELECT d.refobjid, tn.nspname, t.relname, a.attname
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid
  JOIN pg_catalog.pg_class t ON t.oid = ad.adrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
 WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.refobjid = ANY(%(oids)s::oid[]) AND NOT t.relispartition
"""


@dataclass
class Column:
    """One column of a table."""

    name: str
    type: str  # format_type, normalized to the live schema's name
    generated: bool
    identity: str  # '' | 'a' (ALWAYS) | 'd' (BY DEFAULT)
    not_null: bool
    base_type_schema: str  # the column's type, or a domain's base type
    base_type_name: str
    type_schema: str  # the column's own type (pg_type name, `_x` for arrays)
    type_name: str


@dataclass
class Table:
    """One ordinary or partitioned table."""

    oid: int
    name: str
    kind: str  # 'r' | 'p'
    is_partition: bool
    rls: bool
    force_rls: bool
    estimated_rows: int
    columns: list[Column] = field(default_factory=list)
    primary_key: list[str] | None = None

    def column(self, name: str) -> Column | None:
        """The column of that name, if any."""
        return next((c for c in self.columns if c.name == name), None)


@dataclass
class Sequence:
    """One sequence and the columns it feeds."""

    oid: int
    name: str
    increment: int
    users: list[tuple[str, str, str]] = field(default_factory=list)  # (schema, table, column)


@dataclass
class SchemaCatalog:
    """What one schema holds, definitions normalized to the live schema's name."""

    schema: str
    tables: dict[str, Table]
    constraints: dict[tuple[str, str], str]  # (table, name) -> definition
    indexes: dict[tuple[str, str], str]
    policies: dict[tuple[str, str], str]
    triggers: dict[tuple[str, str], str]
    sequences: dict[str, Sequence]


def quote_ident(conn: psycopg.Connection, name: str) -> str:
    """The identifier as the server quotes it in definitions."""
    row = conn.execute("SELECT pg_catalog.quote_ident(%s)", (name,)).fetchone()
    assert row is not None
    return row[0]


def schema_oid(conn: psycopg.Connection, schema: str) -> int | None:
    """The namespace OID of a schema, or None when it does not exist."""
    row = conn.execute(
        "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,)
    ).fetchone()
    return row[0] if row else None


def read_schema(
    conn: psycopg.Connection, schema: str, live_schema: str | None = None
) -> SchemaCatalog:
    """Read a schema's catalog; with live_schema, rewrite this schema's name to it in definitions."""
    ns = schema_oid(conn, schema)
    if ns is None:
        raise LookupError(schema)
    if live_schema is not None and live_schema != schema:
        old = quote_ident(conn, schema) + "."
        new = quote_ident(conn, live_schema) + "."

        def normalize(text: str) -> str:
            return text.replace(old, new)
    else:

        def normalize(text: str) -> str:
            return text

    p = {"ns": ns}
    tables: dict[str, Table] = {}
    by_oid: dict[int, Table] = {}
    for oid, name, kind, is_part, rls, force, est in conn.execute(_TABLES_SQL, p):
        t = Table(oid, name, kind, is_part, rls, force, int(est))
        tables[name] = t
        by_oid[oid] = t
    for relid, name, typ, gen, ident, notnull, bnsp, bname, tnsp, tname in conn.execute(
        _COLUMNS_SQL, p
    ):
        by_oid[relid].columns.append(
            Column(name, normalize(typ), gen, ident, notnull, bnsp, bname, tnsp, tname)
        )
    for relid, cols in conn.execute(_PKEYS_SQL, p):
        if relid in by_oid:
            by_oid[relid].primary_key = list(cols)

    def defs(query: str) -> dict[tuple[str, str], str]:
        return {(t, n): normalize(d) for t, n, d in conn.execute(query, p)}

    sequences = {
        name: Sequence(oid, name, int(inc)) for oid, name, inc in conn.execute(_SEQUENCES_SQL, p)
    }
    if sequences:
        by_seq = {s.oid: s for s in sequences.values()}
        oids = list(by_seq)
        for seq_oid, tschema, table, column in conn.execute(_SEQUENCE_USERS_SQL, {"oids": oids}):
            by_seq[seq_oid].users.append((tschema, table, column))
        for s in sequences.values():
            s.users.sort()
    return SchemaCatalog(
        schema=schema,
        tables=tables,
        constraints=defs(_CONSTRAINTS_SQL),
        indexes=defs(_INDEXES_SQL),
        policies=defs(_POLICIES_SQL),
        triggers=defs(_TRIGGERS_SQL),
        sequences=sequences,
    )
