"""The mover's builders: each copied table's post builds, run while the other tables still copy.

A table is handed over (``Builders.queue``) as soon as its last range is copied. Its index builds
(``builds.plan_builds``) wait in one queue, the costliest first; after its last one, the table's
final step (constraints attached, the other statements, VACUUM ANALYZE) is queued ahead of every
index build; then the table is complete. A foreign key between two tables of the copy is added
once both are complete, one at a time per table (each locks both of its tables). The builders
share the copy's lock, condition and failure (``mover._SchemaCopyRun``).
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from restore_assets.core.ddl.apply import apply
from restore_assets.core.errors import server_message
from restore_assets.core.mover.builds import ForeignKeyBuild, TableBuilds
from restore_assets.core.mover.model import TableCopy, TablePost
from restore_assets.core.mover.plan import TablePlan
from restore_assets.core.mover.schedule import _index_costs, _table_builds
from restore_assets.core.mover.table_copy import _TARGET_SETTINGS, _configure

if TYPE_CHECKING:
    from restore_assets.core.mover.mover import _SchemaCopyRun

# What a builder is handed: one index build (its statements), a foreign key, or None: the final
# step of the table.
_Job = list[str] | ForeignKeyBuild | None


@dataclass
class _Building:
    """A copied table whose builds are under way."""

    plan: TablePlan
    done: TableCopy
    builds: TableBuilds
    statements: list[str]  # all of the table's post statements, as given (for the report)
    started: float
    open_indexes: int = 0  # index builds not yet ended


class Builders:
    """The post builds of one schema copy: what waits for a builder, and the builders' work."""

    def __init__(
        self,
        run: _SchemaCopyRun,
        coord: psycopg.Connection,
        plans: list[TablePlan],
        post: TablePost,
        parallel_build_bytes: int,
    ) -> None:
        """Cut each table's builds; `coord` (the source) gives the order of the index builds."""
        self.run = run
        self.post = post
        self.builds: dict[str, TableBuilds] = {
            p.table: _table_builds(p, post.statements.get(p.table) or [], parallel_build_bytes)
            for p in plans
        }
        # the costliest indexes (on the source) are built first: the longest builds start earliest
        self.index_costs = _index_costs(coord, run.schema) if self.builds else {}
        # builds waiting for a builder: (final first, larger index first, order, table, one index
        # build or None: the table's final step)
        self.jobs: list[tuple[int, int, int, str, list[str] | None]] = []
        self.order = itertools.count()
        self.building: dict[str, _Building] = {}
        self.unbuilt = len(plans)  # tables whose builds have not ended
        # foreign keys between two tables copied here: added once both are complete, one at a
        # time per table (each locks both of its tables)
        names = {p.table for p in plans}
        self.keys_waiting = [
            (table, key)
            for table, b in self.builds.items()
            for key in b.foreign_keys
            if key.referenced in names
        ]
        self.keys_ready: list[tuple[str, ForeignKeyBuild]] = []
        self.keys_left = len(self.keys_waiting)
        self.locked: set[str] = set()  # the tables of the keys being added
        self.complete_tables: set[str] = set()

    def queue(self, plan: TablePlan, done: TableCopy) -> None:
        """Queue a copied table's index builds (or, with none, its final step) for a builder."""
        table_builds = self.builds[plan.table]
        with self.run.lock:
            state = _Building(
                plan,
                done,
                table_builds,
                self.post.statements.get(plan.table) or [],
                time.monotonic(),
                len(table_builds.indexes),
            )
            self.building[plan.table] = state
            for index in table_builds.indexes:
                cost = self.index_costs.get((plan.table, index.name), 0)
                heapq.heappush(
                    self.jobs, (1, -cost, next(self.order), plan.table, index.statements)
                )
            if not table_builds.indexes:
                heapq.heappush(self.jobs, (0, 0, next(self.order), plan.table, None))
            self.run.wake.notify_all()

    def builder(self) -> None:
        """One builder thread: run jobs until none is left or the copy stops."""
        # the builds run on connections of their own: the dump's session settings must not stay
        # on a copying one
        conn: psycopg.Connection | None = None
        state: _Building | None = None
        try:
            while (job := self._next_job()) is not None:
                state, statements = job
                if conn is None:
                    conn = psycopg.connect(self.run.target_dsn, autocommit=True)
                    _configure(conn, _TARGET_SETTINGS)
                if statements is None:
                    self._build_final(conn, state)
                elif isinstance(statements, ForeignKeyBuild):
                    self._add_key(conn, state, statements)
                else:
                    self._build_one(conn, state, statements)
                state = None
        except Exception as exc:
            where = (
                f" of {state.plan.schema}.{state.plan.table} into"
                f" {state.plan.target_schema}.{state.plan.table}"
                if state is not None
                else ""
            )
            self.run.fail(f"post builds{where} failed: {server_message(exc)}")
        finally:
            if conn is not None:
                conn.close()

    def _free_key(self) -> tuple[str, ForeignKeyBuild] | None:
        """A ready foreign key whose two tables no other key holds (the caller holds the lock)."""
        for i, (table, key) in enumerate(self.keys_ready):
            if table not in self.locked and key.referenced not in self.locked:
                self.locked.update((table, key.referenced))
                return self.keys_ready.pop(i)
        return None

    def _next_job(self) -> tuple[_Building, _Job] | None:
        """The next job (a ready foreign key first), waiting for one; None once all are done."""
        with self.run.lock:
            while not self.run.should_stop():
                key = self._free_key()
                if key is not None:
                    return self.building[key[0]], key[1]
                if self.jobs:
                    *_rank, table, statements = heapq.heappop(self.jobs)
                    return self.building[table], statements
                if self.unbuilt == 0 and self.keys_left == 0:
                    return None
                self.run.wake.wait(1.0)
            return None

    def _add_key(self, conn: psycopg.Connection, state: _Building, key: ForeignKeyBuild) -> None:
        """One foreign key between two complete tables."""
        try:
            apply(conn, self.post.prefix + key.statements, lock_timeout=self.post.lock_timeout)
        finally:
            with self.run.lock:
                self.locked.difference_update((state.plan.table, key.referenced))
                self.run.wake.notify_all()
        with self.run.lock:
            self.run.report.post_applied.append(key.statement)
            self.keys_left -= 1
            self.run.wake.notify_all()

    def _build_one(self, conn: psycopg.Connection, state: _Building, statements: list[str]) -> None:
        """One index build of a table; its final step is queued after the last one."""
        apply(conn, self.post.prefix + statements, lock_timeout=self.post.lock_timeout)
        with self.run.lock:
            state.open_indexes -= 1
            if state.open_indexes == 0:
                heapq.heappush(self.jobs, (0, 0, next(self.order), state.plan.table, None))
                self.run.wake.notify_all()

    def _build_final(self, conn: psycopg.Connection, state: _Building) -> None:
        """Attach the keys, run the other statements, VACUUM ANALYZE; the table is complete."""
        if state.builds.final:
            apply(conn, self.post.prefix + state.builds.final, lock_timeout=self.post.lock_timeout)
        name = sql.Identifier(state.plan.target_schema, state.plan.table)
        if self.post.vacuum:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(name))
        else:
            conn.execute(sql.SQL("ANALYZE {}").format(name))
        report = self.run.report
        with self.run.lock:
            state.done.post_statements = len(state.statements)
            state.done.post_seconds = round(time.monotonic() - state.started, 6)
            own = {k.statement for k in state.builds.foreign_keys}
            report.post_applied += [s for s in state.statements if s not in own]
            report.analyzed.append(state.plan.table)
            self.run.complete(state.done)
            self.unbuilt -= 1
            self.complete_tables.add(state.plan.table)
            for entry in [
                e for e in self.keys_waiting if {e[0], e[1].referenced} <= self.complete_tables
            ]:
                self.keys_waiting.remove(entry)
                self.keys_ready.append(entry)
            self.run.wake.notify_all()
