"""Row-level comparison of one table: one hashing pass per side, details only for differing keys.

Each row is reduced to a 64-bit hash of its text (`hashtextextended(ROW(cols)::text, 0)` over
the columns common to both sides, so json, xml and point compare by their text). Tables with a
primary key on both sides are full-joined on the key; only the rows whose hash differs leave
the join, and only for those are the columns compared one by one (`::text IS DISTINCT FROM`)
into a materialized CTE that gives the counts, the changed columns and the samples. Large tables are split into key ranges so several connections (sharing one
snapshot) can work on them at once. Tables without a key compare as multisets of row hashes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core.compare.catalog import Table
from restore_assets.core.compare.model import SAMPLE_KINDS, TableComparison

# Tables smaller than this are never split.
SLICE_MIN_ROWS = 200_000
# Key types whose values survive a round trip through Python and sort the same way there.
_SLICEABLE_TYPES = {
    "int2",
    "int4",
    "int8",
    "numeric",
    "text",
    "varchar",
    "uuid",
    "date",
    "timestamp",
    "timestamptz",
}
_KIND = {1: "only_in_restored", 2: "only_in_live", 3: "changed"}


@dataclass
class RowTask:
    """One unit of row comparison: a table, or one key range of a large table."""

    table: str
    restored: Table
    live: Table
    restored_schema: str
    live_schema: str
    columns: list[str]
    key: list[str] | None
    text_key: bool = False
    lo: Any = None
    hi: Any = None
    has_lo: bool = False
    has_hi: bool = False
    part: int = 0
    parts: int = 1

    @property
    def weight(self) -> int:
        """Rough cost, to schedule the largest work first."""
        return max(self.restored.estimated_rows, self.live.estimated_rows) // self.parts


@dataclass
class PartialResult:
    """What one task found (summed over the tasks of a table)."""

    rows_restored: int = 0
    rows_live: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SAMPLE_KINDS, 0))
    samples: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in SAMPLE_KINDS})
    changed_columns: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _from(schema: str, table: Table, alias: str) -> sql.Composable:
    only = sql.SQL("ONLY ") if table.kind == "r" else sql.SQL("")
    return sql.SQL("{}{} AS {}").format(
        only, sql.Identifier(schema, table.name), sql.Identifier(alias)
    )


def _row_hash(alias: str, columns: list[str]) -> sql.Composable:
    cols = sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns)
    return sql.SQL("pg_catalog.hashtextextended((ROW({}))::text, 0)").format(cols)


def _where(task: RowTask, alias: str) -> sql.Composable:
    if task.key is None or not (task.has_lo or task.has_hi):
        return sql.SQL("")
    col = sql.Identifier(alias, task.key[0])
    parts = []
    if task.has_lo:
        parts.append(sql.SQL("{} >= {}").format(col, sql.Placeholder("lo")))
    if task.has_hi:
        parts.append(sql.SQL("{} < {}").format(col, sql.Placeholder("hi")))
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts)


def _key_json(alias: str, key: list[str], prefix: str) -> sql.Composable:
    args = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(k), sql.Identifier(alias, f"{prefix}{i}"))
        for i, k in enumerate(key)
    )
    return sql.SQL("pg_catalog.jsonb_build_object({})").format(args)


def keyed_query(task: RowTask) -> sql.Composable:
    """The statement comparing one keyed table (or key range)."""
    assert task.key is not None
    key = task.key
    rs, ls = task.restored_schema, task.live_schema

    def side(schema: str, table: Table, alias: str) -> sql.Composable:
        keys = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.Identifier(alias, k), sql.Identifier(f"__ra_k{i}"))
            for i, k in enumerate(key)
        )
        cols = sql.SQL("").join(
            sql.SQL(", {} AS {}").format(sql.Identifier(alias, c), sql.Identifier(f"__ra_c{i}"))
            for i, c in enumerate(task.columns)
        )
        return sql.SQL("SELECT {}, {} AS __ra_h{} FROM {}{}").format(
            keys,
            _row_hash(alias, task.columns),
            cols,
            _from(schema, table, alias),
            _where(task, alias),
        )

    if task.text_key:
        cond = "(r.{k})::text = (l.{k})::text"
    else:
        cond = "r.{k} = l.{k}"
    on = sql.SQL(" AND ").join(
        sql.SQL(cond).format(k=sql.Identifier(f"__ra_k{i}")) for i in range(len(key))
    )
    # Sort keys: samples come out in key order (the same order the key ranges split on).
    sort_expr = (
        "coalesce((r.{k})::text, (l.{k})::text) AS {sk}"
        if task.text_key
        else "coalesce(r.{k}, l.{k}) AS {sk}"
    )
    d_keys = sql.SQL(", ").join(
        sql.SQL("r.{k} AS {rk}, l.{k} AS {lk}, " + sort_expr).format(
            k=sql.Identifier(f"__ra_k{i}"),
            rk=sql.Identifier(f"__ra_r{i}"),
            lk=sql.Identifier(f"__ra_l{i}"),
            sk=sql.Identifier(f"__ra_s{i}"),
        )
        for i in range(len(key))
    )
    order = sql.SQL(", ").join(sql.Identifier(f"__ra_s{i}") for i in range(len(key)))
    # Which columns differ, computed only for the rows the join keeps (the differing ones).
    flags = sql.SQL(", ").join(
        sql.SQL("(r.{c})::text IS DISTINCT FROM (l.{c})::text").format(
            c=sql.Identifier(f"__ra_c{i}")
        )
        for i in range(len(task.columns))
    )
    col_diffs = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE diffs[{}])").format(sql.Literal(i + 1))
        for i in range(len(task.columns))
    )
    s_order = sql.SQL(", ").join(sql.Identifier("s", f"__ra_s{i}") for i in range(len(key)))
    samples = sql.SQL(", ").join(
        sql.SQL(
            "(SELECT pg_catalog.jsonb_agg(CASE WHEN s.kind = 2 THEN {lkey} ELSE {rkey} END"
            " ORDER BY {s_order}) FROM"
            " (SELECT * FROM d WHERE kind = {n} ORDER BY {order} LIMIT %(limit)s) AS s)"
        ).format(
            n=sql.Literal(n),
            order=order,
            s_order=s_order,
            lkey=_key_json("s", key, "__ra_l"),
            rkey=_key_json("s", key, "__ra_r"),
        )
        for n in (1, 2, 3)
    )
    return sql.SQL(
        """WITH d AS MATERIALIZED (
  SELECT CASE WHEN l.__ra_h IS NULL THEN 1 WHEN r.__ra_h IS NULL THEN 2 ELSE 3 END AS kind,
         CASE WHEN r.__ra_h IS NOT NULL AND l.__ra_h IS NOT NULL
              THEN ARRAY[{flags}]::boolean[] END AS diffs,
         {d_keys}
    FROM ({r_side}) AS r FULL JOIN ({l_side}) AS l ON {on}
   WHERE r.__ra_h IS DISTINCT FROM l.__ra_h
)
SELECT (SELECT count(*) FROM {r_from}{r_where}),
       (SELECT count(*) FROM {l_from}{l_where}),
       (SELECT count(*) FROM d WHERE kind = 1),
       (SELECT count(*) FROM d WHERE kind = 2),
       (SELECT count(*) FROM d WHERE kind = 3),
       {samples},
       (SELECT ARRAY[{col_diffs}]::bigint[] FROM d WHERE d.kind = 3)"""
    ).format(
        d_keys=d_keys,
        r_side=side(rs, task.restored, "x"),
        l_side=side(ls, task.live, "y"),
        on=on,
        r_from=_from(rs, task.restored, "x"),
        r_where=_where(task, "x"),
        l_from=_from(ls, task.live, "y"),
        l_where=_where(task, "y"),
        samples=samples,
        col_diffs=col_diffs,
        flags=flags,
    )


def multiset_query(task: RowTask) -> sql.Composable:
    """The statement comparing a table without a usable key, as multisets of row hashes."""
    rs, ls = task.restored_schema, task.live_schema

    def sample(schema: str, table: Table, cond: str, surplus: str) -> sql.Composable:
        # As many copies of each differing row as the side has in surplus, not all of them.
        extra = [c.name for c in table.columns if c.name not in task.columns]
        return sql.SQL(
            "CASE WHEN EXISTS (SELECT 1 FROM g WHERE {cond}) THEN"
            " (SELECT pg_catalog.jsonb_agg(s.v ORDER BY s.v) FROM"
            " (SELECT w.v FROM"
            "   (SELECT pg_catalog.to_jsonb(z) - {extra}::text[] AS v, {h} AS h,"
            "           pg_catalog.row_number() OVER (PARTITION BY {h}) AS n"
            "      FROM {src} WHERE {h} IN (SELECT g.h FROM g WHERE {cond})) AS w"
            "   JOIN g ON g.h = w.h WHERE w.n <= {surplus}"
            "   ORDER BY 1 LIMIT %(limit)s) AS s)"
            " END"
        ).format(
            cond=sql.SQL(cond),
            extra=sql.Literal(extra),
            src=_from(schema, table, "z"),
            h=_row_hash("z", task.columns),
            surplus=sql.SQL(surplus),
        )

    return sql.SQL(
        """WITH g AS MATERIALIZED (
  SELECT u.h, sum(u.cr)::bigint AS cr, sum(u.cl)::bigint AS cl
    FROM (SELECT {rh} AS h, 1 AS cr, 0 AS cl FROM {r_from}
          UNION ALL
          SELECT {lh}, 0, 1 FROM {l_from}) AS u
   GROUP BY u.h HAVING sum(u.cr) <> sum(u.cl)
)
SELECT (SELECT count(*) FROM {r_from}),
       (SELECT count(*) FROM {l_from}),
       (SELECT coalesce(sum(cr - cl), 0)::bigint FROM g WHERE cr > cl),
       (SELECT coalesce(sum(cl - cr), 0)::bigint FROM g WHERE cl > cr),
       {r_sample},
       {l_sample}"""
    ).format(
        rh=_row_hash("x", task.columns),
        lh=_row_hash("y", task.columns),
        r_from=_from(rs, task.restored, "x"),
        l_from=_from(ls, task.live, "y"),
        r_sample=sample(rs, task.restored, "g.cr > g.cl", "g.cr - g.cl"),
        l_sample=sample(ls, task.live, "g.cl > g.cr", "g.cl - g.cr"),
    )


def run_task(conn: psycopg.Connection, task: RowTask, sample_size: int) -> PartialResult:
    """Run one task's statement and return its counts, samples and changed-column counts."""
    started = time.monotonic()
    params: dict[str, Any] = {"limit": sample_size}
    if task.has_lo:
        params["lo"] = task.lo
    if task.has_hi:
        params["hi"] = task.hi
    out = PartialResult()
    if task.key is not None:
        row = conn.execute(keyed_query(task), params).fetchone()
        assert row is not None
        out.rows_restored, out.rows_live = int(row[0]), int(row[1])
        for i, kind in enumerate(SAMPLE_KINDS):
            out.counts[kind] = int(row[2 + i])
            out.samples[kind] = list(row[5 + i] or [])
        diffs = row[8] or []
        out.changed_columns = {c: int(n) for c, n in zip(task.columns, diffs, strict=False) if n}
    else:
        row = conn.execute(multiset_query(task), params).fetchone()
        assert row is not None
        out.rows_restored, out.rows_live = int(row[0]), int(row[1])
        out.counts["only_in_restored"] = int(row[2])
        out.counts["only_in_live"] = int(row[3])
        out.samples["only_in_restored"] = list(row[4] or [])
        out.samples["only_in_live"] = list(row[5] or [])
    out.seconds = time.monotonic() - started
    return out


