"""compare_schemas: a restored schema against its live schema, in one consistent snapshot."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.errors import Error as PsycopgError

from restore_assets.core.compare.catalog import SchemaCatalog, Sequence, read_schema
from restore_assets.core.compare.details import DEFAULT_WIDTH, table_details
from restore_assets.core.compare.drift import schema_drift
from restore_assets.core.compare.model import (
    CompareError,
    ComparisonResult,
    SequenceCheck,
    SequenceState,
    TableComparison,
)
from restore_assets.core.compare.rows import PartialResult, RowTask, merge, plan_table, run_task
from restore_assets.core.errors import server_message

log = logging.getLogger(__name__)

WORK_MEM = "256MB"
# Upper bound of connections one comparison opens when the caller does not choose.
MAX_PARALLEL = 8


def translate(exc: BaseException, what: str) -> CompareError:
    """A CompareError saying what failed; row level security gets its own explanation."""
    msg = server_message(exc)
    if "row-level security" in msg or "row level security" in msg:
        return CompareError(
            f"{what}: {msg}. Row level security would filter what the comparison reads; connect"
            " as a superuser or a role with BYPASSRLS (the comparison refuses to report"
            " filtered numbers)"
        )
    return CompareError(f"{what}: {msg}")


def connect(dsn: str) -> psycopg.Connection:
    """A connection for comparing; a failure to connect is a CompareError that names the cause."""
    try:
        return psycopg.connect(dsn)
    except PsycopgError as exc:
        raise translate(exc, "cannot connect to the database") from exc


def read_only_now(conn: psycopg.Connection) -> tuple[str, datetime]:
    """Begin the read-only snapshot; the database's name and the snapshot's time."""
    begin_read_only(conn)
    row = conn.execute("SELECT pg_catalog.current_database(), pg_catalog.now()").fetchone()
    assert row is not None
    return row[0], row[1]


def begin_read_only(conn: psycopg.Connection, snapshot: str | None = None) -> None:
    """Start a REPEATABLE READ READ ONLY transaction that errors instead of filtering by RLS."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    if snapshot:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    for name, value in (
        ("row_security", "off"),
        ("jit", "off"),
        ("work_mem", WORK_MEM),
        ("statement_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
    ):
        conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, value))


def read_catalogs(
    conn: psycopg.Connection, live_schema: str, restored_schema: str
) -> tuple[SchemaCatalog, SchemaCatalog]:
    """Both schemas' catalogs (live, restored), the restored one normalized to the live name."""
    path = conn.execute("SELECT pg_catalog.current_setting('search_path')").fetchone()[0]  # type: ignore[index]
    # Definitions rendered with only pg_catalog visible name every user object's schema.
    conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
    try:
        live = read_schema(conn, live_schema)
    except LookupError:
        raise CompareError(f"live schema {live_schema!r} does not exist in this database") from None
    try:
        restored = read_schema(conn, restored_schema, live_schema)
    except LookupError:
        raise CompareError(
            f"restored schema {restored_schema!r} does not exist in this database"
        ) from None
    conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (path,))
    return live, restored


def _sequence_state(conn: psycopg.Connection, schema: str, seq: Sequence) -> SequenceState:
    row = conn.execute(
        sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, seq.name))
    ).fetchone()
    assert row is not None
    last, called = int(row[0]), bool(row[1])
    max_key: int | None = None
    for tschema, table, column in seq.users:
        value = conn.execute(
            sql.SQL("SELECT pg_catalog.max({})::text FROM {}").format(
                sql.Identifier(column), sql.Identifier(tschema, table)
            )
        ).fetchone()[0]  # type: ignore[index]
        try:
            v = int(value) if value is not None else None
        except ValueError:
            v = None
        if v is not None and (max_key is None or v > max_key):
            max_key = v
    return SequenceState(
        last_value=last,
        is_called=called,
        increment=seq.increment,
        columns=[f"{t}.{c}" for _, t, c in seq.users],
        max_key=max_key,
    )


def check_sequences(
    conn: psycopg.Connection, restored: SchemaCatalog, live: SchemaCatalog
) -> dict[str, SequenceCheck]:
    """Each sequence's last value against the largest key of the columns it feeds, per side."""
    out = {}
    for name in sorted(restored.sequences.keys() | live.sequences.keys()):
        rseq, lseq = restored.sequences.get(name), live.sequences.get(name)
        out[name] = SequenceCheck(
            name=name,
            restored=_sequence_state(conn, restored.schema, rseq) if rseq else None,
            live=_sequence_state(conn, live.schema, lseq) if lseq else None,
        )
    return out


