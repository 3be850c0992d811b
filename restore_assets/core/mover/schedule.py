"""What the mover's workers and builders are handed: whole tables or block ranges to copy, and
each table's builds, ordered by what they cost."""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg

from restore_assets.core.mover.builds import TableBuilds, plan_builds, split_foreign_keys
from restore_assets.core.mover.plan import TablePlan

# Tables larger than this are copied as block ranges in parallel (at most `workers` ranges).
SPLIT_BYTES = 128 * 1024 * 1024

# A table is cut into ranges only when larger than this many times its even share of the schema.
STRAGGLER = 1.5

# Tables at least this large get their index builds side by side; a smaller table's builds run in
# one transaction (one round trip: many small tables are not slowed by it).
PARALLEL_BUILD_BYTES = 32 * 1024 * 1024


@dataclass
class _Item:
    """One unit of work: a whole table, or one block range of a split table."""

    plan: TablePlan
    blocks: tuple[int, int | None] | None = None


def _work_items(
    plans: list[TablePlan], blocks: dict[str, int], workers: int, split_bytes: int
) -> list[_Item]:
    """Whole tables, and block ranges (up to `workers`) of a table that would hold the copy up.

    A table is cut only when it is larger than split_bytes and than STRAGGLER times its even share
    of the schema (the total over the workers): copied whole, it is loaded frozen, so tables of
    comparable sizes are each copied whole, side by side, as pgcopydb does.
    """
    share = sum(p.size_bytes for p in plans) / workers
    items: list[_Item] = []
    for plan in plans:
        nblocks = blocks.get(plan.table, 0)
        limit = max(split_bytes, share)
        parts = 1
        if split_bytes > 0 and plan.size_bytes > max(split_bytes, STRAGGLER * share):
            parts = min(workers, math.ceil(plan.size_bytes / limit), nblocks)
        if parts <= 1:
            items.append(_Item(plan))
            continue
        step = math.ceil(nblocks / parts)
        for i in range(parts):
            # the last range is open-ended: nothing past the block count at plan time is missed
            end = None if i == parts - 1 else (i + 1) * step
            items.append(_Item(plan, (i * step, end)))
    return items


# How much longer than a btree an index of the same size takes to build, by access method.
_BUILD_WEIGHT = {"gin": 8, "gist": 8, "spgist": 4}


def _index_costs(conn: psycopg.Connection, schema: str) -> dict[tuple[str, str], int]:
    """(table, index) -> the index's size on the source, weighted by how slow its kind is to build
    (a restored index keeps its name): the order of the builds, nothing else."""
    rows = conn.execute(
        "SELECT t.relname, i.relname, pg_catalog.pg_relation_size(i.oid)"
        " * CASE a.amname WHEN 'gin' THEN %s WHEN 'gist' THEN %s WHEN 'spgist' THEN %s ELSE 1 END"
        " FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_catalog.pg_am a ON a.oid = i.relam"
        " JOIN pg_catalog.pg_class t ON t.oid = x.indrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %s",
        (_BUILD_WEIGHT["gin"], _BUILD_WEIGHT["gist"], _BUILD_WEIGHT["spgist"], schema),
    ).fetchall()
    return {(table, index): int(size) for table, index, size in rows}


def _relation_blocks(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT c.relname, (pg_catalog.pg_relation_size(c.oid)"
        " / pg_catalog.current_setting('block_size')::int)::bigint"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (schema, tables),
    ).fetchall()
    return {name: int(n) for name, n in rows}


def _table_builds(plan: TablePlan, statements: list[str], parallel_bytes: int) -> TableBuilds:
    """A large table's builds cut to run side by side; a small table's in one transaction; its
    foreign keys onto tables of the schema apart."""
    own, foreign_keys = split_foreign_keys(statements, plan.target_schema, plan.table)
    if own and plan.size_bytes >= parallel_bytes > 0:
        builds = plan_builds(own, plan.target_schema)
    else:
        builds = TableBuilds(final=own)
    builds.foreign_keys = foreign_keys
    return builds
