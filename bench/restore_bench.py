"""Restore benchmark: our data + post phases vs `pg_dump -Fd -j2` + `pg_restore -j2` (what a DBA would run).

Both read the same schema from the same temporary cluster (restored from one snapshot of a demo tenant) and
write into the same production cluster. Prints the figures and, as its last line, `ratio: X` (ours / baseline).

    .venv/bin/python bench/restore_bench.py [--rows 500000] [--workers 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from restore_assets.backends.base import RestoreTarget
from restore_assets.backends.local import pg
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.demo import seed
from restore_assets.runner import run_schema_restore

SCHEMA = "customer_a1"
DATABASE = "tenant_a"


def main() -> None:
    """Seed, snapshot, run both restores, print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", "500000")))
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ra-bench-", dir="/tmp"))
    root.chmod(0o755)
    fleet = LocalFleet(root)
    try:
        fleet.up()
        t0 = time.monotonic()
        seed(fleet.production_dsn, rows=args.rows, layout={DATABASE: [SCHEMA]})
        with psycopg.connect(fleet.production_dsn(DATABASE)) as conn:
            size = conn.execute(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
                (SCHEMA,),
            ).fetchone()[0]
        print(
            f"seeded {SCHEMA} with rows={args.rows}: {int(size) / 1e9:.2f} GB in {time.monotonic() - t0:.0f}s"
        )
        snap = fleet.snapshot()

        # ours: the schema_restore job; data (copy) + post phases
        out = run_schema_restore(
            {"database": DATABASE, "schemas": [SCHEMA], "snapshot_id": snap.id, "suffix": "bench"},
            {"root": str(root), "copy_workers": args.workers},
            compare=False,
        )
        if out["status"] != "succeeded":
            raise SystemExit(f"restore failed: {out['cause']}")
        copy_s = out["phases"][f"copy:{SCHEMA}"]["seconds"]
        post_s = out["phases"]["post"]["seconds"]
        ours = copy_s + post_s

        # baseline: pg_dump -Fd -j2 of the schema from a temporary cluster, pg_restore -j2 into a scratch database
        temp = fleet.provision("bench-baseline", RestoreTarget(snapshot_id=snap.id))
        dump_dir = root / "dump"
        try:
            with psycopg.connect(fleet.production_dsn("postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE scratch")
            t0 = time.monotonic()
            subprocess.run(
                [
                    pg.pg_bin("pg_dump"),
                    "-Fd",
                    "-j2",
                    "-n",
                    SCHEMA,
                    "-f",
                    str(dump_dir),
                    fleet.temp_dsn(temp, DATABASE),
                ],
                check=True,
            )
            dump_s = time.monotonic() - t0
            t0 = time.monotonic()
            subprocess.run(
                [
                    pg.pg_bin("pg_restore"),
                    "-j2",
                    "--no-owner",
                    "-d",
                    fleet.production_dsn("scratch"),
                    str(dump_dir),
                ],
                check=True,
            )
            restore_s = time.monotonic() - t0
        finally:
            fleet.delete_temp("bench-baseline")
        baseline = dump_s + restore_s
        print(f"{'':32}{'seconds':>10}")
        print(f"{'ours: copy (parallel COPY)':32}{copy_s:>10.2f}")
        print(f"{'ours: post DDL + ANALYZE':32}{post_s:>10.2f}")
        print(f"{'ours: data + post':32}{ours:>10.2f}")
        print(f"{'baseline: pg_dump -Fd -j2':32}{dump_s:>10.2f}")
        print(f"{'baseline: pg_restore -j2':32}{restore_s:>10.2f}")
        print(f"{'baseline: total':32}{baseline:>10.2f}")
        print(f"ratio: {ours / baseline:.3f}")
    finally:
        fleet.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
