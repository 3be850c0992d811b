"""The COPY of one table, or one block range of it, from a source session into a target session.

Both sessions get settings that make text COPY output parse identically on the other side. A whole
table is loaded with ``COPY ... FREEZE`` when it is large enough and a TRUNCATE in the copy's own
transaction can lose nothing (locked, empty, referenced by no foreign key, TRUNCATE granted).
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable

import psycopg
from psycopg import pq, sql
from psycopg.errors import error_from_result

from restore_assets.core.mover.model import TableCopy
from restore_assets.core.mover.plan import TablePlan

# Bytes gathered from the source before one write to the target.
CHUNK_BYTES = 256 * 1024

# Tables at least this large are loaded with COPY FREEZE (smaller: not worth the extra TRUNCATE).
FREEZE_BYTES = 8 * 1024 * 1024

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


# How long one wait on the source's socket lasts before the stop flag is checked again.
POLL_MS = 1000


def _poller(pgconn: pq.abc.PGconn) -> select.poll:
    """A poll object on the connection's socket (poll: no limit on the descriptor's number)."""
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    return poller


def _wait_result(
    pgconn: pq.abc.PGconn, poller: select.poll, should_stop: Callable[[], bool]
) -> pq.abc.PGresult | None:
    """The next result of the query in flight, waiting on the socket (the GIL is released)."""
    while pgconn.is_busy():
        if not poller.poll(POLL_MS) and should_stop():
            raise _Stopped()
        pgconn.consume_input()
    return pgconn.get_result()


def _check(src: psycopg.Connection, result: pq.abc.PGresult | None, status: pq.ExecStatus) -> None:
    """Raise the server's error unless `result` has `status`."""
    if result is None or result.status != status:
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            raise error_from_result(result, encoding=src.info.encoding)
        raise psycopg.OperationalError(
            f"COPY from the source: unexpected {getattr(result, 'status', 'end of results')}"
        )


def _pump(
    src: psycopg.Connection,
    copy_out: sql.Composable,
    write: Callable[[bytearray], None],
    should_stop: Callable[[], bool],
) -> int:
    """Run `copy_out` (a COPY ... TO STDOUT) on src and hand its data to `write` in chunks of about
    CHUNK_BYTES; the number of bytes.

    libpq returns one row per call: the rows are read straight from the connection, without one
    Python generator step per row, and waits happen on the socket with the GIL released, so the
    other workers' threads keep running; a wait checks `should_stop` every POLL_MS. On any error the source connection is closed (it is left
    mid-COPY); the caller's worker stops.
    """
    pgconn = src.pgconn
    nbytes = 0
    try:
        pgconn.send_query(copy_out.as_bytes(src))
        poller = _poller(pgconn)
        _check(src, _wait_result(pgconn, poller, should_stop), pq.ExecStatus.COPY_OUT)
        get = pgconn.get_copy_data
        buf = bytearray()
        while True:
            size, data = get(1)
            if size > 0:
                buf += data
                if len(buf) >= CHUNK_BYTES:
                    if should_stop():
                        raise _Stopped()
                    write(buf)
                    nbytes += len(buf)
                    buf = bytearray()
            elif size == 0:
                if not poller.poll(POLL_MS) and should_stop():
                    raise _Stopped()
                pgconn.consume_input()
            elif size == -1:
                break
            else:
                raise psycopg.OperationalError(
                    f"COPY from the source failed: {pgconn.get_error_message()}"
                )
        if buf:
            write(buf)
            nbytes += len(buf)
        _check(src, _wait_result(pgconn, poller, should_stop), pq.ExecStatus.COMMAND_OK)
        if _wait_result(pgconn, poller, should_stop) is not None:
            raise psycopg.OperationalError("COPY from the source: more results than expected")
    except BaseException:
        src.close()
        raise
    return nbytes


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
    with tgt.transaction(), tgt.cursor() as tcur:
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
        with tcur.copy(copy_in) as cin:
            nbytes = _pump(src, copy_out, cin.write, should_stop)
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
