"""Row recovery, the foreign-key closure: the restored rows that keys bring along with the planned
ones (missing parents of what is written, missing children of what is re-inserted), the links
between planned rows, and the order the tables are written in (parents first, cycles deferred)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from restore_assets.core.compare.copyback import _same_type
from restore_assets.core.recover.model import ForeignKey, Key
from restore_assets.core.recover.sql import TablePair, from_, in_keys, key_text, match, q


def key_lists(keys: set[Key] | list[Key]) -> list[list[str]]:
    """Keys as sorted JSON-ready lists."""
    return [list(k) for k in sorted(keys)]


def missing_parents(
    conn: psycopg.Connection, fk: ForeignKey, child: TablePair, parent: TablePair, keys: set[Key]
) -> tuple[list[Key], int]:
    """Parents in the restored copy, missing in live, of the child rows (and how many are nowhere)."""
    if not keys:
        return [], 0
    rsame = [True] * len(fk.child_columns)
    stmt = sql.SQL(
        "SELECT {pk}, {pr_found} FROM {cr}"
        " LEFT JOIN {pr} ON {pr_eq}"
        " WHERE {sel} AND {notnull}"
        " AND NOT EXISTS (SELECT 1 FROM {pl} WHERE {pl_eq})"
    ).format(
        pk=key_text("pr", parent.key),
        pr_found=sql.SQL("{} IS NOT NULL").format(sql.Identifier("pr", parent.key[0])),
        cr=from_(child.restored_schema, child.rt, "cr"),
        pr=from_(parent.restored_schema, parent.rt, "pr"),
        pr_eq=match("pr", fk.parent_columns, "cr", fk.child_columns, rsame),
        sel=in_keys("cr", key_lists(keys), child.key, child.types(child.rt)),
        notnull=sql.SQL(" AND ").join(
            sql.SQL("{} IS NOT NULL").format(sql.Identifier("cr", c)) for c in fk.child_columns
        ),
        pl=from_(parent.live_schema, parent.lt, "pl"),
        pl_eq=match(
            "pl",
            fk.parent_columns,
            "cr",
            fk.child_columns,
            [
                _same_type(parent.lt.column(p), child.rt.column(c))  # type: ignore[arg-type]
                for p, c in zip(fk.parent_columns, fk.child_columns, strict=True)
            ],
        ),
    )
    found: list[Key] = []
    nowhere = 0
    for k, ok in q(conn, stmt):
        if ok:
            found.append(tuple(k))
        else:
            nowhere += 1
    return found, nowhere


def missing_children(
    conn: psycopg.Connection, fk: ForeignKey, child: TablePair, parent: TablePair, keys: set[Key]
) -> list[Key]:
    """Child rows in the restored copy, missing in live, referencing the parent rows."""
    if not keys:
        return []
    stmt = sql.SQL(
        "SELECT DISTINCT {ck} FROM {cr} JOIN {pr} ON {eq} WHERE {sel}"
        " AND NOT EXISTS (SELECT 1 FROM {cl} WHERE {cl_eq})"
    ).format(
        ck=key_text("cr", child.key),
        cr=from_(child.restored_schema, child.rt, "cr"),
        pr=from_(parent.restored_schema, parent.rt, "pr"),
        eq=match("pr", fk.parent_columns, "cr", fk.child_columns, [True] * len(fk.child_columns)),
        sel=in_keys("pr", key_lists(keys), parent.key, parent.types(parent.rt)),
        cl=from_(child.live_schema, child.lt, "cl"),
        cl_eq=match("cr", child.key, "cl", child.key, child.same(child.key)),
    )
    return [tuple(r[0]) for r in q(conn, stmt)]


def planned_links(
    conn: psycopg.Connection,
    fk: ForeignKey,
    child: TablePair,
    parent: TablePair,
    ckeys: set[Key],
    pkeys: set[Key],
) -> list[tuple[Key, Key]]:
    """(child key, parent key) pairs among planned rows linked by the foreign key."""
    if not ckeys or not pkeys:
        return []
    stmt = sql.SQL("SELECT {ck}, {pk} FROM {cr} JOIN {pr} ON {eq} WHERE {cs} AND {ps}").format(
        ck=key_text("cr", child.key),
        pk=key_text("pr", parent.key),
        cr=from_(child.restored_schema, child.rt, "cr"),
        pr=from_(parent.restored_schema, parent.rt, "pr"),
        eq=match("pr", fk.parent_columns, "cr", fk.child_columns, [True] * len(fk.child_columns)),
        cs=in_keys("cr", key_lists(ckeys), child.key, child.types(child.rt)),
        ps=in_keys("pr", key_lists(pkeys), parent.key, parent.types(parent.rt)),
    )
    return [(tuple(a), tuple(b)) for a, b in q(conn, stmt)]


def write_order(
    tables: list[str], fks: list[ForeignKey]
) -> tuple[list[str], list[str], str | None]:
    """Tables parents first; the deferrable foreign keys that must be deferred; a refusal."""
    edges = [f for f in fks if f.child in tables and f.parent in tables and f.child != f.parent]
    remaining = set(tables)
    order: list[str] = []
    defer: list[str] = []
    active = list(edges)
    while remaining:
        ready = sorted(
            t for t in remaining if not any(e.child == t and e.parent in remaining for e in active)
        )
        if ready:
            order += ready
            remaining -= set(ready)
            continue
        cyc = [e for e in active if e.child in remaining and e.parent in remaining]
        deferrable = [e for e in cyc if e.deferrable]
        if not deferrable:
            names = ", ".join(f"{e.name} ({e.child} -> {e.parent})" for e in cyc)
            return (
                order + sorted(remaining),
                defer,
                (
                    f"the foreign keys {names} form a cycle and none is DEFERRABLE: rows cannot be"
                    " inserted in any order; make one of them DEFERRABLE or recover these rows by hand"
                ),
            )
        defer.append(deferrable[0].name)
        active.remove(deferrable[0])
    # self-referencing keys need no order: a single INSERT checks them at its end (or deferred)
    return order, defer, None
