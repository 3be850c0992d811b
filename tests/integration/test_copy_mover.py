"""The parallel COPY mover against real PostgreSQL: two databases, varied types, partitions."""

from __future__ import annotations

import os
import resource
import threading
import time
import tracemalloc
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from restore_assets.backends.local.pg import Cluster
from restore_assets.core.errors import CopyError
from restore_assets.core.mover import TableCopy, copy_schema, plan_schema, table_copy

pytestmark = pytest.mark.integration

# Run with search_path set to the schema being created (so the same text builds any schema).
SCHEMA_DDL = r"""
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE TYPE tagged AS (m mood, n int);
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN mood_d AS mood;
CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN RAISE EXCEPTION 'trigger fired on %', TG_TABLE_NAME; END$$;

CREATE TABLE parent (id int PRIMARY KEY, name text);
CREATE TABLE child (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  parent_id int NOT NULL REFERENCES parent (id),
  note text
);
CREATE TABLE everything (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  n int,
  amount numeric(14, 3),
  label text,
  doc jsonb,
  raw json,
  x xml,
  p point,
  tags text[],
  nums int[],
  at timestamptz,
  blob bytea,
  m mood,
  ms mood[],
  pos posint,
  md mood_d,
  pr pair,
  tg tagged,
  total numeric GENERATED ALWAYS AS (amount * 2) STORED
);
CREATE TABLE plain (id int PRIMARY KEY, a int, b text, c timestamptz, d double precision);
CREATE TABLE audited (id int PRIMARY KEY, v text);
ALTER TABLE audited ENABLE ROW LEVEL SECURITY;
ALTER TABLE audited FORCE ROW LEVEL SECURITY;
CREATE POLICY nobody ON audited AS RESTRICTIVE USING (false);
CREATE TABLE events (id int, at date, kind text, PRIMARY KEY (id, at, kind)) PARTITION BY RANGE (at);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
  PARTITION BY LIST (kind);
CREATE TABLE events_2024_a PARTITION OF events_2024 FOR VALUES IN ('a');
CREATE TABLE events_2024_rest PARTITION OF events_2024 DEFAULT;
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE VIEW v_parent AS SELECT * FROM parent;
CREATE MATERIALIZED VIEW mv_parent AS SELECT * FROM parent;
"""

# Triggers come after the source data (they would refuse the fixture's own inserts).
TRIGGERS = """
CREATE TRIGGER audited_boom BEFORE INSERT ON audited FOR EACH ROW EXECUTE FUNCTION boom();
CREATE TRIGGER everything_boom BEFORE INSERT ON everything FOR EACH ROW EXECUTE FUNCTION boom();
"""

SOURCE_DATA = r"""
INSERT INTO parent SELECT g, 'parent ' || g FROM generate_series(1, 50) g;
INSERT INTO child (id, parent_id, note) OVERRIDING SYSTEM VALUE
  SELECT g * 3, 1 + g % 50, repeat('n', g % 7) FROM generate_series(1, 3000) g;
INSERT INTO everything (id, n, amount, label, doc, raw, x, p, tags, nums, at, blob, m, ms, pos,
                        md, pr, tg) OVERRIDING SYSTEM VALUE
  SELECT g * 10, g, g * 1.125, 'row ' || g || E'\ttab\nnewline \\ backslash ü',
         jsonb_build_object('g', g, 'nested', jsonb_build_array(g, 'x')),
         ('{"b": 1,  "a": [' || g || ']}')::json,
         ('<r g="' || g || '">é</r>')::xml,
         point(g, -g), ARRAY['a' || g, NULL, 'q"uote'], ARRAY[g, g + 1],
         '2024-02-29 12:00:00+00'::timestamptz + g * interval '1 hour',
         decode('00ff' || lpad(to_hex(g), 4, '0'), 'hex'),
         (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood,
         ARRAY['happy', 'sad']::mood[], 1 + g, 'ok', ROW(g, 'pair ' || g)::pair,
         ROW('happy', g)::tagged
    FROM generate_series(1, 400) g;
INSERT INTO everything (id, n, amount, at, doc, tags, nums, ms) OVERRIDING SYSTEM VALUE
  VALUES (1, NULL, 'NaN', 'infinity', '{}', '{}', '{}', '{}'),
         (2, 0, -0.001, '-infinity', 'null', NULL, NULL, NULL);
INSERT INTO plain SELECT g, g % 97, md5(g::text), '2020-01-01'::timestamptz + g * interval '1 s',
                         g / 7.0 FROM generate_series(1, 5000) g;
INSERT INTO audited SELECT g, 'v' || g FROM generate_series(1, 20) g;
INSERT INTO events SELECT g, '2023-01-01'::date + (g % 900), (ARRAY['a', 'b', 'c'])[1 + g % 3]
  FROM generate_series(1, 1200) g;
REFRESH MATERIALIZED VIEW mv_parent;
"""

