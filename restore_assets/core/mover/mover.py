"""The parallel COPY mover: stream every table of a schema from one database into another.

As pgcopydb does: largest tables first on N copy workers that all read one exported snapshot; a
table larger than ``split_bytes`` (and than its share of the schema) is cut into block (ctid) ranges
copied in parallel; a table copied whole is loaded with ``COPY ... FREEZE`` after a TRUNCATE of the
empty table in the same transaction, so it needs no second pass to set hint bits and visibility.
When the caller passes each table's *post* builds (indexes, primary/unique/check/exclusion
constraints), they are queued as soon as the table's last range is copied, and N builders run them
while the other tables still copy: a large table's indexes and keys are built side by side (see
``builds``), then its constraints are attached and VACUUM ANALYZE runs. The target sessions commit
asynchronously (``synchronous_commit = off``: session level, a server setting is never changed); one
synchronous commit at the end makes all of it durable before the mover returns. Any failure stops
every worker and raises CopyError (the caller drops the schema).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql
from psycopg.errors import Error as PsycopgError

from restore_assets.core.ddl.apply import apply
from restore_assets.core.errors import CopyError, server_message
from restore_assets.core.mover.builds import ForeignKeyBuild
from restore_assets.core.mover.model import CopyReport, TableCopy, TablePost
from restore_assets.core.mover.plan import TablePlan, plan_schema
from restore_assets.core.mover.schedule import (
    PARALLEL_BUILD_BYTES,
    SPLIT_BYTES,
    _Building,
    _index_costs,
    _Item,
    _relation_blocks,
    _table_builds,
    _work_items,
)
from restore_assets.core.mover.table_copy import (
    _TARGET_SETTINGS,
    _configure,
    _copy_table,
    _durable,
    _Stopped,
)

__all__ = ["CopyReport", "TableCopy", "TablePost", "copy_schema"]

log = logging.getLogger(__name__)


def copy_schema(
    source_dsn: str,
    target_dsn: str,
    schema: str,
    target_schema: str,
    *,
    workers: int = 4,
    tables: list[str] | None = None,
    progress: Callable[[TableCopy], None] | None = None,
    cancel: threading.Event | None = None,
    post: TablePost | None = None,
    split_bytes: int = SPLIT_BYTES,
    parallel_build_bytes: int = PARALLEL_BUILD_BYTES,
) -> CopyReport:
    """Copy the rows of every table of `schema` (source) into `target_schema` (target).

    With `post`, each table's builds (and VACUUM ANALYZE) run as soon as its copy ends, on up to
    `workers` builder connections; the statements run are listed in the report's `post_applied`,
    the tables in `analyzed`. A table is reported (and `progress` called) once it is complete.
    """
    if workers < 1:
        raise CopyError(f"workers must be at least 1, got {workers}")
    started = time.monotonic()
    report = CopyReport()

    try:
        coord = psycopg.connect(source_dsn)
    except PsycopgError as exc:
        raise CopyError(f"cannot connect to the source database: {server_message(exc)}") from exc
    with coord:
        coord.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        coord.read_only = True
        _configure(coord)
        plans = plan_schema(coord, schema, target_schema, tables)
        snapshot: str | None
        try:
            snapshot = coord.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        except PsycopgError as exc:  # e.g. a server that cannot export snapshots
            log.warning("no shared snapshot, each worker reads its own: %s", exc)
            coord.rollback()
            snapshot = None
        # ranges need every worker to read the same snapshot
        blocks = _relation_blocks(coord, schema, [p.table for p in plans]) if snapshot else {}
        queue = _work_items(plans, blocks, workers, split_bytes if snapshot else 0)
        remaining = {p.table: 0 for p in plans}
        for item in queue:
            remaining[item.plan.table] += 1
        builds = {
            p.table: _table_builds(p, post.statements.get(p.table) or [], parallel_build_bytes)
            for p in plans
            if post is not None
        }
        # the costliest indexes (on the source) are built first: the longest builds start earliest
        index_costs = _index_costs(coord, schema) if builds else {}
        partial: dict[str, TableCopy] = {}
        lock = threading.Lock()
        wake = threading.Condition(lock)
        failed = threading.Event()
        # builds waiting for a builder: (final first, larger index first, order, table, one index
        # build or None: the table's final step)
        jobs: list[tuple[int, int, int, str, list[str] | None]] = []
        order = itertools.count()
        building: dict[str, _Building] = {}
        unbuilt = [len(plans) if post is not None else 0]  # tables whose builds have not ended
        # foreign keys between two tables copied here: added once both are complete, one at a
        # time per table (each locks both of its tables)
        names = {p.table for p in plans}
        keys_waiting = [
            (table, key)
            for table, b in builds.items()
            for key in b.foreign_keys
            if key.referenced in names
        ]
        keys_ready: list[tuple[str, ForeignKeyBuild]] = []
        keys_left = [len(keys_waiting)]
        locked: set[str] = set()
        complete_tables: set[str] = set()

        def should_stop() -> bool:
            return failed.is_set() or (cancel is not None and cancel.is_set())

        def next_item() -> _Item | None:
            with lock:
                return queue.pop(0) if queue and not should_stop() else None

        def fail(message: str) -> None:
            with lock:
                report.errors.append(message)
                failed.set()
                wake.notify_all()

        def finished(item: _Item, part: TableCopy) -> TableCopy | None:
            """Merge a range into its table's total; the table's TableCopy once all are done."""
            with lock:
                total = partial.get(item.plan.table)
                if total is None:
                    partial[item.plan.table] = total = part
                    total.parts = 0
                else:
                    total.rows += part.rows
                    total.bytes += part.bytes
                    total.seconds = max(total.seconds, part.seconds)
                total.parts += 1
                remaining[item.plan.table] -= 1
                return total if remaining[item.plan.table] == 0 else None

        def complete(done: TableCopy) -> None:
            """Report a table whose copy (and builds) ended; the caller holds the lock."""
            report.tables.append(done)
            if progress is not None:
                progress(done)

        def queue_builds(plan: TablePlan, done: TableCopy) -> None:
            """Queue a copied table's index builds (or, with none, its final step) for a builder."""
            table_builds = builds[plan.table]
            with lock:
                state = _Building(
                    plan,
                    done,
                    table_builds,
                    post.statements.get(plan.table) or [] if post is not None else [],
                    time.monotonic(),
                    len(table_builds.indexes),
                )
                building[plan.table] = state
                for index in table_builds.indexes:
                    cost = index_costs.get((plan.table, index.name), 0)
                    heapq.heappush(jobs, (1, -cost, next(order), plan.table, index.statements))
                if not table_builds.indexes:
                    heapq.heappush(jobs, (0, 0, next(order), plan.table, None))
                wake.notify_all()

        def worker() -> None:
            item: _Item | None = None
            try:
                with (
                    psycopg.connect(source_dsn) as src,
                    psycopg.connect(target_dsn, autocommit=True) as tgt,
                ):
                    src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                    src.read_only = True
                    if snapshot:
                        src.execute(
                            sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot))
                        )
                    _configure(src)
                    _configure(tgt, _TARGET_SETTINGS)
                    try:
                        tgt.execute("SET session_replication_role = replica")
                    except PsycopgError as exc:
                        raise CopyError(
                            "cannot SET session_replication_role = replica on the target"
                            f" ({server_message(exc)}): connect as a superuser or a role"
                            " granted SET on that parameter"
                        ) from exc
                    while (item := next_item()) is not None:
                        part = _copy_table(
                            src, tgt, item.plan, should_stop, item.blocks, freeze=True
                        )
                        done = finished(item, part)
                        if done is not None and post is not None:
                            queue_builds(item.plan, done)
                        elif done is not None:
                            with lock:
                                complete(done)
                        item = None
            except _Stopped:
                return
            except CopyError as exc:
                fail(str(exc))
            except Exception as exc:
                if item is not None:
                    fail(
                        f"copy of {item.plan.schema}.{item.plan.table} into"
                        f" {item.plan.target_schema}.{item.plan.table} failed:"
                        f" {server_message(exc)}"
                    )
                else:
                    fail(f"copy worker failed: {server_message(exc)}")

        def free_key() -> tuple[str, ForeignKeyBuild] | None:
            """A ready foreign key whose two tables no other key holds (the caller holds the lock)."""
            for i, (table, key) in enumerate(keys_ready):
                if table not in locked and key.referenced not in locked:
                    locked.update((table, key.referenced))
                    return keys_ready.pop(i)
            return None

        def next_job() -> tuple[_Building, list[str] | ForeignKeyBuild | None] | None:
            with lock:
                while not should_stop():
                    key = free_key()
                    if key is not None:
                        return building[key[0]], key[1]
                    if jobs:
                        *_rank, table, statements = heapq.heappop(jobs)
                        return building[table], statements
                    if unbuilt[0] == 0 and keys_left[0] == 0:
                        return None
                    wake.wait(1.0)
                return None

        def add_key(conn: psycopg.Connection, state: _Building, key: ForeignKeyBuild) -> None:
            """One foreign key between two complete tables."""
            assert post is not None
            try:
                apply(conn, post.prefix + key.statements, lock_timeout=post.lock_timeout)
            finally:
                with lock:
                    locked.difference_update((state.plan.table, key.referenced))
                    wake.notify_all()
            with lock:
                report.post_applied.append(key.statement)
                keys_left[0] -= 1
                wake.notify_all()

        def build_one(conn: psycopg.Connection, state: _Building, statements: list[str]) -> None:
            """One index build of a table; its final step is queued after the last one."""
            assert post is not None
            apply(conn, post.prefix + statements, lock_timeout=post.lock_timeout)
            with lock:
                state.open_indexes -= 1
                if state.open_indexes == 0:
                    heapq.heappush(jobs, (0, 0, next(order), state.plan.table, None))
                    wake.notify_all()

        def build_final(conn: psycopg.Connection, state: _Building) -> None:
            """Attach the keys, run the other statements, VACUUM ANALYZE; the table is complete."""
            assert post is not None
            if state.builds.final:
                apply(conn, post.prefix + state.builds.final, lock_timeout=post.lock_timeout)
            name = sql.Identifier(state.plan.target_schema, state.plan.table)
            if post.vacuum:
                conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(name))
            else:
                conn.execute(sql.SQL("ANALYZE {}").format(name))
            with lock:
                state.done.post_statements = len(state.statements)
                state.done.post_seconds = round(time.monotonic() - state.started, 6)
                own = {k.statement for k in state.builds.foreign_keys}
                report.post_applied += [s for s in state.statements if s not in own]
                report.analyzed.append(state.plan.table)
                complete(state.done)
                unbuilt[0] -= 1
                complete_tables.add(state.plan.table)
                for entry in [
                    e for e in keys_waiting if {e[0], e[1].referenced} <= complete_tables
                ]:
                    keys_waiting.remove(entry)
                    keys_ready.append(entry)
                wake.notify_all()

        def builder() -> None:
            # the builds run on connections of their own: the dump's session settings must not
            # stay on a copying one
            conn: psycopg.Connection | None = None
            state: _Building | None = None
            try:
                while (job := next_job()) is not None:
                    state, statements = job
                    if conn is None:
                        conn = psycopg.connect(target_dsn, autocommit=True)
                        _configure(conn, _TARGET_SETTINGS)
                    if statements is None:
                        build_final(conn, state)
                    elif isinstance(statements, ForeignKeyBuild):
                        add_key(conn, state, statements)
                    else:
                        build_one(conn, state, statements)
                    state = None
            except Exception as exc:
                where = (
                    f" of {state.plan.schema}.{state.plan.table} into"
                    f" {state.plan.target_schema}.{state.plan.table}"
                    if state is not None
                    else ""
                )
                fail(f"post builds{where} failed: {server_message(exc)}")
            finally:
                if conn is not None:
                    conn.close()

        threads = [
            threading.Thread(target=worker, name=f"copy-{schema}-{i}", daemon=True)
            for i in range(min(workers, len(queue)))
        ]
        if post is not None and plans:
            # as many builders as workers, even for one table: its index builds run side by side
            # (a builder connects at its first job)
            threads += [
                threading.Thread(target=builder, name=f"build-{schema}-{i}", daemon=True)
                for i in range(workers)
            ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    report.seconds = round(time.monotonic() - started, 6)
    if report.errors:
        err = CopyError(report.errors[0])
        err.report = report  # type: ignore[attr-defined]
        raise err
    if cancel is not None and cancel.is_set() and len(report.tables) < len(plans):
        err = CopyError(
            f"copy of schema {schema} cancelled after {len(report.tables)} of {len(plans)} tables"
        )
        report.errors.append(str(err))
        err.report = report  # type: ignore[attr-defined]
        raise err
    if report.tables:
        try:
            _durable(target_dsn)
        except PsycopgError as exc:
            raise CopyError(f"cannot commit the copy durably: {server_message(exc)}") from exc
    report.tables.sort(key=lambda t: t.table)
    return report