def merge(
    table: str, tasks: list[RowTask], parts: list[PartialResult], sample_size: int
) -> TableComparison:
    """Sum the partial results of one table's tasks into its TableComparison."""
    first = tasks[0]
    result = TableComparison(
        table=table,
        rows_restored=sum(p.rows_restored for p in parts),
        rows_live=sum(p.rows_live for p in parts),
        only_in_restored=sum(p.counts["only_in_restored"] for p in parts),
        only_in_live=sum(p.counts["only_in_live"] for p in parts),
        changed=sum(p.counts["changed"] for p in parts),
        has_primary_key=first.key is not None,
        key_columns=list(first.key or []),
        compared_columns=list(first.columns),
        seconds=max((p.seconds for p in parts), default=0.0),
    )
    for kind in SAMPLE_KINDS:
        # parts come in key-range order, each sorted: the first ones overall are the first here
        merged = [s for p in parts for s in p.samples[kind]]
        result.samples[kind] = merged[:sample_size]
    cols: dict[str, int] = {}
    for p in parts:
        for c, n in p.changed_columns.items():
            cols[c] = cols.get(c, 0) + n
    result.changed_columns = {c: cols[c] for c in first.columns if c in cols}
    return result


def key_bounds(conn: psycopg.Connection, task: RowTask, parts: int) -> list[Any]:
    """Up to parts-1 increasing values of the first key column splitting the table evenly."""
    assert task.key is not None
    col = task.restored.column(task.key[0])
    rows = max(task.restored.estimated_rows, 1)
    pct = min(100.0, max(0.5, 20_000 * 100.0 / rows))
    fractions = [i / parts for i in range(1, parts)]
    stmt = sql.SQL(
        "SELECT pg_catalog.percentile_disc(%(f)s::float8[]) WITHIN GROUP (ORDER BY s.k)"
        " FROM (SELECT {c} AS k FROM {src} TABLESAMPLE SYSTEM ({pct})) AS s"
    ).format(
        c=sql.Identifier("x", task.key[0]),
        src=_from(task.restored_schema, task.restored, "x"),
        pct=sql.Literal(round(pct, 3)),
    )
    row = conn.execute(stmt, {"f": fractions}).fetchone()
    values = list(row[0] or []) if row else []
    bounds: list[Any] = []
    for v in values:
        if v is not None and (not bounds or v != bounds[-1]):
            bounds.append(v)
    if col is None or not all(type(b) is type(bounds[0]) for b in bounds):
        return []
    return bounds