TABLES = [
    "parent",
    "child",
    "everything",
    "plain",
    "audited",
    "events_2023",
    "events_2024_a",
    "events_2024_rest",
    "events_default",
]


def build_schema(dsn: str, schema: str, *, data: bool) -> None:
    """Create the fixture schema (and its rows when `data`)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(SCHEMA_DDL)
        if data:
            conn.execute(SOURCE_DATA)
        conn.execute(TRIGGERS)


def checksum(dsn: str, schema: str, table: str) -> tuple[int, str | None]:
    """Row count and an order-independent digest of every row's text (all columns)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t"
            ).format(sql.Identifier(schema, table))
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def make_db(pg: Cluster, name: str) -> str:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return pg.dsn(name)


def drop_db(pg: Cluster, name: str) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def big_table_dbs(pg: Cluster, prefix: str, rows: int) -> tuple[str, str]:
    """Databases <prefix>_source (big.t holding `rows` rows of about 200 bytes) and <prefix>_target
    (big.t empty); their DSNs."""
    source = make_db(pg, f"{prefix}_source")
    target = make_db(pg, f"{prefix}_target")
    for dsn, n in ((source, rows), (target, 0)):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA big")
            conn.execute("CREATE TABLE big.t (id int PRIMARY KEY, pad text, n numeric)")
            conn.execute(
                "INSERT INTO big.t SELECT g, repeat(md5(g::text), 6), g * 1.5"
                " FROM generate_series(1, %s) g",
                (n,),
            )
    return source, target


@pytest.fixture(scope="module")
def dbs(pg: Cluster) -> Iterator[tuple[str, str]]:
    """A source database holding schema `tenant` with rows, and an empty target database."""
    source = make_db(pg, "copy_source")
    target = make_db(pg, "copy_target")
    build_schema(source, "tenant", data=True)
    try:
        yield source, target
    finally:
        drop_db(pg, "copy_source")
        drop_db(pg, "copy_target")


def assert_same(source: str, target: str, target_schema: str) -> None:
    for table in TABLES + ["events", "events_2024"]:
        assert checksum(target, target_schema, table) == checksum(source, "tenant", table), table


def test_copy_all_types_partitions_triggers_fks(dbs: tuple[str, str]) -> None:
    source, target = dbs
    build_schema(target, "tenant_r1", data=False)
    seen: list[TableCopy] = []
    report = copy_schema(source, target, "tenant", "tenant_r1", workers=4, progress=seen.append)

    assert sorted(t.table for t in report.tables) == sorted(TABLES)
    assert sorted(t.table for t in seen) == sorted(TABLES)
    assert not report.errors
    assert_same(source, target, "tenant_r1")
    rows = {t.table: t.rows for t in report.tables}
    for table in TABLES:
        assert rows[table] == checksum(source, "tenant", table)[0], table
    assert report.total_rows == sum(rows.values()) == 50 + 3000 + 402 + 5000 + 20 + 1200
    assert all(t.bytes > 0 and t.target_schema == "tenant_r1" for t in report.tables)
    formats = {t.table: t.format for t in report.tables}
    assert formats["everything"] == "text"  # enum, enum[], composite, domain over enum
    assert formats["plain"] == formats["events_2023"] == "binary"

    with psycopg.connect(target) as conn:
        # generated column recomputed on the target, identity ALWAYS values kept as in the source
        assert conn.execute(
            "SELECT count(*) FROM tenant_r1.everything WHERE total IS DISTINCT FROM amount * 2"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT min(id), max(id) FROM tenant_r1.everything WHERE id > 2"
        ).fetchone() == (10, 4000)
        # the leaves got their own rows (copied leaf to leaf, not re-routed through the parent)
        assert conn.execute("SELECT count(*) FROM tenant_r1.events_default").fetchone() == (
            checksum(source, "tenant", "events_default")[0],
        )
        # views and materialized views are not copied
        assert conn.execute("SELECT count(*) FROM tenant_r1.mv_parent").fetchone() == (0,)


