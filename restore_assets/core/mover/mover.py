"""The parallel COPY mover: stream every table of a schema from one database into another.

As pgcopydb does: largest tables first on N workers that all read one exported snapshot; a table
larger than ``split_bytes`` is cut into block (ctid) ranges copied in parallel; and, when the caller
passes each table's *post* builds (indexes, primary/unique/check/exclusion constraints), the worker
that finishes a table's last range builds them and runs VACUUM ANALYZE on it at once, while the other
workers still copy. Any failure stops every worker and raises CopyError (the caller drops the schema).
"""

from __future__ import annotations

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
from restore_assets.core.errors import CopyError
from restore_assets.core.mover.plan import TablePlan, plan_schema

log = logging.getLogger(__name__)

# Bytes gathered from the source before one write to the target.
CHUNK_BYTES = 256 * 1024

# Tables larger than this are copied as block ranges in parallel (at most `workers` ranges).
SPLIT_BYTES = 128 * 1024 * 1024

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


def _configure(conn: psycopg.Connection) -> None:
    for name, value in _SESSION_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def _server_message(exc: BaseException) -> str:
    if isinstance(exc, PsycopgError) and exc.diag.message_primary:
        msg = exc.diag.message_primary
        if exc.diag.message_detail:
            msg += f" ({exc.diag.message_detail})"
        return msg
    return str(exc).strip() or type(exc).__name__


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
) -> TableCopy:
    """Stream one table (or one block range of it) from src to tgt inside one target transaction."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in plan.columns)
    fmt = sql.SQL("binary" if plan.format == "binary" else "text")
    src_name = sql.Identifier(plan.schema, plan.table)
    tgt_name = sql.Identifier(plan.target_schema, plan.table)
    where = _block_filter(blocks)
    if plan.columns:
        copy_out = sql.SQL("COPY (SELECT {} FROM ONLY {}{}) TO STDOUT (FORMAT {})").format(
            cols, src_name, where, fmt
        )
        copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(tgt_name, cols, fmt)
    else:
        copy_out = sql.SQL("COPY (SELECT FROM ONLY {}{}) TO STDOUT (FORMAT {})").format(
            src_name, where, fmt
        )
        copy_in = sql.SQL("COPY {} FROM STDIN (FORMAT {})").format(tgt_name, fmt)

    started = time.monotonic()
    nbytes = 0
    with tgt.transaction(), tgt.cursor() as tcur, src.cursor() as scur:
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
    )


@dataclass
class _Item:
    """One unit of work: a whole table, or one block range of a split table."""

    plan: TablePlan
    blocks: tuple[int, int | None] | None = None


def _work_items(
    plans: list[TablePlan], blocks: dict[str, int], workers: int, split_bytes: int
) -> list[_Item]:
    """Whole tables, and tables larger than split_bytes cut into up to `workers` block ranges."""
    items: list[_Item] = []
    for plan in plans:
        nblocks = blocks.get(plan.table, 0)
        parts = min(workers, math.ceil(plan.size_bytes / split_bytes)) if split_bytes > 0 else 1
        parts = min(parts, nblocks)
        if parts <= 1:
            items.append(_Item(plan))
            continue
        step = math.ceil(nblocks / parts)
        for i in range(parts):
            # the last range is open-ended: nothing past the block count at plan time is missed
            end = None if i == parts - 1 else (i + 1) * step
            items.append(_Item(plan, (i * step, end)))
    return items


def _relation_blocks(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT c.relname, (pg_catalog.pg_relation_size(c.oid)"
        " / pg_catalog.current_setting('block_size')::int)::bigint"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (schema, tables),
    ).fetchall()
    return {name: int(n) for name, n in rows}


def _build_table(conn: psycopg.Connection, target_schema: str, table: str, post: TablePost) -> int:
    """Run one table's post builds in one transaction, then VACUUM ANALYZE it; statements run."""
    statements = post.statements.get(table) or []
    if statements:
        apply(conn, post.prefix + statements, lock_timeout=post.lock_timeout)
    name = sql.Identifier(target_schema, table)
    if post.vacuum:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(name))
    else:
        conn.execute(sql.SQL("ANALYZE {}").format(name))
    return len(statements)


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
) -> CopyReport:
    """Copy the rows of every table of `schema` (source) into `target_schema` (target).

    With `post`, each table's builds (and VACUUM ANALYZE) run as soon as its copy ends; the
    statements run are listed in the report's `post_applied`, the tables in `analyzed`.
    """
    if workers < 1:
        raise CopyError(f"workers must be at least 1, got {workers}")
    started = time.monotonic()
    report = CopyReport()

    try:
        coord = psycopg.connect(source_dsn)
    except PsycopgError as exc:
        raise CopyError(f"cannot connect to the source database: {_server_message(exc)}") from exc
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
        partial: dict[str, TableCopy] = {}
        lock = threading.Lock()
        failed = threading.Event()

        def should_stop() -> bool:
            return failed.is_set() or (cancel is not None and cancel.is_set())

        def next_item() -> _Item | None:
            with lock:
                return queue.pop(0) if queue and not should_stop() else None

        def fail(message: str) -> None:
            with lock:
                report.errors.append(message)
            failed.set()

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

        def worker() -> None:
            item: _Item | None = None
            building = False
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
                    _configure(tgt)
                    try:
                        tgt.execute("SET session_replication_role = replica")
                    except PsycopgError as exc:
                        raise CopyError(
                            "cannot SET session_replication_role = replica on the target"
                            f" ({_server_message(exc)}): connect as a superuser or a role"
                            " granted SET on that parameter"
                        ) from exc
                    builder: psycopg.Connection | None = None
                    try:
                        while (item := next_item()) is not None:
                            done = finished(
                                item, _copy_table(src, tgt, item.plan, should_stop, item.blocks)
                            )
                            if done is not None and post is not None and not should_stop():
                                # the builds run on a connection of their own: the dump's
                                # session settings must not stay on the copying one
                                building = True
                                if builder is None:
                                    builder = psycopg.connect(target_dsn, autocommit=True)
                                t0 = time.monotonic()
                                n = _build_table(builder, item.plan.target_schema, done.table, post)
                                done.post_statements = n
                                done.post_seconds = round(time.monotonic() - t0, 6)
                                building = False
                                with lock:
                                    report.post_applied += post.statements.get(done.table) or []
                                    report.analyzed.append(done.table)
                            if done is not None:
                                with lock:
                                    report.tables.append(done)
                                    if progress is not None:
                                        progress(done)
                            item = None
                    finally:
                        if builder is not None:
                            builder.close()
            except _Stopped:
                return
            except CopyError as exc:
                fail(str(exc))
            except Exception as exc:
                if item is not None:
                    what = "post builds of" if building else "copy of"
                    fail(
                        f"{what} {item.plan.schema}.{item.plan.table} into"
                        f" {item.plan.target_schema}.{item.plan.table} failed:"
                        f" {_server_message(exc)}"
                    )
                else:
                    fail(f"copy worker failed: {_server_message(exc)}")

        threads = [
            threading.Thread(target=worker, name=f"copy-{schema}-{i}", daemon=True)
            for i in range(min(workers, len(queue)))
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
    report.tables.sort(key=lambda t: t.table)
    return report
