"""Row recovery, planning: which rows to re-insert or set back, following foreign keys, as SQL.

A plan compares a restored schema with its live schema in one read-only snapshot and lists, per
table, the keys to insert (rows deleted since the restore point, and the rows foreign keys bring
with them), the keys to update (rows changed since, on the chosen columns, with the live row's
hash as seen when planning) and the conflicts. Nothing is written here: `recover_apply` runs it.
Keys travel as text (one string per key column) and go back to SQL as a typed jsonb record set.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.errors import Error as PsycopgError

from restore_assets.core.compare.copyback import _check_columns
from restore_assets.core.compare.engine import (
    connect,
    read_catalogs,
    read_only_now,
    translate,
)
from restore_assets.core.compare.model import CompareError
from restore_assets.core.recover.apply import plan_sql
from restore_assets.core.recover.closure import (
    key_lists,
    missing_children,
    missing_parents,
    planned_links,
    write_order,
)
from restore_assets.core.recover.conflicts import resolve_conflicts
from restore_assets.core.recover.model import (
    ON_CONFLICT,
    Key,
    Options,
    RecoveryPlan,
    RecoveryRefused,
    SchemaPlan,
    TablePlan,
)
from restore_assets.core.recover.sql import (
    TablePair,
    from_,
    insert_conflicts,
    key_text,
    match,
    q,
    read_foreign_keys,
    read_unique_keys,
    row_hash,
    update_conflicts,
)

__all__ = ["ON_CONFLICT", "Options", "RecoveryPlan", "RecoveryRefused", "plan_recovery"]

LISTED_KEYS = 50  # keys listed per reason in the plan's summary (all are in `inserts`/`updates`)


def _resolve_columns(
    options: Options, sides: dict[str, TablePair], scope: list[str]
) -> dict[str, list[str]]:
    """Per table in scope, the columns `--changed` sets back."""
    out: dict[str, list[str]] = {}
    wanted = options.columns
    used: set[str] = set()
    for name in scope:
        side = sides[name]
        settable = [
            c.name
            for c in side.lt.columns
            if not c.generated
            and c.identity != "a"
            and c.name not in side.key
            and side.rt.column(c.name) is not None
        ]
        if wanted is None:
            out[name] = settable
            continue
        cols = []
        for w in wanted:
            table, _, col = w.rpartition(".")
            if table and table != name:
                continue
            if col in settable:
                cols.append(col)
                used.add(w)
        out[name] = cols
    if wanted is not None:
        unknown = [w for w in wanted if w not in used]
        if unknown:
            raise CompareError(
                f"--columns {', '.join(unknown)}: no table in scope has such a column that can be"
                " set back (not a key, generated or GENERATED ALWAYS identity column)"
            )
    return out


def _deleted_keys(conn: psycopg.Connection, s: TablePair) -> list[Key]:
    stmt = sql.SQL(
        "SELECT {k} FROM {r} WHERE NOT EXISTS (SELECT 1 FROM {l} WHERE {eq}) ORDER BY 1"
    ).format(
        k=key_text("r", s.key),
        r=from_(s.restored_schema, s.rt, "r"),
        l=from_(s.live_schema, s.lt, "l"),
        eq=match("r", s.key, "l", s.key, s.same(s.key)),
    )
    return [tuple(r[0]) for r in q(conn, stmt)]


def _changed_keys(conn: psycopg.Connection, s: TablePair, cols: list[str]) -> list[tuple[Key, int]]:
    differs = sql.SQL(" OR ").join(
        sql.SQL("({})::text IS DISTINCT FROM ({})::text").format(
            sql.Identifier("r", c), sql.Identifier("l", c)
        )
        for c in cols
    )
    stmt = sql.SQL("SELECT {k}, {h} FROM {r} JOIN {l} ON {eq} WHERE {d} ORDER BY 1").format(
        k=key_text("l", s.key),
        h=row_hash("l", [c.name for c in s.lt.columns]),
        r=from_(s.restored_schema, s.rt, "r"),
        l=from_(s.live_schema, s.lt, "l"),
        eq=match("r", s.key, "l", s.key, s.same(s.key)),
        d=differs,
    )
    return [(tuple(r[0]), int(r[1])) for r in q(conn, stmt)]


def plan_schema(
    conn: psycopg.Connection,
    live_schema: str,
    restored_schema: str,
    undo_schema: str,
    options: Options,
) -> tuple[SchemaPlan, str | None]:
    """The plan of one schema pair, in the caller's read-only snapshot; and a refusal, if any."""
    live, restored = read_catalogs(conn, live_schema, restored_schema)
    fks = read_foreign_keys(conn, live_schema)
    uniques = read_unique_keys(conn, live_schema)
    notes: list[str] = []
    sides: dict[str, TablePair] = {}
    for name in sorted(live.tables.keys() & restored.tables.keys()):
        rt, lt = restored.tables[name], live.tables[name]
        if rt.is_partition or lt.is_partition:
            continue
        try:
            if not lt.primary_key or rt.primary_key != lt.primary_key:
                raise CompareError(
                    f"{live_schema}.{name} has no primary key on both sides: its rows cannot be"
                    " matched"
                )
            _check_columns(live_schema, rt, lt)
        except CompareError as exc:
            if options.tables and name in options.tables:
                raise
            notes.append(f"{name} left out: {exc}")
            continue
        sides[name] = TablePair(name, rt, lt, live_schema, restored_schema)
    if options.tables:
        missing = [t for t in options.tables if t not in sides]
        if missing:
            raise CompareError(
                f"--table {', '.join(missing)}: no such table on both sides of"
                f" {live_schema} / {restored_schema}"
            )
        scope = list(options.tables)
    else:
        scope = sorted(sides)
    fks = [f for f in fks if f.child in sides and f.parent in sides]
    set_cols = _resolve_columns(options, sides, scope) if options.changed else {}

    inserts: dict[str, dict[Key, str]] = {n: {} for n in sides}
    updates: dict[str, dict[Key, int]] = {n: {} for n in sides}
    reasons: dict[str, dict[tuple, list[Key]]] = {n: {} for n in sides}
    unresolved: dict[str, int] = {}
    for name in scope:
        if options.deleted:
            for k in _deleted_keys(conn, sides[name]):
                inserts[name][k] = "deleted since the restore point"
        if options.changed and set_cols.get(name):
            for k, h in _changed_keys(conn, sides[name], set_cols[name]):
                updates[name][k] = h
    # follow the foreign keys to a fixed point: parents of what is written, children of inserts
    new_ins = {n: set(v) for n, v in inserts.items()}
    new_upd = {n: set(v) for n, v in updates.items()}
    while any(new_ins.values()) or any(new_upd.values()):
        found: dict[str, set[Key]] = {n: set() for n in sides}
        for fk in fks:
            child, parent = sides[fk.child], sides[fk.parent]
            writers = set(new_ins[fk.child])
            if set(fk.child_columns) & set(set_cols.get(fk.child, [])):
                writers |= new_upd[fk.child]
            parents, nowhere = missing_parents(conn, fk, child, parent, writers)
            if nowhere:
                unresolved[fk.name] = unresolved.get(fk.name, 0) + nowhere
            for k in parents:
                if k not in inserts[fk.parent]:
                    inserts[fk.parent][k] = f"referenced by {fk.child} ({fk.name})"
                    reasons[fk.parent].setdefault(("up", fk.name, fk.child), []).append(k)
                    found[fk.parent].add(k)
            for k in missing_children(conn, fk, child, parent, new_ins[fk.parent]):
                if k not in inserts[fk.child]:
                    inserts[fk.child][k] = f"references a re-inserted {fk.parent} ({fk.name})"
                    reasons[fk.child].setdefault(("down", fk.name, fk.parent), []).append(k)
                    found[fk.child].add(k)
        new_ins = found
        new_upd = {n: set() for n in sides}
    for fk_name, n in unresolved.items():
        notes.append(
            f"{n} row(s) reference through {fk_name} a row that is neither in live nor in the"
            " restored copy: applying would fail on that foreign key"
        )

    touched = [n for n in sides if inserts[n] or updates[n]]
    order, defer, cycle = write_order(touched, fks)
    tables: dict[str, TablePlan] = {}
    for name in order:
        s = sides[name]
        ins_cols = [c.name for c in s.rt.columns if not c.generated]
        tp = TablePlan(
            table=name,
            key=s.key,
            key_types=s.types(s.lt),
            restored_key_types=s.types(s.rt),
            insert_columns=ins_cols,
            update_columns=list(set_cols.get(name, [])),
            all_columns=[c.name for c in s.lt.columns],
            overriding=any(c.identity == "a" for c in s.lt.columns if c.name in ins_cols),
            inserts=key_lists(list(inserts[name])),
            updates=[list(k) for k in sorted(updates[name])],
            update_hashes=[updates[name][k] for k in sorted(updates[name])],
        )
        if inserts[name]:
            direct = sum(1 for r in inserts[name].values() if r.startswith("deleted"))
            if direct:
                tp.reasons.append({"reason": "deleted since the restore point", "count": direct})
        for (direction, fk_name, other), keys in sorted(reasons[name].items()):
            tp.reasons.append(
                {
                    "reason": (
                        f"referenced by rows of {other} being written"
                        if direction == "up"
                        else f"references rows of {other} being re-inserted (deleted with them)"
                    ),
                    "fk": fk_name,
                    "count": len(keys),
                    "keys": key_lists(keys)[:LISTED_KEYS],
                }
            )
        if updates[name]:
            tp.reasons.append(
                {
                    "reason": "changed since the restore point",
                    "columns": tp.update_columns,
                    "count": len(updates[name]),
                }
            )
        tp.conflicts = insert_conflicts(conn, s, tp.inserts, uniques.get(name, []))
        tp.conflicts += update_conflicts(
            conn, s, tp.updates, tp.update_columns, uniques.get(name, [])
        )
        tables[name] = tp
    for fk in fks:
        if fk.child in tables and fk.parent in tables:
            c, p = tables[fk.child], tables[fk.parent]
            ckeys = {tuple(k) for k in c.inserts} | {tuple(k) for k in c.updates}
            for ck, pk in planned_links(
                conn, fk, sides[fk.child], sides[fk.parent], ckeys, {tuple(k) for k in p.inserts}
            ):
                if ck != pk or fk.child != fk.parent:
                    c.depends.append([list(ck), fk.parent, list(pk)])
    sequences = [
        {"name": seq.name, "table": t, "column": col, "increment": seq.increment}
        for seq in live.sequences.values()
        for sch, t, col in seq.users
        if sch == live_schema and t in tables and tables[t].inserts and seq.increment > 0
    ]
    plan = SchemaPlan(
        live_schema=live_schema,
        restored_schema=restored_schema,
        undo_schema=undo_schema,
        order=order,
        defer=defer,
        tables=tables,
        notes=notes,
        sequences=sequences,
    )
    refusal = cycle or resolve_conflicts(plan, options.on_conflict)
    return plan, refusal


