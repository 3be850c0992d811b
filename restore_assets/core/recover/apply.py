"""Row recovery, applying: one locked, timed transaction that saves undo copies, then writes.

Apply takes SHARE ROW EXCLUSIVE locks on the live tables it writes (parents first, the order
the application's own transactions take them), so readers go on while writers wait; it then
re-checks the plan against live under those locks (a key inserted meanwhile, a row changed
again) and applies the conflict policy or refuses. Before writing it copies the live versions of
every row it will update into `<schema>_undo_<suffix>`, and records the rows it inserts there;
`undo.undo_recovery` puts them back, refusing when live moved since.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.errors import Error as PsycopgError

from restore_assets.core.compare.catalog import schema_oid
from restore_assets.core.errors import server_message
from restore_assets.core.recover.conflicts import skip_rows
from restore_assets.core.recover.model import (
    Key,
    RecoveryPlan,
    RecoveryRefused,
    SchemaPlan,
    TablePlan,
)
from restore_assets.core.recover.sql import (
    TablePair,
    from_,
    in_keys,
    insert_conflicts,
    live_hashes,
    match,
    read_unique_keys,
    row_hash,
    sides_for,
    update_conflicts,
)

ACTION = "__ra_action"
AFTER = "__ra_after"
LOCK_MODE = sql.SQL("SHARE ROW EXCLUSIVE")

Statement = tuple[str, sql.Composable, str, str]  # label, statement, kind, table


def _value(side: TablePair, column: str) -> sql.Composable:
    rc, lc = side.rt.column(column), side.lt.column(column)
    assert rc is not None and lc is not None
    if (rc.type_schema, rc.type_name) == (lc.type_schema, lc.type_name):
        return sql.Identifier("r", column)
    # same type name in the other schema (an enum, a domain): through text
    return sql.SQL("({})::text::{}").format(
        sql.Identifier("r", column), sql.Identifier(lc.type_schema, lc.type_name)
    )


def _update(
    side: TablePair, tp: TablePlan, keys: list[list[str]], cols: list[str]
) -> sql.Composable:
    return sql.SQL("UPDATE {l} SET {sets} FROM {r} WHERE {eq} AND {sel}").format(
        l=from_(side.live_schema, side.lt, "l"),
        sets=sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), _value(side, c)) for c in cols
        ),
        r=from_(side.restored_schema, side.rt, "r"),
        eq=match("l", tp.key, "r", tp.key, side.same(tp.key)),
        sel=in_keys("r", keys, tp.key, tp.restored_key_types),
    )


def _insert(side: TablePair, tp: TablePlan) -> sql.Composable:
    return sql.SQL("INSERT INTO {l} ({cols}){over} SELECT {vals} FROM {r} WHERE {sel}").format(
        l=sql.Identifier(side.live_schema, tp.table),
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in tp.insert_columns),
        over=sql.SQL(" OVERRIDING SYSTEM VALUE") if tp.overriding else sql.SQL(""),
        vals=sql.SQL(", ").join(_value(side, c) for c in tp.insert_columns),
        r=from_(side.restored_schema, side.rt, "r"),
        sel=in_keys("r", tp.inserts, tp.key, tp.restored_key_types),
    )


def settable(side: TablePair) -> list[str]:
    """Live columns an UPDATE may set: not generated, not GENERATED ALWAYS identity, not the key."""
    key = side.key
    return [
        c.name
        for c in side.lt.columns
        if not c.generated and c.identity != "a" and c.name not in key
    ]


def schema_statements(plan: SchemaPlan, sides: dict[str, TablePair]) -> list[Statement]:
    """The statements of one schema plan, in order: undo copies, updates and inserts, sequences."""
    undo = plan.undo_schema
    out: list[Statement] = [
        ("undo schema", sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(undo)), "undo", "")
    ]
    for name in plan.order:
        tp, side = plan.tables[name], sides[name]
        save = sql.SQL(
            "CREATE TABLE {u} AS SELECT 'updated'::text AS {a}, NULL::bigint AS {h}, l.*"
            " FROM {l} WHERE {sel}"
        ).format(
            u=sql.Identifier(undo, name),
            a=sql.Identifier(ACTION),
            h=sql.Identifier(AFTER),
            l=from_(plan.live_schema, side.lt, "l"),
            sel=in_keys("l", tp.updates + tp.overwrites, tp.key, tp.key_types),
        )
        out.append((f"{name}: save the live rows to be updated", save, "undo", name))
    if plan.defer:
        defer = sql.SQL("SET CONSTRAINTS {} DEFERRED").format(
            sql.SQL(", ").join(sql.Identifier(plan.live_schema, n) for n in plan.defer)
        )
        out.append(("deferred foreign keys (they close a cycle)", defer, "defer", ""))
    for name in plan.order:
        tp, side = plan.tables[name], sides[name]
        if tp.updates and tp.update_columns:
            label = f"{name}: set {len(tp.updates)} changed row(s) back"
            label += f" ({', '.join(tp.update_columns)})"
            out.append((label, _update(side, tp, tp.updates, tp.update_columns), "updated", name))
        if tp.overwrites:
            label = f"{name}: overwrite {len(tp.overwrites)} conflicting row(s)"
            out.append(
                (label, _update(side, tp, tp.overwrites, settable(side)), "overwritten", name)
            )
        if tp.inserts:
            label = f"{name}: insert {len(tp.inserts)} row(s)"
            out.append((label, _insert(side, tp), "inserted", name))
            record = sql.SQL(
                "INSERT INTO {u} SELECT 'inserted', NULL, l.* FROM {l} WHERE {sel}"
            ).format(
                u=sql.Identifier(undo, name),
                l=from_(plan.live_schema, side.lt, "l"),
                sel=in_keys("l", tp.inserts, tp.key, tp.key_types),
            )
            out.append((f"{name}: record the inserted rows", record, "undo", name))
    for seq in plan.sequences:
        col = sides[seq["table"]].lt.column(seq["column"])
        if col is None or col.base_type_name not in ("int2", "int4", "int8"):
            continue
        forward = sql.SQL(
            "SELECT pg_catalog.setval(pg_catalog.format('%I.%I', {ns}, {name})::regclass, x.m)"
            " FROM (SELECT pg_catalog.max({c})::bigint AS m FROM {t}) AS x, {s} AS s"
            " WHERE x.m IS NOT NULL"
            " AND x.m >= CASE WHEN s.is_called THEN s.last_value + {inc} ELSE s.last_value END"
        ).format(
            ns=sql.Literal(plan.live_schema),
            name=sql.Literal(seq["name"]),
            c=sql.Identifier(seq["column"]),
            t=sql.Identifier(plan.live_schema, seq["table"]),
            s=sql.Identifier(plan.live_schema, seq["name"]),
            inc=sql.Literal(int(seq["increment"])),
        )
        label = f"sequence {seq['name']}: forward past {seq['table']}.{seq['column']} (never back)"
        out.append((label, forward, "sequence", seq["table"]))
    for name in plan.order:
        tp, side = plan.tables[name], sides[name]
        after = sql.SQL("UPDATE {u} AS u SET {h} = {hash} FROM {l} WHERE {eq}").format(
            u=sql.Identifier(undo, name),
            h=sql.Identifier(AFTER),
            hash=row_hash("l", tp.all_columns),
            l=from_(plan.live_schema, side.lt, "l"),
            eq=match("u", tp.key, "l", tp.key, [True] * len(tp.key)),
        )
        out.append((f"{name}: hash each touched row as left (undo checks it)", after, "undo", name))
    return out


def begin_session(conn: psycopg.Connection, plan_options: Any, triggers: bool) -> None:
    """Transaction-local timeouts, no row security, and triggers off unless `triggers`."""
    for name, value in (
        ("lock_timeout", plan_options.lock_timeout),
        ("statement_timeout", plan_options.statement_timeout),
        ("row_security", "off"),
    ):
        conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, value))
    if not triggers:
        su = conn.execute("SELECT pg_catalog.current_setting('is_superuser')").fetchone()
        if not su or su[0] != "on":
            raise RecoveryRefused(
                "disabling triggers (session_replication_role = replica) needs a superuser;"
                " connect as one, or let the triggers fire"
            )
        conn.execute("SELECT pg_catalog.set_config('session_replication_role', 'replica', true)")


def lock_live(conn: psycopg.Connection, plans: list[SchemaPlan]) -> None:
    """Lock the live tables the plans write (SHARE ROW EXCLUSIVE), parents first."""
    names = [sql.Identifier(p.live_schema, t) for p in plans for t in p.order]
    if names:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.SQL(", ").join(names), LOCK_MODE)
        )


def plan_sql(conn: psycopg.Connection, plan: RecoveryPlan) -> str:
    """The whole recovery as one SQL script, for review (what apply runs if live has not moved)."""
    o = plan.options
    lines = [
        f"-- recovery {plan.recovery_id} of restore {plan.restore_id} in database {plan.database}",
        "BEGIN;",
        f"SET LOCAL lock_timeout = {sql.Literal(o.lock_timeout).as_string(conn)};",
        f"SET LOCAL statement_timeout = {sql.Literal(o.statement_timeout).as_string(conn)};",
    ]
    if not o.triggers:
        lines.append("SET LOCAL session_replication_role = replica;  -- triggers do not fire")
    tables = [sql.Identifier(p.live_schema, t) for p in plan.schemas for t in p.order]
    if tables:
        lines.append(
            sql.SQL("LOCK TABLE {} IN {} MODE;")
            .format(sql.SQL(", ").join(tables), LOCK_MODE)
            .as_string(conn)
        )
    lines.append("-- (apply re-checks the plan against live here, under these locks)")
    for splan in plan.schemas:
        if not splan.order:
            continue
        sides = sides_for(conn, splan)
        for label, stmt, _, _ in schema_statements(splan, sides):
            lines.append(f"-- {label}")
            lines.append(stmt.as_string(conn) + ";")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def _recheck(
    conn: psycopg.Connection, plan: SchemaPlan, sides: dict[str, TablePair], policy: str
) -> list[str]:
    """Re-check the plan against live under lock; apply the policy; return what moved (or refuse)."""
    uniques = read_unique_keys(conn, plan.live_schema)
    moved: list[str] = []
    refuse: list[str] = []
    skip: dict[str, dict[Key, str]] = {}
    for name in plan.order:
        tp, side = plan.tables[name], sides[name]
        for c in insert_conflicts(conn, side, tp.inserts, uniques.get(name, [])):
            desc = (
                f"{plan.live_schema}.{name} {dict(zip(tp.key, c['key'], strict=True))}: a live row"
                f" now holds its {c['constraint']} value ({c['kind']})"
            )
            moved.append(desc)
            if policy == "overwrite" and c["kind"] == "primary key":
                if c["key"] in tp.inserts:
                    tp.inserts.remove(c["key"])
                    tp.overwrites.append(c["key"])
            elif policy == "skip":
                skip.setdefault(name, {})[tuple(c["key"])] = "inserted in live since the plan"
            else:
                refuse.append(desc)
        for c in update_conflicts(conn, side, tp.updates, tp.update_columns, uniques.get(name, [])):
            desc = (
                f"{plan.live_schema}.{name} {dict(zip(tp.key, c['key'], strict=True))}: live row"
                f" {dict(zip(tp.key, c['live_key'], strict=True))} now holds its"
                f" {c['constraint']} value"
            )
            moved.append(desc)
            if policy == "skip":
                skip.setdefault(name, {})[tuple(c["key"])] = f"conflict on {c['constraint']}"
            else:
                refuse.append(desc)
        now = live_hashes(conn, side, tp.updates)
        for k, h in zip(list(tp.updates), list(tp.update_hashes), strict=True):
            cur = now.get(tuple(k))
            if cur == h:
                continue
            state = "deleted" if cur is None else "changed again"
            desc = f"{plan.live_schema}.{name} {dict(zip(tp.key, k, strict=True))} was {state}"
            moved.append(desc + " since the plan")
            if policy == "skip" or (policy == "overwrite" and cur is None):
                skip.setdefault(name, {})[tuple(k)] = f"{state} in live since the plan"
            elif policy == "fail":
                refuse.append(desc)
    if refuse:
        raise RecoveryRefused(
            f"live moved since the plan in a way that breaks it ({len(refuse)} row(s)): "
            + "; ".join(refuse[:10])
            + ". Nothing was written. Plan again, or choose --on-conflict skip or overwrite"
        )
    skip_rows(plan, skip)
    return moved


def _zero() -> dict[str, int]:
    return {"inserted": 0, "updated": 0, "overwritten": 0}


def apply_plan(
    dsn: str,
    plan: RecoveryPlan,
    *,
    on_start: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Apply a plan in one transaction (locks, re-check, undo copies, writes); return what it did."""
    if plan.refused:
        raise RecoveryRefused(f"the plan is refused: {plan.refused}")
    executed: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    moved: list[str] = []
    current = "the database"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            begin_session(conn, plan.options, plan.options.triggers)
            xid = conn.execute("SELECT pg_catalog.txid_current()").fetchone()[0]  # type: ignore[index]
            if on_start is not None:
                on_start(int(xid))
            schemas = [p for p in plan.schemas if p.order]
            lock_live(conn, schemas)
            for splan in schemas:
                sides = sides_for(conn, splan)
                moved += _recheck(conn, splan, sides, plan.options.on_conflict)
                for label, stmt, kind, table in schema_statements(splan, sides):
                    current = f"{splan.live_schema} ({label})"
                    cur = conn.execute(stmt)
                    executed.append(f"-- {label}\n{stmt.as_string(conn)};")
                    if kind in ("inserted", "updated", "overwritten"):
                        entry = counts.setdefault(f"{splan.live_schema}.{table}", _zero())
                        entry[kind] += max(cur.rowcount, 0)
            oids = {p.undo_schema: schema_oid(conn, p.undo_schema) for p in schemas}
    except RecoveryRefused:
        raise
    except PsycopgError as exc:
        raise RecoveryRefused(
            f"applying the recovery failed in {current}; the transaction was rolled back and"
            f" nothing was written: {server_message(exc)}"
        ) from exc
    for splan in plan.schemas:
        for name in splan.order:
            counts.setdefault(f"{splan.live_schema}.{name}", _zero())["skipped"] = len(
                splan.tables[name].skipped
            )
    return {"tables": counts, "moved_since_plan": moved, "undo_schemas": oids, "sql": executed}