def test_workers_one_and_four_give_the_same_result(dbs: tuple[str, str]) -> None:
    source, target = dbs
    build_schema(target, "tenant_w1", data=False)
    build_schema(target, "tenant_w4", data=False)
    r1 = copy_schema(source, target, "tenant", "tenant_w1", workers=1)
    r4 = copy_schema(source, target, "tenant", "tenant_w4", workers=4)
    assert {t.table: t.rows for t in r1.tables} == {t.table: t.rows for t in r4.tables}
    for table in TABLES:
        assert checksum(target, "tenant_w1", table) == checksum(target, "tenant_w4", table)
    assert_same(source, target, "tenant_w1")


def test_tables_subset_partitioned_parent_means_its_leaves(dbs: tuple[str, str]) -> None:
    source, target = dbs
    build_schema(target, "tenant_sub", data=False)
    report = copy_schema(source, target, "tenant", "tenant_sub", tables=["events", "parent"])
    assert sorted(t.table for t in report.tables) == [
        "events_2023",
        "events_2024_a",
        "events_2024_rest",
        "events_default",
        "parent",
    ]
    assert checksum(target, "tenant_sub", "events") == checksum(source, "tenant", "events")
    assert checksum(target, "tenant_sub", "plain")[0] == 0


def test_missing_target_table_fails_naming_it(dbs: tuple[str, str]) -> None:
    source, target = dbs
    build_schema(target, "tenant_err", data=False)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("DROP TABLE tenant_err.audited")
    before = threading.active_count()
    with pytest.raises(CopyError) as info:
        copy_schema(source, target, "tenant", "tenant_err", workers=3)
    message = str(info.value)
    assert "tenant.audited" in message and "tenant_err.audited" in message
    assert "does not exist" in message
    assert threading.active_count() == before  # no worker left running
    report = info.value.report  # type: ignore[attr-defined]
    assert report.errors and "audited" in report.errors[0]


def test_unknown_table_in_request_is_refused(dbs: tuple[str, str]) -> None:
    source, target = dbs
    with pytest.raises(CopyError, match=r"tenant\.nope does not exist"):
        copy_schema(source, target, "tenant", "tenant_x", tables=["nope"])
    with pytest.raises(CopyError, match=r"tenant\.v_parent is not a table"):
        copy_schema(source, target, "tenant", "tenant_x", tables=["v_parent"])


def test_cancel_stops_the_copy(dbs: tuple[str, str]) -> None:
    source, target = dbs
    build_schema(target, "tenant_cancel", data=False)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CopyError, match="cancelled"):
        copy_schema(source, target, "tenant", "tenant_cancel", cancel=cancel)
    assert checksum(target, "tenant_cancel", "plain")[0] == 0


def test_plan_orders_by_size_and_picks_formats(dbs: tuple[str, str]) -> None:
    source, _ = dbs
    with psycopg.connect(source) as conn:
        plans = plan_schema(conn, "tenant", "tenant_x")
    names = [p.table for p in plans]
    assert sorted(names) == sorted(TABLES)  # no parent of partitions, no views
    sizes = [p.size_bytes for p in plans]
    assert sizes == sorted(sizes, reverse=True)
    by_name = {p.table: p for p in plans}
    assert "total" not in by_name["everything"].columns  # generated column left out
    assert by_name["everything"].columns[:3] == ["id", "n", "amount"]
    assert by_name["everything"].format == "text"
    assert by_name["everything"].text_reason and "mood" in by_name["everything"].text_reason
    assert by_name["events_2024_a"].parent == "events_2024"
    assert by_name["events_2024_a"].kind == "partition"
    assert by_name["plain"].format == "binary" and by_name["plain"].parent is None


def test_large_table_streams_in_chunks(pg: Cluster) -> None:
    source, target = big_table_dbs(pg, "copy_big", 200_000)
    try:
        tracemalloc.start()
        try:
            report = copy_schema(source, target, "big", "big", workers=2)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        (copied,) = report.tables
        assert copied.rows == 200_000
        assert copied.bytes > 40_000_000  # the stream is > 40 MB ...
        assert peak < 8_000_000  # ... but Python never held more than a few chunks of it
        assert checksum(target, "big", "t") == checksum(source, "big", "t")
    finally:
        drop_db(pg, "copy_big_source")
        drop_db(pg, "copy_big_target")


def test_cancel_between_tables_keeps_what_was_done(dbs: tuple[str, str]) -> None:
    source, target = dbs
    build_schema(target, "tenant_cancel2", data=False)
    cancel = threading.Event()
    done: list[TableCopy] = []

    def progress(t: TableCopy) -> None:
        done.append(t)
        cancel.set()  # the caller stops after the first table

    with pytest.raises(CopyError, match=r"cancelled after 1 of 9 tables") as info:
        copy_schema(
            source, target, "tenant", "tenant_cancel2", workers=1, progress=progress, cancel=cancel
        )
    assert [t.table for t in info.value.report.tables] == [done[0].table]  # type: ignore[attr-defined]
    assert checksum(target, "tenant_cancel2", done[0].table)[0] == done[0].rows > 0