def plan_recovery(
    dsn: str,
    pairs: dict[str, str],
    options: Options,
    *,
    recovery_id: str,
    restore_id: str,
    undo_suffix: str,
) -> RecoveryPlan:
    """Compute the recovery plan of the schema pairs {live: restored}; nothing is written."""
    options.check()
    conn = connect(dsn)
    schemas: list[SchemaPlan] = []
    refusals: list[str] = []
    with conn:
        try:
            database, now = read_only_now(conn)
            for live_schema, restored_schema in sorted(pairs.items()):
                undo = undo_schema_name(live_schema, undo_suffix)
                plan, refusal = plan_schema(conn, live_schema, restored_schema, undo, options)
                schemas.append(plan)
                if refusal:
                    refusals.append(refusal)
        except CompareError:
            raise
        except PsycopgError as exc:
            raise translate(exc, "planning the recovery failed") from exc
        out = RecoveryPlan(
            recovery_id=recovery_id,
            restore_id=restore_id,
            database=database,
            options=options,
            schemas=schemas,
            generated_at=now.isoformat(),
            refused="; ".join(refusals) or None,
        )
        out.sql = plan_sql(conn, out)
    return out


def undo_schema_name(live_schema: str, suffix: str) -> str:
    """`<schema>_undo_<suffix>`, refused when longer than PostgreSQL's 63 bytes."""
    name = f"{live_schema}_undo_{suffix}"
    if len(name.encode()) > 63:
        raise CompareError(
            f"the undo schema name {name!r} would be longer than 63 bytes: recover this schema"
            " with a shorter restore id suffix"
        )
    return name
