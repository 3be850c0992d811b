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
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql
from psycopg.errors import Error as PsycopgError

from restore_assets.core.ddl.apply import apply
from restore_assets.core.errors import CopyError, server_message
from restore_assets.core.mover.builds import (
    ForeignKeyBuild,
    TableBuilds,
    plan_builds,
    split_foreign_keys,
)
from restore_assets.core.mover.plan import TablePlan, plan_schema

log = logging.getLogger(__name__)

# Bytes gathered from the source before one write to the target.
CHUNK_BYTES = 256 * 1024

# Tables larger than this are copied as block ranges in parallel (at most `workers` ranges).
SPLIT_BYTES = 128 * 1024 * 1024

# A table is cut into ranges only when larger than this many times its even share of the schema.
STRAGGLER = 1.5

# Tables at least this large are loaded with COPY FREEZE (smaller: not worth the extra TRUNCATE).
FREEZE_BYTES = 8 * 1024 * 1024

# Tables at least this large get their index builds side by side; a smaller table's builds run in
# one transaction (one round trip: many small tables are not slowed by it).
PARALLEL_BUILD_BYTES = 32 * 1024 * 1024

# Session settings that make text COPY output parse identically on the other side, and make row
# level security raise an error instead of silently leaving rows out.
_SESSION_SETTINGS = {
    "row_security": "off",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
}

# Target sessions only. Safe: copy_schema ends with a synchronous commit (see _durable).
_TARGET_SETTINGS = {"synchronous_commit": "off"}


@dataclass
class TableCopy:
    """What was copied for one table."""

    schema: str
    table: str
    target_schema: str
    rows: int
    bytes: int
    seconds: float
    format: str  # 'binary' | 'text'
    parts: int = 1  # block ranges copied in parallel
    post_statements: int = 0  # index/constraint builds run right after the copy
    post_seconds: float = 0.0  # their time plus VACUUM ANALYZE
    frozen: bool = False  # loaded with COPY FREEZE into the table truncated in its transaction


@dataclass
class TablePost:
    """The post builds of each table, run by the mover as soon as that table is copied."""

    statements: dict[str, list[str]]  # table name (in the target schema) -> statements
    prefix: list[str] = field(default_factory=list)  # session settings before each batch
    lock_timeout: str = "5s"
    vacuum: bool = True  # VACUUM (ANALYZE) each table after its builds


@dataclass
class CopyReport:
    """The outcome of copying one schema."""

    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    post_applied: list[str] = field(default_factory=list)  # post statements the mover ran
    analyzed: list[str] = field(default_factory=list)  # tables it vacuumed and analyzed

    @property
    def total_rows(self) -> int:
        """Rows copied over all tables."""
        return sum(t.rows for t in self.tables)

    @property
    def total_bytes(self) -> int:
        """COPY stream bytes moved over all tables."""
        return sum(t.bytes for t in self.tables)

    @property
    def table_count(self) -> int:
        """Number of tables copied."""
        return len(self.tables)

    def to_dict(self) -> dict:
        """A JSON-ready dictionary (for audit records and op metadata)."""
        return {
            "tables": [asdict(t) for t in self.tables],
            "seconds": self.seconds,
            "errors": list(self.errors),
            "post_applied": len(self.post_applied),
            "analyzed": len(self.analyzed),
            "total_rows": self.total_rows,
            "total_bytes": self.total_bytes,
            "table_count": self.table_count,
        }


class _Stopped(Exception):
    """Raised inside a worker when another worker failed or the caller cancelled."""


def _configure(conn: psycopg.Connection, extra: dict[str, str] | None = None) -> None:
    for name, value in {**_SESSION_SETTINGS, **(extra or {})}.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def _durable(target_dsn: str) -> None:
    """Commit one transaction that holds an xid, synchronously: the WAL of every earlier
    asynchronous commit of the mover is flushed with it."""
    with psycopg.connect(target_dsn) as conn:
        conn.execute("SELECT pg_catalog.txid_current()")


