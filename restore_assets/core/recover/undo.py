"""Row recovery, undoing: put back, from the undo schemas, what an applied plan changed.

In one transaction under the same locks as apply: the undo schemas must be the ones the recovery
created, every row it touched must still be as it left it, and no live row added since may
reference a row it inserted; otherwise nothing is changed. Then the updated rows get their earlier
version back and the inserted rows are deleted (children first).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.errors import Error as PsycopgError

from restore_assets.core.compare.catalog import schema_oid
from restore_assets.core.errors import server_message
from restore_assets.core.recover.apply import ACTION, AFTER, begin_session, lock_live, settable
from restore_assets.core.recover.model import RecoveryPlan, RecoveryRefused, SchemaPlan
from restore_assets.core.recover.sql import (
    TablePair,
    from_,
    key_text,
    match,
    read_foreign_keys,
    row_hash,
    sides_for,
)


def _external_references(
    conn: psycopg.Connection, plan: SchemaPlan, sides: dict[str, TablePair]
) -> list[str]:
    """Live rows (not inserted by the recovery) referencing rows it inserted."""
    out = []
    for fk in read_foreign_keys(conn, plan.live_schema):
        if fk.parent not in plan.order or not plan.tables[fk.parent].inserts:
            continue
        child_lt = sides[fk.child].lt if fk.child in sides else _live_table(conn, plan, fk.child)
        if child_lt is None or not child_lt.primary_key:
            continue
        ckey = list(child_lt.primary_key)
        exclude = sql.SQL("")
        if fk.child in plan.order:
            # rows the recovery wrote itself: deleted by the undo, or given back their earlier
            # version (which existed before the recovery, so it cannot reference its inserts)
            exclude = sql.SQL(" AND NOT EXISTS (SELECT 1 FROM {uc} AS uc WHERE {eq})").format(
                uc=sql.Identifier(plan.undo_schema, fk.child),
                eq=match("uc", ckey, "c", ckey, [True] * len(ckey)),
            )
        stmt = sql.SQL(
            "SELECT count(*) FROM {c} JOIN {u} AS u ON u.{a} = 'inserted' AND {eq} WHERE true{ex}"
        ).format(
            c=from_(plan.live_schema, child_lt, "c"),
            u=sql.Identifier(plan.undo_schema, fk.parent),
            a=sql.Identifier(ACTION),
            eq=match("c", fk.child_columns, "u", fk.parent_columns, [True] * len(fk.child_columns)),
            ex=exclude,
        )
        n = conn.execute(stmt).fetchone()[0]  # type: ignore[index]
        if n:
            out.append(
                f"{n} row(s) of {plan.live_schema}.{fk.child} added since the recovery reference"
                f" rows it inserted into {fk.parent} ({fk.name})"
            )
    return out


def _live_table(conn: psycopg.Connection, plan: SchemaPlan, name: str) -> Any:
    from restore_assets.core.compare.catalog import read_schema

    return read_schema(conn, plan.live_schema).tables.get(name)


def undo_recovery(
    dsn: str,
    plan: RecoveryPlan,
    undo_oids: dict[str, int],
    *,
    triggers: bool = False,
) -> dict[str, Any]:
    """Put back what an applied plan changed, from its undo schemas; refuse if live moved since."""
    counts: dict[str, dict[str, int]] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            begin_session(conn, plan.options, triggers)
            schemas = [p for p in plan.schemas if p.order]
            for p in schemas:
                oid = schema_oid(conn, p.undo_schema)
                if oid is None or oid != undo_oids.get(p.undo_schema):
                    raise RecoveryRefused(
                        f"undo schema {p.undo_schema} is missing or is not the one recovery"
                        f" {plan.recovery_id} created (recorded oid {undo_oids.get(p.undo_schema)},"
                        f" found {oid}): nothing was changed"
                    )
            lock_live(conn, schemas)
            problems: list[str] = []
            all_sides = {p.live_schema: sides_for(conn, p) for p in schemas}
            for p in schemas:
                sides = all_sides[p.live_schema]
                for name in p.order:
                    tp = p.tables[name]
                    stmt = sql.SQL(
                        "SELECT {k} FROM {u} AS u LEFT JOIN {l} ON {eq}"
                        " WHERE {lk} IS NULL OR {h} IS DISTINCT FROM u.{after} LIMIT 10"
                    ).format(
                        k=key_text("u", tp.key),
                        u=sql.Identifier(p.undo_schema, name),
                        l=from_(p.live_schema, sides[name].lt, "l"),
                        eq=match("u", tp.key, "l", tp.key, [True] * len(tp.key)),
                        lk=sql.Identifier("l", tp.key[0]),
                        h=row_hash("l", tp.all_columns),
                        after=sql.Identifier(AFTER),
                    )
                    for (k,) in conn.execute(stmt):
                        problems.append(
                            f"{p.live_schema}.{name} {dict(zip(tp.key, k, strict=True))} changed"
                            " or was deleted since the recovery"
                        )
                problems += _external_references(conn, p, sides)
            if problems:
                raise RecoveryRefused(
                    "undo refused, live moved since the recovery and putting the rows back would"
                    " lose those writes: " + "; ".join(problems[:10]) + ". Nothing was changed"
                )
            for p in schemas:
                sides = all_sides[p.live_schema]
                for name in p.order:
                    tp, side = p.tables[name], sides[name]
                    cols = settable(side)
                    entry = counts.setdefault(
                        f"{p.live_schema}.{name}", {"restored": 0, "deleted": 0}
                    )
                    if cols:
                        cur = conn.execute(
                            sql.SQL(
                                "UPDATE {l} SET {sets} FROM {u} AS u WHERE u.{a} = 'updated'"
                                " AND {eq}"
                            ).format(
                                l=from_(p.live_schema, side.lt, "l"),
                                sets=sql.SQL(", ").join(
                                    sql.SQL("{} = u.{}").format(
                                        sql.Identifier(c), sql.Identifier(c)
                                    )
                                    for c in cols
                                ),
                                u=sql.Identifier(p.undo_schema, name),
                                a=sql.Identifier(ACTION),
                                eq=match("l", tp.key, "u", tp.key, [True] * len(tp.key)),
                            )
                        )
                        entry["restored"] += max(cur.rowcount, 0)
                for name in reversed(p.order):
                    tp, side = p.tables[name], sides[name]
                    cur = conn.execute(
                        sql.SQL(
                            "DELETE FROM {l} USING {u} AS u WHERE u.{a} = 'inserted' AND {eq}"
                        ).format(
                            l=from_(p.live_schema, side.lt, "l"),
                            u=sql.Identifier(p.undo_schema, name),
                            a=sql.Identifier(ACTION),
                            eq=match("l", tp.key, "u", tp.key, [True] * len(tp.key)),
                        )
                    )
                    counts[f"{p.live_schema}.{name}"]["deleted"] += max(cur.rowcount, 0)
    except RecoveryRefused:
        raise
    except PsycopgError as exc:
        raise RecoveryRefused(
            f"undo of recovery {plan.recovery_id} failed and was rolled back, nothing was"
            f" changed: {server_message(exc)}"
        ) from exc
    return {"tables": counts}