def test_pump_streams_rows_in_chunks_and_reports_a_server_error_mid_copy(
    dbs: tuple[str, str],
) -> None:
    """The source's rows arrive whole and in order; an error after some rows is the server's own
    (its class and message), and the source connection is closed, not left mid-COPY."""
    source, _ = dbs
    chunks: list[bytes] = []
    with psycopg.connect(source) as src:
        out = sql.SQL(
            "COPY (SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g) TO STDOUT"
        )
        nbytes = table_copy._pump(src, out, lambda b: chunks.append(bytes(b)), lambda: False)
        data = b"".join(chunks)
        assert nbytes == len(data)
        assert len(chunks) >= 2 and len(chunks[0]) >= table_copy.CHUNK_BYTES
        assert data.splitlines()[0] == b"1\t" + b"x" * 100
        assert data.splitlines()[-1].startswith(b"20000\t") and len(data.splitlines()) == 20000
        # the connection is usable after a complete COPY
        assert src.execute("SELECT 41 + 1").fetchone() == (42,)
        failing = sql.SQL("COPY (SELECT 1 / (5000 - g) FROM generate_series(1, 10000) g) TO STDOUT")
        with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
            table_copy._pump(src, failing, lambda b: None, lambda: False)
        assert src.closed
    with psycopg.connect(source) as src:
        missing = sql.SQL("COPY {} TO STDOUT").format(sql.Identifier("no_such_schema", "t"))
        with pytest.raises(psycopg.errors.InvalidSchemaName, match="no_such_schema"):
            table_copy._pump(src, missing, lambda b: None, lambda: False)
        assert src.closed


def test_source_backend_killed_mid_copy_fails_the_copy_and_keeps_no_rows(
    pg: Cluster,
) -> None:
    """A source server session that dies during a table's COPY fails the mover with the table
    named; the target transaction rolls back, so the target table holds no partial rows."""
    source, target = big_table_dbs(pg, "copy_kill", 300_000)
    try:
        killed: list[int] = []

        def kill_when_copying(done: threading.Event) -> None:
            with psycopg.connect(source, autocommit=True) as admin:
                while not done.is_set() and not killed:
                    for (pid,) in admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT%%big%%'"
                        " AND pid <> pg_backend_pid()"
                    ).fetchall():
                        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                        killed.append(pid)

        done = threading.Event()
        killer = threading.Thread(target=kill_when_copying, args=(done,))
        killer.start()
        try:
            with pytest.raises(CopyError, match=r"copy of big\.t into big\.t failed"):
                copy_schema(source, target, "big", "big", workers=1, split_bytes=0)
        finally:
            done.set()
            killer.join()
        assert killed
        with psycopg.connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM big.t").fetchone() == (0,)
    finally:
        drop_db(pg, "copy_kill_source")
        drop_db(pg, "copy_kill_target")


def test_pump_stops_while_the_source_sends_nothing(dbs: tuple[str, str]) -> None:
    """A source that sends no rows does not hold a stopped copy: the wait checks the stop flag."""
    source, _ = dbs
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with psycopg.connect(source) as src:
        stalled = sql.SQL("COPY (SELECT pg_sleep(60)) TO STDOUT")
        started = time.monotonic()
        with pytest.raises(table_copy._Stopped):
            table_copy._pump(src, stalled, lambda b: None, stop.is_set)
        assert time.monotonic() - started < 30
        assert src.closed


def test_pump_works_on_a_descriptor_above_1024(dbs: tuple[str, str]) -> None:
    """The socket is waited on with poll, which has no FD_SETSIZE limit (select has one)."""
    source, _ = dbs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = hard != resource.RLIM_INFINITY and hard < 1200
    if low and os.geteuid() != 0:  # only root may raise the hard limit
        pytest.skip(f"the hard limit on open files ({hard}) is below 1200 and this is not root")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), 1200 if low else hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with psycopg.connect(source) as src:
            assert src.pgconn.socket > 1024
            out = sql.SQL("COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT")
            chunks: list[bytes] = []
            table_copy._pump(src, out, lambda b: chunks.append(bytes(b)), lambda: False)
            assert b"".join(chunks) == b"1\n2\n3\n"
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
