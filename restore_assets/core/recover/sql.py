"""Row recovery: SQL building blocks (typed key sets, matches, row hashes) and catalog reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core.compare.catalog import Table, schema_oid
from restore_assets.core.compare.copyback import _eq, _from, _same_type
from restore_assets.core.compare.engine import read_catalogs
from restore_assets.core.compare.rows import _row_hash
from restore_assets.core.recover.model import ForeignKey, Key, RecoveryRefused, SchemaPlan

_FKS_SQL = """
SELECT con.conname, c.relname, p.relname, con.condeferrable,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(n, o)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
              ORDER BY k.o),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(n, o)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
              ORDER BY k.o)
  FROM pg_catalog.pg_constraint con
  JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
  JOIN pg_catalog.pg_class p ON p.oid = con.confrelid
 WHERE con.contype = 'f' AND con.conparentid = 0
   AND c.relnamespace = %(ns)s AND p.relnamespace = %(ns)s
 ORDER BY con.conname
"""

# unique indexes (constraints have theirs) on plain columns; partial and expression ones are not
# checked here (a collision on one stops the apply, rolled back, with the server's message)
_UNIQUES_SQL = """
SELECT c.relname, i.relname, x.indisprimary,
       ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(n, o)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n
              WHERE k.o <= x.indnkeyatts ORDER BY k.o)
  FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
 WHERE x.indisunique AND x.indisvalid AND x.indexprs IS NULL AND x.indpred IS NULL
   AND c.relnamespace = %(ns)s AND NOT c.relispartition
 ORDER BY c.relname, i.relname
"""


# ---------------------------------------------------------------------------- SQL helpers
def key_source(keys: list[list[str]], key: list[str], types: list[list[str]]) -> sql.Composable:
    """The keys as a typed record set `k(col type, ...)` from a jsonb literal."""
    rows = [dict(zip(key, k, strict=True)) for k in keys]
    coldefs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.Identifier(*t))
        for c, t in zip(key, types, strict=True)
    )
    return sql.SQL("pg_catalog.jsonb_to_recordset({}::pg_catalog.jsonb) AS k({})").format(
        sql.Literal(json.dumps(rows)), coldefs
    )


def in_keys(
    alias: str, keys: list[list[str]], key: list[str], types: list[list[str]]
) -> sql.Composable:
    """`EXISTS (...)`: the row under alias has one of the keys."""
    cond = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(alias, c), sql.Identifier("k", c)) for c in key
    )
    return sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {})").format(key_source(keys, key, types), cond)


def key_text(alias: str, key: list[str]) -> sql.Composable:
    """ARRAY[key columns as text]."""
    return sql.SQL("ARRAY[{}]").format(
        sql.SQL(", ").join(sql.SQL("({})::text").format(sql.Identifier(alias, c)) for c in key)
    )


def match(
    left: str, lcols: list[str], right: str, rcols: list[str], same: list[bool]
) -> sql.Composable:
    """left.lcols = right.rcols, column by column (through text where the types differ)."""
    return sql.SQL(" AND ").join(
        _eq(sql.Identifier(left, a), sql.Identifier(right, b), s)
        for a, b, s in zip(lcols, rcols, same, strict=True)
    )


def from_(schema: str, table: Table, alias: str) -> sql.Composable:
    """`ONLY schema.table AS alias` (ONLY for ordinary tables)."""
    return sql.SQL("{} AS {}").format(_from(schema, table), sql.Identifier(alias))


def row_hash(alias: str, columns: list[str]) -> sql.Composable:
    """The 64-bit hash of a row's text over the columns (as the comparison hashes rows)."""
    return _row_hash(alias, columns)


# ---------------------------------------------------------------------------- catalog
def read_foreign_keys(conn: psycopg.Connection, schema: str) -> list[ForeignKey]:
    """Foreign keys between tables of the schema."""
    ns = schema_oid(conn, schema)
    return [ForeignKey(*row) for row in conn.execute(_FKS_SQL, {"ns": ns})]


def read_unique_keys(conn: psycopg.Connection, schema: str) -> dict[str, list[tuple]]:
    """Per table: (constraint, is primary key, columns) of its primary and unique keys."""
    ns = schema_oid(conn, schema)
    out: dict[str, list[tuple]] = {}
    for table, name, primary, cols in conn.execute(_UNIQUES_SQL, {"ns": ns}):
        out.setdefault(table, []).append((name, primary, list(cols)))
    return out


@dataclass
class TablePair:
    """The two tables of one name and what the plan needs to address them."""

    name: str
    rt: Table
    lt: Table
    live_schema: str
    restored_schema: str

    @property
    def key(self) -> list[str]:
        """The live table's primary key columns."""
        return list(self.lt.primary_key or [])

    def same(self, cols: list[str]) -> list[bool]:
        """Per column: the same type on both sides (else compared through text)."""
        return [_same_type(self.rt.column(c), self.lt.column(c)) for c in cols]  # type: ignore[arg-type]

    def types(self, table: Table) -> list[list[str]]:
        """[schema, type] of each key column in that side's table (for typed key sets)."""
        out = []
        for c in self.key:
            col = table.column(c)
            assert col is not None
            out.append([col.base_type_schema, col.base_type_name])
        return out