def _run_pool(
    dsn: str,
    snapshot: str,
    tasks: list[RowTask],
    workers: int,
    sample_size: int,
    results: dict[int, PartialResult],
) -> tuple[Callable[[], None], Callable[[], None]]:
    """Start worker threads running the tasks; return (wait: join and raise, abort: stop early)."""
    queue = sorted(range(len(tasks)), key=lambda i: -tasks[i].weight)
    lock = threading.Lock()
    failed = threading.Event()
    errors: list[CompareError] = []

    def worker() -> None:
        task: RowTask | None = None
        try:
            with psycopg.connect(dsn) as conn:
                begin_read_only(conn, snapshot)
                conn.execute(
                    "SELECT pg_catalog.set_config('max_parallel_workers_per_gather', '0', true)"
                )
                while not failed.is_set():
                    with lock:
                        if not queue:
                            return
                        index = queue.pop(0)
                    task = tasks[index]
                    part = run_task(conn, task, sample_size)
                    with lock:
                        results[index] = part
                    task = None
        except Exception as exc:
            what = (
                f"comparison of {task.live_schema}.{task.table} failed"
                if task is not None
                else "comparison worker failed"
            )
            with lock:
                errors.append(translate(exc, what))
            failed.set()

    threads = [
        threading.Thread(target=worker, name=f"compare-{i}", daemon=True)
        for i in range(min(workers, len(tasks)))
    ]
    for t in threads:
        t.start()

    def wait() -> None:
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    return wait, failed.set


def default_parallel(conn: psycopg.Connection) -> int:
    """As many connections as the server gives one parallel query (its workers plus the leader)."""
    row = conn.execute(
        "SELECT pg_catalog.current_setting('max_parallel_workers_per_gather')::int"
    ).fetchone()
    workers = int(row[0]) if row else 0
    return max(1, min(MAX_PARALLEL, workers + 1))


def compare_schemas(
    dsn: str,
    live_schema: str,
    restored_schema: str,
    *,
    sample_size: int = 5,
    parallel: int | None = None,
    detail_width: int = DEFAULT_WIDTH,
) -> ComparisonResult:
    """Compare a restored schema with its live schema: rows by key, drift and sequences.

    For each table with differences, the rows of the first `sample_size` keys of each kind come
    with the result (values cut past `detail_width` characters; 0 leaves them out).
    """
    if parallel is not None and parallel < 1:
        raise CompareError(f"parallel must be at least 1, got {parallel}")
    started = time.monotonic()
    conn = connect(dsn)
    with conn:
        try:
            database, now = read_only_now(conn)
            live, restored = read_catalogs(conn, live_schema, restored_schema)
            if parallel is None:
                parallel = default_parallel(conn)
        except CompareError:
            raise
        except PsycopgError as exc:
            raise translate(exc, "reading the catalogs failed") from exc
        drift = schema_drift(restored, live)

        tasks: list[RowTask] = []
        names: list[str] = []
        for name in sorted(restored.tables.keys() & live.tables.keys()):
            rt, lt = restored.tables[name], live.tables[name]
            if rt.is_partition or lt.is_partition:
                continue  # compared through its partitioned parent
            names.append(name)
            try:
                tasks += plan_table(conn, restored_schema, live_schema, rt, lt, parallel)
            except PsycopgError as exc:
                raise translate(
                    exc, f"planning the comparison of {live_schema}.{name} failed"
                ) from exc

        results: dict[int, PartialResult] = {}
        wait: Callable[[], None] | None = None
        abort: Callable[[], None] | None = None
        if parallel > 1 and len(tasks) > 1:
            snapshot = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
            wait, abort = _run_pool(dsn, snapshot, tasks, parallel, sample_size, results)
        try:
            try:
                sequences = check_sequences(conn, restored, live)
            except PsycopgError as exc:
                raise translate(exc, "checking the sequences failed") from exc
            if wait is None:
                for i, task in enumerate(tasks):
                    try:
                        results[i] = run_task(conn, task, sample_size)
                    except PsycopgError as exc:
                        raise translate(
                            exc, f"comparison of {live_schema}.{task.table} failed"
                        ) from exc
        except BaseException:
            if wait is not None and abort is not None:
                abort()  # workers stop after their current task
                try:
                    wait()  # never leave workers running; the first error is the one to report
                except CompareError as exc:
                    log.warning("comparison worker error after another failure: %s", exc)
            raise
        if wait is not None:
            wait()  # workers import the snapshot this transaction exported: join before closing

        tables: dict[str, TableComparison] = {}
        for name in names:
            idx = [i for i, t in enumerate(tasks) if t.table == name]
            idx.sort(key=lambda i: tasks[i].part)
            tables[name] = merge(
                name, [tasks[i] for i in idx], [results[i] for i in idx], sample_size
            )
            if tables[name].differs and detail_width:
                try:  # the sample keys' rows, in the comparison's own snapshot
                    tables[name].details = table_details(
                        conn, tasks[idx[0]], tables[name], detail_width
                    )
                except PsycopgError as exc:
                    raise translate(
                        exc, f"reading the rows of {live_schema}.{name} failed"
                    ) from exc
    return ComparisonResult(
        database=database,
        schema=live_schema,
        restored=restored_schema,
        generated_at=now.isoformat(),
        tables=tables,
        drift=drift,
        sequences=sequences,
        seconds=time.monotonic() - started,
    )