def plan_table(
    conn: psycopg.Connection,
    restored_schema: str,
    live_schema: str,
    restored: Table,
    live: Table,
    parallel: int,
) -> list[RowTask]:
    """The tasks comparing one table present on both sides (several key ranges if large)."""
    live_names = {c.name for c in live.columns}
    columns = [c.name for c in restored.columns if c.name in live_names]
    key = restored.primary_key if restored.primary_key == live.primary_key else None
    text_key = False
    if key:
        for k in key:
            rc, lc = restored.column(k), live.column(k)
            if rc is None or lc is None:
                key = None
                break
            if (rc.base_type_schema, rc.base_type_name) != (lc.base_type_schema, lc.base_type_name):
                text_key = True
    base = RowTask(
        table=restored.name,
        restored=restored,
        live=live,
        restored_schema=restored_schema,
        live_schema=live_schema,
        columns=columns,
        key=key or None,
        text_key=text_key,
    )
    if (
        parallel < 2
        or base.key is None
        or text_key
        or max(restored.estimated_rows, live.estimated_rows) < SLICE_MIN_ROWS
    ):
        return [base]
    first = restored.column(base.key[0])
    if first is None or first.base_type_schema != "pg_catalog":
        return [base]
    if first.base_type_name not in _SLICEABLE_TYPES:
        return [base]
    bounds = key_bounds(conn, base, parallel)
    if not bounds:
        return [base]
    edges: list[tuple[bool, Any]] = [(False, None)] + [(True, b) for b in bounds] + [(False, None)]
    tasks = []
    n = len(edges) - 1
    for i in range(n):
        (has_lo, lo), (has_hi, hi) = edges[i], edges[i + 1]
        tasks.append(
            dataclasses.replace(base, lo=lo, hi=hi, has_lo=has_lo, has_hi=has_hi, part=i, parts=n)
        )
    return tasks