def sides_for(conn: psycopg.Connection, plan: SchemaPlan) -> dict[str, TablePair]:
    """The table pairs of a schema plan, read again from the catalog (in the caller's transaction)."""
    live, restored = read_catalogs(conn, plan.live_schema, plan.restored_schema)
    out = {}
    for name in plan.order:
        rt, lt = restored.tables.get(name), live.tables.get(name)
        if rt is None or lt is None:
            raise RecoveryRefused(
                f"{plan.live_schema}.{name} or its restored copy is gone since the plan was made"
            )
        out[name] = TablePair(name, rt, lt, plan.live_schema, plan.restored_schema)
    return out


def q(conn: psycopg.Connection, stmt: sql.Composable) -> list[tuple]:
    """All rows of a statement."""
    return conn.execute(stmt).fetchall()


def _conflicts(
    conn: psycopg.Connection,
    keys: list[list[str]],
    uniques: list[tuple],
    statement: Callable[[list[str]], sql.Composable | None],
    kind: Callable[[bool], str],
) -> list[dict[str, Any]]:
    """Each unique key's conflicts: `statement(cols)` selects (our key, the live row's key) pairs."""
    if not keys:
        return []
    out: list[dict[str, Any]] = []
    for name, primary, cols in uniques:
        stmt = statement(cols)
        if stmt is None:
            continue
        for key, live_key in q(conn, stmt):
            out.append(
                {
                    "key": list(key),
                    "constraint": name,
                    "kind": kind(primary),
                    "live_key": list(live_key),
                }
            )
    return out


def insert_conflicts(
    conn: psycopg.Connection,
    s: TablePair,
    keys: list[list[str]],
    uniques: list[tuple],
) -> list[dict[str, Any]]:
    """Rows to insert whose primary or unique key values a live row holds now."""

    def statement(cols: list[str]) -> sql.Composable | None:
        if any(s.rt.column(c) is None for c in cols):
            return None
        return sql.SQL("SELECT {rk}, {lk} FROM {r} JOIN {l} ON {eq} WHERE {sel} ORDER BY 1").format(
            rk=key_text("r", s.key),
            lk=key_text("l", s.key),
            r=from_(s.restored_schema, s.rt, "r"),
            l=from_(s.live_schema, s.lt, "l"),
            eq=match("r", cols, "l", cols, s.same(cols)),
            sel=in_keys("r", keys, s.key, s.types(s.rt)),
        )

    return _conflicts(
        conn, keys, uniques, statement, lambda primary: "primary key" if primary else "unique"
    )


def update_conflicts(
    conn: psycopg.Connection,
    s: TablePair,
    keys: list[list[str]],
    columns: list[str],
    uniques: list[tuple],
) -> list[dict[str, Any]]:
    """Rows to set back whose restored unique values another live row holds now."""

    def statement(cols: list[str]) -> sql.Composable | None:
        if not set(cols) & set(columns) or any(s.rt.column(c) is None for c in cols):
            return None
        # the row's values after the update: restored for the columns set back, live for the rest
        after = sql.SQL(" AND ").join(
            _eq(
                sql.Identifier("r" if c in columns else "l", c),
                sql.Identifier("o", c),
                c not in columns or _same_type(s.rt.column(c), s.lt.column(c)),  # type: ignore[arg-type]
            )
            for c in cols
        )
        return sql.SQL(
            "SELECT {lk}, {ok} FROM {r} JOIN {l} ON {eq} JOIN {o} ON {after} AND NOT ({same})"
            " WHERE {sel} ORDER BY 1"
        ).format(
            lk=key_text("l", s.key),
            ok=key_text("o", s.key),
            r=from_(s.restored_schema, s.rt, "r"),
            l=from_(s.live_schema, s.lt, "l"),
            eq=match("r", s.key, "l", s.key, s.same(s.key)),
            o=from_(s.live_schema, s.lt, "o"),
            after=after,
            same=match("o", s.key, "l", s.key, [True] * len(s.key)),
            sel=in_keys("r", keys, s.key, s.types(s.rt)),
        )

    return _conflicts(conn, keys, uniques, statement, lambda _primary: "unique")


def live_hashes(conn: psycopg.Connection, s: TablePair, keys: list[list[str]]) -> dict[Key, int]:
    """The current hash of the live rows with these keys (missing rows are absent)."""
    if not keys:
        return {}
    stmt = sql.SQL("SELECT {k}, {h} FROM {l} WHERE {sel}").format(
        k=key_text("l", s.key),
        h=row_hash("l", [c.name for c in s.lt.columns]),
        l=from_(s.live_schema, s.lt, "l"),
        sel=in_keys("l", keys, s.key, s.types(s.lt)),
    )
    return {tuple(k): int(h) for k, h in q(conn, stmt)}
