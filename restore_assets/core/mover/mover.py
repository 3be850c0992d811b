"""The parallel COPY mover: stream every table of a schema from one database into another.

As pgcopydb does: largest tables first on N copy workers that all read one exported snapshot; a
table larger than ``split_bytes`` (and than its share of the schema) is cut into block (ctid) ranges
copied in parallel; a table copied whole is loaded with ``COPY ... FREEZE`` after a TRUNCATE of the
empty table in the same transaction, so it needs no second pass to set hint bits and visibility.
When the caller passes each table's *post* builds (indexes, primary/unique/check/exclusion
constraints), they are queued as soon as the table's last range is copied, and N builders run them
while the other tables still copy (``builders``): a large table's indexes and keys are built side
by side (see ``builds``), then its constraints are attached and VACUUM ANALYZE runs. The target
sessions commit asynchronously (``synchronous_commit = off``: session level, a server setting is
never changed); one synchronous commit at the end makes all of it durable before the mover returns.
Any failure stops every worker and raises CopyError (the caller drops the schema).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql
from psycopg.errors import Error as PsycopgError

from restore_assets.core.errors import CopyError, server_message
from restore_assets.core.mover.builders import Builders
from restore_assets.core.mover.model import CopyReport, TableCopy, TablePost
from restore_assets.core.mover.plan import TablePlan, plan_schema
from restore_assets.core.mover.schedule import (
    PARALLEL_BUILD_BYTES,
    SPLIT_BYTES,
    _Item,
    _relation_blocks,
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
    run = _SchemaCopyRun(source_dsn, target_dsn, schema, workers, progress, cancel)
    try:
        coord = psycopg.connect(source_dsn)
    except PsycopgError as exc:
        raise CopyError(f"cannot connect to the source database: {server_message(exc)}") from exc
    # the coordinator's open transaction keeps the exported snapshot until every thread has ended
    with coord:
        run.plan(coord, target_schema, tables, post, split_bytes, parallel_build_bytes)
        run.start_and_join()
    return run.outcome()


class _SchemaCopyRun:
    """One copy_schema call: the state its copy workers and builders share, and the workers."""

    def __init__(
        self,
        source_dsn: str,
        target_dsn: str,
        schema: str,
        workers: int,
        progress: Callable[[TableCopy], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        self.started = time.monotonic()
        self.source_dsn = source_dsn
        self.target_dsn = target_dsn
        self.schema = schema
        self.workers = workers
        self.progress = progress
        self.cancel = cancel
        self.report = CopyReport()
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.failed = threading.Event()
        # set by plan()
        self.plans: list[TablePlan] = []
        self.snapshot: str | None = None
        self.queue: list[_Item] = []  # tables and ranges waiting for a copy worker
        self.remaining: dict[str, int] = {}  # table -> its items not yet copied
        self.partial: dict[str, TableCopy] = {}  # table -> the sum of its copied ranges
        self.builders: Builders | None = None  # with post builds only

    def plan(
        self,
        coord: psycopg.Connection,
        target_schema: str,
        tables: list[str] | None,
        post: TablePost | None,
        split_bytes: int,
        parallel_build_bytes: int,
    ) -> None:
        """Plan the copy on `coord` (the source's coordinator): tables, snapshot, ranges, builds."""
        coord.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        coord.read_only = True
        _configure(coord)
        self.plans = plans = plan_schema(coord, self.schema, target_schema, tables)
        snapshot: str | None
        try:
            snapshot = coord.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        except PsycopgError as exc:  # e.g. a server that cannot export snapshots
            log.warning("no shared snapshot, each worker reads its own: %s", exc)
            coord.rollback()
            snapshot = None
        self.snapshot = snapshot
        # ranges need every worker to read the same snapshot
        blocks = _relation_blocks(coord, self.schema, [p.table for p in plans]) if snapshot else {}
        self.queue = _work_items(plans, blocks, self.workers, split_bytes if snapshot else 0)
        self.remaining = {p.table: 0 for p in plans}
        for item in self.queue:
            self.remaining[item.plan.table] += 1
        if post is not None:
            self.builders = Builders(self, coord, plans, post, parallel_build_bytes)

    def start_and_join(self) -> None:
        """Run the copy workers and the builders until all have ended."""
        threads = [
            threading.Thread(target=self.copy_worker, name=f"copy-{self.schema}-{i}", daemon=True)
            for i in range(min(self.workers, len(self.queue)))
        ]
        if self.builders is not None and self.plans:
            # as many builders as workers, even for one table: its index builds run side by side
            # (a builder connects at its first job)
            threads += [
                threading.Thread(
                    target=self.builders.builder, name=f"build-{self.schema}-{i}", daemon=True
                )
                for i in range(self.workers)
            ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def outcome(self) -> CopyReport:
        """The report once every thread has ended; CopyError on a failure or a cancel."""
        report = self.report
        report.seconds = round(time.monotonic() - self.started, 6)
        if report.errors:
            err = CopyError(report.errors[0])
            err.report = report  # type: ignore[attr-defined]
            raise err
        if self._cancelled() and len(report.tables) < len(self.plans):
            err = CopyError(
                f"copy of schema {self.schema} cancelled after {len(report.tables)}"
                f" of {len(self.plans)} tables"
            )
            report.errors.append(str(err))
            err.report = report  # type: ignore[attr-defined]
            raise err
        if report.tables:
            try:
                _durable(self.target_dsn)
            except PsycopgError as exc:
                raise CopyError(f"cannot commit the copy durably: {server_message(exc)}") from exc
        report.tables.sort(key=lambda t: t.table)
        return report

    def should_stop(self) -> bool:
        """Whether a worker or builder failed, or the caller cancelled."""
        return self.failed.is_set() or self._cancelled()

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def fail(self, message: str) -> None:
        """Record a failure and stop every worker and builder."""
        with self.lock:
            self.report.errors.append(message)
            self.failed.set()
            self.wake.notify_all()

    def complete(self, done: TableCopy) -> None:
        """Report a table whose copy (and builds) ended; the caller holds the lock."""
        self.report.tables.append(done)
        if self.progress is not None:
            self.progress(done)

    def copy_worker(self) -> None:
        """One copy worker thread: copy tables and ranges until none is left or the copy stops."""
        item: _Item | None = None
        try:
            with (
                psycopg.connect(self.source_dsn) as src,
                psycopg.connect(self.target_dsn, autocommit=True) as tgt,
            ):
                self._open_sessions(src, tgt)
                while (item := self._next_item()) is not None:
                    # looked up here, at call time: tests/run_paused.py replaces it
                    part = _copy_table(
                        src, tgt, item.plan, self.should_stop, item.blocks, freeze=True
                    )
                    done = self._finished(item, part)
                    if done is not None and self.builders is not None:
                        self.builders.queue(item.plan, done)
                    elif done is not None:
                        with self.lock:
                            self.complete(done)
                    item = None
        except _Stopped:
            return
        except CopyError as exc:
            self.fail(str(exc))
        except Exception as exc:
            if item is not None:
                self.fail(
                    f"copy of {item.plan.schema}.{item.plan.table} into"
                    f" {item.plan.target_schema}.{item.plan.table} failed:"
                    f" {server_message(exc)}"
                )
            else:
                self.fail(f"copy worker failed: {server_message(exc)}")

    def _open_sessions(self, src: psycopg.Connection, tgt: psycopg.Connection) -> None:
        """A worker's source session on the shared snapshot; its target session without triggers."""
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        if self.snapshot:
            src.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)))
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

    def _next_item(self) -> _Item | None:
        """The next table or range to copy; None when none is left or the copy stops."""
        with self.lock:
            return self.queue.pop(0) if self.queue and not self.should_stop() else None

    def _finished(self, item: _Item, part: TableCopy) -> TableCopy | None:
        """Merge a range into its table's total; the table's TableCopy once all are done."""
        with self.lock:
            total = self.partial.get(item.plan.table)
            if total is None:
                self.partial[item.plan.table] = total = part
                total.parts = 0
            else:
                total.rows += part.rows
                total.bytes += part.bytes
                total.seconds = max(total.seconds, part.seconds)
            total.parts += 1
            self.remaining[item.plan.table] -= 1
            return total if self.remaining[item.plan.table] == 0 else None
