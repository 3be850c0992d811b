"""The parallel COPY mover: stream every table of a schema from one database into another."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql
from psycopg.errors import Error as PsycopgError

from restore_assets.copy.plan import TablePlan, plan_schema
from restore_assets.errors import CopyError

log = logging.getLogger(__name__)

# Bytes gathered from the source before one write to the target.
CHUNK_BYTES = 256 * 1024

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


@dataclass
class CopyReport:
    """The outcome of copying one schema."""

    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

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


def _copy_table(
    src: psycopg.Connection,
    tgt: psycopg.Connection,
    plan: TablePlan,
    should_stop: Callable[[], bool],
) -> TableCopy:
    """Stream one table from src to tgt inside one target transaction."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in plan.columns)
    fmt = sql.SQL("binary" if plan.format == "binary" else "text")
    src_name = sql.Identifier(plan.schema, plan.table)
    tgt_name = sql.Identifier(plan.target_schema, plan.table)
    if plan.columns:
        copy_out = sql.SQL("COPY (SELECT {} FROM ONLY {}) TO STDOUT (FORMAT {})").format(
            cols, src_name, fmt
        )
        copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(tgt_name, cols, fmt)
    else:
        copy_out = sql.SQL("COPY (SELECT FROM ONLY {}) TO STDOUT (FORMAT {})").format(src_name, fmt)
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
) -> CopyReport:
    """Copy the rows of every table of `schema` (source) into `target_schema` (target)."""
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

        queue = list(plans)  # largest first
        lock = threading.Lock()
        failed = threading.Event()

        def should_stop() -> bool:
            return failed.is_set() or (cancel is not None and cancel.is_set())

        def next_plan() -> TablePlan | None:
            with lock:
                return queue.pop(0) if queue and not should_stop() else None

        def fail(message: str) -> None:
            with lock:
                report.errors.append(message)
            failed.set()

        def worker() -> None:
            plan: TablePlan | None = None
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
                    while (plan := next_plan()) is not None:
                        done = _copy_table(src, tgt, plan, should_stop)
                        with lock:
                            report.tables.append(done)
                            if progress is not None:
                                progress(done)
                        plan = None
            except _Stopped:
                return
            except CopyError as exc:
                fail(str(exc))
            except Exception as exc:
                if plan is not None:
                    fail(
                        f"copy of {plan.schema}.{plan.table} into"
                        f" {plan.target_schema}.{plan.table} failed: {_server_message(exc)}"
                    )
                else:
                    fail(f"copy worker failed: {_server_message(exc)}")

        threads = [
            threading.Thread(target=worker, name=f"copy-{schema}-{i}", daemon=True)
            for i in range(min(workers, len(plans)))
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
