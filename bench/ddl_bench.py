"""DDL engine benchmark: split + rename + guard of a 3,000-table tenant vs pg_dump itself.

Baseline: ``pg_dump --schema-only -n tenant`` of the same schema, in the same run (it is the step
our processing follows in a restore, so "ours / baseline" says how much the DDL engine adds).
Ours: ``build_bundle`` (split with pglast, rename, parse each renamed statement, classify it and
apply the guard's rules to its tree, setval) + ``check_guard()``, on the dump text already in
memory. The time of a standalone ``guard()`` re-check (what ``apply(allowed_schemas=...)`` runs
before touching the database) is printed for information. Each side is timed as the best of a
few interleaved runs (the machine load then weighs on both alike).

Memory: peak of Python allocations during one split + rename + guard, measured by tracemalloc in
a separate, untimed run (tracemalloc slows allocation down); the process's max RSS growth
(resource.getrusage) over the timed runs is printed too.

The scratch cluster lives under a fresh /tmp directory and is removed at the end.
The last line is ``ratio: X`` (ours / baseline; target <= 1.0, peak < 200 MB).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import psycopg
from pglast import parser

from restore_assets.backends.local.pg import pg_bin, start_new_cluster
from restore_assets.core.ddl import (
    DdlBundle,
    build_bundle,
    guard,
    read_sequence_values,
    strip_restrict,
)


def build_tenant(dsn: str, tables: int) -> None:
    """A tenant schema with `tables` tables, each with the usual satellites (~14 statements)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA shared;"
            " CREATE TABLE shared.countries (code text PRIMARY KEY);"
            " INSERT INTO shared.countries VALUES ('FR'), ('IT');"
            " CREATE SCHEMA tenant"
        )
        batch: list[str] = []
        for i in range(tables):
            parent = f"t{i - 1}" if i else f"t{i}"
            batch.append(
                f"CREATE SEQUENCE tenant.t{i}_ref_seq;"
                f" CREATE TABLE tenant.t{i} ("
                f" id bigserial PRIMARY KEY,"
                f" parent_id bigint REFERENCES tenant.{parent} (id),"
                f" country text REFERENCES shared.countries (code),"
                f" ref bigint NOT NULL DEFAULT nextval('tenant.t{i}_ref_seq'),"
                f" name text NOT NULL CHECK (name <> ''),"
                f" created timestamptz DEFAULT now());"
                f" CREATE INDEX t{i}_name_idx ON tenant.t{i} (lower(name));"
                f" CREATE INDEX t{i}_created_idx ON tenant.t{i} (created)"
                f" WHERE created IS NOT NULL;"
                f" COMMENT ON TABLE tenant.t{i} IS 'table {i} of the tenant (tenant.t{i})';"
            )
            if len(batch) == 250:
                conn.execute("BEGIN;" + "".join(batch) + "COMMIT;")
                batch = []
        if batch:
            conn.execute("BEGIN;" + "".join(batch) + "COMMIT;")
        conn.execute("SELECT nextval('tenant.t1_ref_seq') FROM generate_series(1, 5)")


def time_pg_dump(dsn: str) -> tuple[float, str]:
    """Wall time of one pg_dump --schema-only -n tenant, and its output."""
    args = [pg_bin("pg_dump"), "--schema-only", "--schema", '"tenant"', "--dbname", dsn]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, check=True)
    elapsed = time.perf_counter() - start
    return elapsed, proc.stdout.decode("utf-8")


def ours(dump: str, values: dict) -> DdlBundle:
    """Split + rename + guard: build_bundle applies the guard's rules to every final statement."""
    bundle = build_bundle(dump, {"tenant": "tenant_20240131120000"}, values)
    bundle.check_guard()
    return bundle


def pglast_floor(dump: str) -> float:
    """Seconds pglast alone needs: split, scan and parse+decode every statement (no renaming)."""
    gc.disable()
    try:
        start = time.perf_counter()
        for raw in parser.split(dump):
            parser.scan(raw)
            json.loads(parser.parse_sql_json(raw))
        return time.perf_counter() - start
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ra-ddl-bench-", dir="/tmp"))
    root.chmod(0o755)
    cluster = None
    try:
        # a scratch cluster: durability is irrelevant, building 3,000 tables should be quick
        cluster = start_new_cluster(
            root / "data", {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        )
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        dsn = cluster.dsn("bench")
        t0 = time.perf_counter()
        build_tenant(dsn, args.tables)
        print(f"built tenant: {args.tables} tables in {time.perf_counter() - t0:.1f}s")
        with psycopg.connect(dsn) as conn:
            values = read_sequence_values(conn, ["tenant"])

        # interleaved runs, so both sides see the same machine load; best of each
        _, dump = time_pg_dump(dsn)  # warm the catalog caches once
        dump = strip_restrict(dump)
        baseline: list[float] = []
        mine: list[float] = []
        bundle = None
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(args.runs):
            baseline.append(time_pg_dump(dsn)[0])
            bundle = None
            start = time.perf_counter()
            bundle = ours(dump, values)
            mine.append(time.perf_counter() - start)
        rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        assert bundle is not None and not bundle.unknown
        start = time.perf_counter()
        guard(bundle.pre + bundle.post, bundle.target_schemas)
        standalone_guard = time.perf_counter() - start
        floor = min(pglast_floor(dump) for _ in range(3))

        tracemalloc.start()
        ours(dump, values)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        base, mine_best = min(baseline), min(mine)
        print(f"dump: {len(dump.encode()) / 1e6:.1f} MB, {len(bundle.full)} statements")
        print(
            f"bundle: {len(bundle.pre)} pre, {len(bundle.post)} post statements,"
            f" {len(values)} sequences"
        )
        print(f"baseline pg_dump --schema-only: {base:.2f}s (best of {args.runs})")
        print(f"ours split+rename+guard:        {mine_best:.2f}s (best of {args.runs})")
        print(
            f"(a standalone guard() re-check of pre+post, as apply() does: {standalone_guard:.2f}s)"
        )
        print(f"(pglast alone: split + scan + parse + JSON decode of each statement: {floor:.2f}s)")
        print(f"peak memory (tracemalloc, Python heap): {peak / 1e6:.1f} MB")
        print(f"max RSS growth during timed runs (getrusage): {rss_growth:.1f} MB")
        print(f"ratio: {mine_best / base:.2f}")
    finally:
        if cluster is not None:
            cluster.remove()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
