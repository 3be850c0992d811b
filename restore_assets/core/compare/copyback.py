"""Copy chosen rows from the restored schema back into the live one: SQL first, then apply."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.errors import Error as PsycopgError

from restore_assets.core.compare.catalog import Column, Table
from restore_assets.core.compare.engine import (
    begin_read_only,
    connect,
    read_catalogs,
    translate,
)
from restore_assets.core.compare.model import CompareError, CopyBackRefused
from restore_assets.core.errors import server_message


@dataclass
class CopyBackPlan:
    """The generated statement copying chosen rows of one table, and what it will meet."""

    live_schema: str
    restored_schema: str
    table: str
    columns: list[str]  # inserted columns (generated ones are recomputed by the server)
    key_columns: list[str]
    keys: list[dict[str, Any]] | None
    all_only_in_restored: bool
    sql: str  # the statement as text, for review
    selected: int  # restored rows matching the choice when the plan was made
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # keys already in live
    missing: list[dict[str, Any]] = field(default_factory=list)  # keys not in the restored copy
    statement: sql.Composed | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary of the plan (with its SQL)."""
        return {
            "live_schema": self.live_schema,
            "restored_schema": self.restored_schema,
            "table": self.table,
            "columns": list(self.columns),
            "key_columns": list(self.key_columns),
            "keys": self.keys,
            "all_only_in_restored": self.all_only_in_restored,
            "selected": self.selected,
            "conflicts": list(self.conflicts),
            "missing": list(self.missing),
            "sql": self.sql,
        }


def _same_type(a: Column, b: Column) -> bool:
    return (a.type_schema, a.type_name) == (b.type_schema, b.type_name)


def _eq(left: sql.Composable, right: sql.Composable, same_type: bool) -> sql.Composable:
    if same_type:
        return sql.SQL("{} = {}").format(left, right)
    return sql.SQL("({})::text = ({})::text").format(left, right)


def _from(schema: str, table: Table) -> sql.Composable:
    only = sql.SQL("ONLY ") if table.kind == "r" else sql.SQL("")
    return only + sql.Identifier(schema, table.name)


def _check_columns(live_schema: str, rt: Table, lt: Table) -> None:
    rcols = {c.name: c.type for c in rt.columns if not c.generated}
    lcols = {c.name: c.type for c in lt.columns if not c.generated}
    if rcols == lcols:
        return
    problems = []
    gone = [f"{n} ({t})" for n, t in rcols.items() if n not in lcols]
    new = [f"{n} ({t})" for n, t in lcols.items() if n not in rcols]
    changed = [
        f"{n} (restored {t}, live {lcols[n]})"
        for n, t in rcols.items()
        if n in lcols and lcols[n] != t
    ]
    if gone:
        problems.append("missing in live: " + ", ".join(gone))
    if new:
        problems.append("only in live: " + ", ".join(new))
    if changed:
        problems.append("type changed: " + ", ".join(changed))
    raise CopyBackRefused(
        f"copy-back into {live_schema}.{lt.name} refused: the live table's columns no longer"
        f" match the restored copy ({'; '.join(problems)}). Copy these rows by hand, or bring"
        " the columns back in line first"
    )


def copy_back_sql(
    dsn: str,
    live_schema: str,
    restored_schema: str,
    table: str,
    *,
    keys: list[dict] | None = None,
    all_only_in_restored: bool = False,
) -> CopyBackPlan:
    """The INSERT that copies the chosen rows (by key, or all deleted since) from restored to live."""
    if (keys is None) == (not all_only_in_restored):
        raise CompareError(
            "choose the rows to copy back: pass keys=[{...}, ...] or all_only_in_restored=True"
            " (exactly one of them)"
        )
    if keys is not None and not keys:
        raise CompareError("keys is empty: nothing to copy back")
    conn = connect(dsn)
    with conn:
        try:
            begin_read_only(conn)
            live, restored = read_catalogs(conn, live_schema, restored_schema)
            rt, lt = restored.tables.get(table), live.tables.get(table)
            if rt is None or lt is None:
                where = restored_schema if rt is None else live_schema
                raise CompareError(f"table {where}.{table} does not exist: nothing to copy back")
            _check_columns(live_schema, rt, lt)
            if not rt.primary_key or rt.primary_key != lt.primary_key:
                raise CopyBackRefused(
                    f"copy-back into {live_schema}.{table} refused: it needs the same primary key"
                    f" on both sides (restored {rt.primary_key}, live {lt.primary_key})"
                )
            key = list(rt.primary_key)
            if keys is not None:
                for k in keys:
                    if not isinstance(k, dict) or sorted(k) != sorted(key):
                        raise CompareError(
                            f"key {k!r} for {live_schema}.{table} must give exactly the primary"
                            f" key columns {key}"
                        )
            plan = _build(conn, live_schema, restored_schema, rt, lt, key, keys)
        except CompareError:
            raise
        except PsycopgError as exc:
            raise translate(
                exc, f"planning the copy-back into {live_schema}.{table} failed"
            ) from exc
    return plan