def _truncate_if_empty(cur: psycopg.Cursor, plan: TablePlan) -> bool:
    """TRUNCATE the target table inside the copy's transaction (so COPY may FREEZE) when that can
    lose nothing: locked, provably empty, referenced by no foreign key. True when it did."""
    name = sql.Identifier(plan.target_schema, plan.table)
    cur.execute(sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(name))
    cur.execute(
        sql.SQL(
            "SELECT NOT EXISTS (SELECT FROM ONLY {})"
            " AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE confrelid = %s::regclass)"
            " AND pg_catalog.has_table_privilege(%s::regclass, 'TRUNCATE')"
        ).format(name),
        (name.as_string(cur), name.as_string(cur)),
    )
    row = cur.fetchone()
    if not (row and row[0]):
        return False
    cur.execute(sql.SQL("TRUNCATE ONLY {}").format(name))
    return True


def _block_filter(blocks: tuple[int, int | None] | None) -> sql.Composable:
    """A WHERE clause selecting the rows of a block range (a TID range scan), or nothing."""
    if blocks is None:
        return sql.SQL("")
    first, end = blocks
    clause = sql.SQL(" WHERE ctid >= {}::tid").format(sql.Literal(f"({first},0)"))
    if end is not None:
        clause += sql.SQL(" AND ctid < {}::tid").format(sql.Literal(f"({end},0)"))
    return clause


def _copy_table(
    src: psycopg.Connection,
    tgt: psycopg.Connection,
    plan: TablePlan,
    should_stop: Callable[[], bool],
    blocks: tuple[int, int | None] | None = None,
    freeze: bool = False,
) -> TableCopy:
    """Stream one table (or one block range of it) from src to tgt inside one target transaction;
    with `freeze`, a whole table is loaded frozen when _truncate_if_empty allows it."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in plan.columns)
    fmt = sql.SQL("binary" if plan.format == "binary" else "text")
    src_name = sql.Identifier(plan.schema, plan.table)
    tgt_name = sql.Identifier(plan.target_schema, plan.table)
    where = _block_filter(blocks)
    if plan.columns:
        copy_out = sql.SQL("COPY (SELECT {} FROM ONLY {}{}) TO STDOUT (FORMAT {})").format(
            cols, src_name, where, fmt
        )
        into: sql.Composable = sql.SQL("{} ({})").format(tgt_name, cols)
    else:
        copy_out = sql.SQL("COPY (SELECT FROM ONLY {}{}) TO STDOUT (FORMAT {})").format(
            src_name, where, fmt
        )
        into = tgt_name

    started = time.monotonic()
    nbytes = 0
    with tgt.transaction(), tgt.cursor() as tcur, src.cursor() as scur:
        frozen = (
            freeze
            and blocks is None
            and plan.size_bytes >= FREEZE_BYTES
            and _truncate_if_empty(tcur, plan)
        )
        copy_in = sql.SQL("COPY {} FROM STDIN (FORMAT {}{})").format(
            into, fmt, sql.SQL(", FREEZE") if frozen else sql.SQL("")
        )
        # Open the target side first: a missing or mismatched target table fails before any
        # data is read from the source.
        with tcur.copy(copy_in) as cin, scur.copy(copy_out) as cout:
            buf = bytearray()
            for data in cout:
                buf += data
                if len(buf) >= CHUNK_BYTES:
                    if should_stop():
                        raise _Stopped()
                    cin.write(buf)
                    nbytes += len(buf)
                    buf = bytearray()
            if buf:
                cin.write(buf)
                nbytes += len(buf)
        rows = tcur.rowcount
    return TableCopy(
        schema=plan.schema,
        table=plan.table,
        target_schema=plan.target_schema,
        rows=max(rows, 0),
        bytes=nbytes,
        seconds=round(time.monotonic() - started, 6),
        format=plan.format,
        frozen=frozen,
    )


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


@dataclass
class _Building:
    """A copied table whose builds are under way."""

    plan: TablePlan
    done: TableCopy
    builds: TableBuilds
    statements: list[str]
    started: float
    open_indexes: int = 0


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