def _build(
    conn: psycopg.Connection,
    live_schema: str,
    restored_schema: str,
    rt: Table,
    lt: Table,
    key: list[str],
    keys: list[dict] | None,
) -> CopyBackPlan:
    lcol = {c.name: c for c in lt.columns}
    rcol = {c.name: c for c in rt.columns}
    columns = [c.name for c in rt.columns if not c.generated]
    ident = sql.Identifier

    def r_key_eq(alias: str, other: str, other_is_live: bool) -> sql.Composable:
        return sql.SQL(" AND ").join(
            _eq(
                ident(alias, k),
                ident(other, k),
                not other_is_live or _same_type(rcol[k], lcol[k]),
            )
            for k in key
        )

    keys_src: sql.Composable | None = None
    if keys is not None:
        coldefs = sql.SQL(", ").join(
            sql.SQL("{} {}").format(
                ident(k), ident(rcol[k].base_type_schema, rcol[k].base_type_name)
            )
            for k in key
        )
        keys_src = sql.SQL("pg_catalog.jsonb_to_recordset({}::pg_catalog.jsonb) AS k({})").format(
            sql.Literal(json.dumps(keys, default=str)), coldefs
        )
        selection = sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {})").format(
            keys_src, r_key_eq("r", "k", False)
        )
    else:
        selection = sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS l WHERE {})").format(
            _from(live_schema, lt), r_key_eq("r", "l", True)
        )

    def key_json(alias: str) -> sql.Composable:
        return sql.SQL("pg_catalog.jsonb_build_object({})").format(
            sql.SQL(", ").join(
                sql.SQL("{}, {}").format(sql.Literal(k), ident(alias, k)) for k in key
            )
        )

    def value(c: str) -> sql.Composable:
        if _same_type(rcol[c], lcol[c]):
            return ident("c", c)
        # Same type name in the other schema (an enum, a composite, a domain): go through text.
        live_type = ident(lcol[c].type_schema, lcol[c].type_name)
        return sql.SQL("({})::text::{}").format(ident("c", c), live_type)

    overriding = (
        sql.SQL(" OVERRIDING SYSTEM VALUE")
        if any(c.identity == "a" for c in lt.columns if c.name in columns)
        else sql.SQL("")
    )
    statement = sql.SQL(
        """WITH chosen AS MATERIALIZED (
  SELECT {r_cols} FROM {r_from} AS r
   WHERE {selection}
), inserted AS (
  INSERT INTO {live} AS l ({cols}){overriding}
  SELECT {values} FROM chosen AS c
  ON CONFLICT DO NOTHING
  RETURNING {l_keys}
)
SELECT (SELECT count(*) FROM chosen) AS selected,
       (SELECT count(*) FROM inserted) AS inserted,
       (SELECT pg_catalog.jsonb_agg({c_key} ORDER BY {c_key}) FROM chosen AS c
         WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE {i_eq})) AS conflicts"""
    ).format(
        r_cols=sql.SQL(", ").join(ident("r", c) for c in columns),
        r_from=_from(restored_schema, rt),
        selection=selection,
        live=ident(live_schema, lt.name),
        cols=sql.SQL(", ").join(ident(c) for c in columns),
        overriding=overriding,
        values=sql.SQL(", ").join(value(c) for c in columns),
        l_keys=sql.SQL(", ").join(ident("l", k) for k in key),
        c_key=key_json("c"),
        i_eq=sql.SQL(" AND ").join(
            _eq(ident("i", k), ident("c", k), _same_type(rcol[k], lcol[k])) for k in key
        ),
    )

    stats = sql.SQL(
        "SELECT count(*), pg_catalog.jsonb_agg(s.key ORDER BY s.key) FILTER (WHERE s.in_live)"
        " FROM (SELECT {r_key} AS key,"
        "              EXISTS (SELECT 1 FROM {l_from} AS l WHERE {l_eq}) AS in_live"
        "         FROM {r_from} AS r WHERE {selection}) AS s"
    ).format(
        r_key=key_json("r"),
        l_from=_from(live_schema, lt),
        l_eq=r_key_eq("r", "l", True),
        r_from=_from(restored_schema, rt),
        selection=selection,
    )
    selected, conflicts = conn.execute(stats).fetchone()  # type: ignore[misc]
    missing: list[dict[str, Any]] = []
    if keys_src is not None:
        row = conn.execute(
            sql.SQL(
                "SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(k)) FROM {}"
                " WHERE NOT EXISTS (SELECT 1 FROM {} AS r WHERE {})"
            ).format(keys_src, _from(restored_schema, rt), r_key_eq("r", "k", False))
        ).fetchone()
        missing = list(row[0] or []) if row else []
    return CopyBackPlan(
        live_schema=live_schema,
        restored_schema=restored_schema,
        table=rt.name,
        columns=columns,
        key_columns=key,
        keys=keys,
        all_only_in_restored=keys is None,
        sql=statement.as_string(conn),
        selected=int(selected),
        conflicts=list(conflicts or []),
        missing=missing,
        statement=statement,
    )


def apply_copy_back(dsn: str, plans: list[CopyBackPlan]) -> dict:
    """Run the plans in one transaction; per table: rows inserted, selected, and conflicting keys."""
    if not plans:
        return {}
    qualified = len({p.live_schema for p in plans}) > 1
    out: dict[str, dict[str, Any]] = {}
    current: CopyBackPlan | None = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            conn.execute("SELECT pg_catalog.set_config('row_security', 'off', true)")
            for plan in plans:
                current = plan
                statement = plan.statement if plan.statement is not None else sql.SQL(plan.sql)
                row = conn.execute(statement).fetchone()
                assert row is not None
                selected, inserted, conflicts = row
                name = f"{plan.live_schema}.{plan.table}" if qualified else plan.table
                entry = out.setdefault(name, {"inserted": 0, "selected": 0, "conflicts": []})
                entry["inserted"] += int(inserted)
                entry["selected"] += int(selected)
                entry["conflicts"] += list(conflicts or [])
    except PsycopgError as exc:
        where = f"{current.live_schema}.{current.table}" if current else "the database"
        raise CompareError(
            f"copy-back into {where} failed, the transaction was rolled back and no row of any"
            f" table was inserted: {server_message(exc)}"
        ) from exc
    return out
