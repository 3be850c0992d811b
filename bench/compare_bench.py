"""Benchmark: compare_schemas on a 2-million-row table pair against a plain hashing scan of both.

Baseline (same run, same cluster, same data): `SELECT count(*), sum(hashtext(t::text)) FROM s.t`
on each side - one pass over every row's text, the least any row-by-row comparison must do.
Rounds alternate baseline and comparison; each side's best time is kept (the machine may be
shared). The last line is `ratio: X` (comparison / baseline).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from restore_assets.backends.local.pg import start_new_cluster
from restore_assets.core.compare import compare_schemas

LIVE, RESTORED, TABLE = "tenant", "tenant_r", "orders"

DDL = """
CREATE TABLE {t} (
  id bigint PRIMARY KEY,
  customer_id int NOT NULL,
  status text NOT NULL,
  amount numeric(12, 2),
  created_at timestamptz,
  payload jsonb
)
"""

FILL = """
INSERT INTO {t}
SELECT g, g %% 1000, (ARRAY['new', 'paid', 'shipped'])[1 + g %% 3], (g %% 10000) / 100.0,
       '2024-01-01'::timestamptz + g * interval '1 minute',
       jsonb_build_object('k', g %% 97, 'tag', 'x' || (g %% 13))
  FROM generate_series(1, %(rows)s) g
"""

# A few thousand differences: deleted, updated and inserted since the restore point.
CHANGES = [
    "DELETE FROM {t} WHERE id %% 1000 = 1",
    "UPDATE {t} SET status = 'refunded' WHERE id %% 1000 = 2",
    "UPDATE {t} SET payload = payload || '{{\"note\": 1}}' WHERE id %% 2000 = 3",
    "INSERT INTO {t} SELECT g, 1, 'new', 1, now(), '{{}}'"
    " FROM generate_series(%(rows)s + 1, %(rows)s + 2000) g",
]

BASELINE = sql.SQL(
    "SELECT (SELECT row(count(*), sum(hashtext(t::text))) FROM {r} t),"
    " (SELECT row(count(*), sum(hashtext(t::text))) FROM {l} t)"
).format(r=sql.Identifier(RESTORED, TABLE), l=sql.Identifier(LIVE, TABLE))


def build(dsn: str, rows: int) -> dict[str, int]:
    """Create both schemas; return the differences the comparison must find."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in (RESTORED, LIVE):
            t = sql.Identifier(schema, TABLE)
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL(DDL).format(t=t))
            conn.execute(sql.SQL(FILL).format(t=t), {"rows": rows})
        live = sql.Identifier(LIVE, TABLE)
        for change in CHANGES:
            conn.execute(sql.SQL(change).format(t=live), {"rows": rows})
        for schema in (RESTORED, LIVE):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, TABLE)))
    deleted = len([g for g in range(1, rows + 1) if g % 1000 == 1])
    updated = len({g for g in range(1, rows + 1) if g % 1000 == 2 or g % 2000 == 3})
    return {"only_in_restored": deleted, "only_in_live": 2000, "changed": updated}


def timed(fn: Callable[[], None]) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    """Run the benchmark and print the ratio last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=None)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ra-compare-bench-", dir="/tmp"))
    root.chmod(0o755)
    cluster = None
    try:
        cluster = start_new_cluster(root / "data", {"shared_buffers": "'1GB'"})
        dsn = cluster.dsn()
        t0 = time.perf_counter()
        expected = build(dsn, args.rows)
        print(
            f"built 2 x {args.rows:,} rows in {time.perf_counter() - t0:.1f}s; expected {expected}"
        )

        def baseline() -> None:
            with psycopg.connect(dsn) as conn:
                conn.execute(BASELINE).fetchall()

        result = None

        def ours() -> None:
            nonlocal result
            result = compare_schemas(dsn, LIVE, RESTORED, parallel=args.parallel)

        baseline()  # warm the cache for both
        base_times, our_times = [], []
        for i in range(args.rounds):
            base_times.append(timed(baseline))
            our_times.append(timed(ours))
            print(f"round {i + 1}: baseline {base_times[-1]:.2f}s  compare {our_times[-1]:.2f}s")
        assert result is not None
        table = result.tables[TABLE]
        found = {
            "only_in_restored": table.only_in_restored,
            "only_in_live": table.only_in_live,
            "changed": table.changed,
        }
        if found != expected:
            print(f"WRONG ANSWER: found {found}, expected {expected}", file=sys.stderr)
            return 1
        print(f"changed columns: {table.changed_columns}")
        base, ours_best = min(base_times), min(our_times)
        print(f"baseline: {base:.2f}s (count + sum(hashtext(t::text)) over both sides)")
        print(f"compare_schemas: {ours_best:.2f}s")
        print(f"ratio: {ours_best / base:.2f}")
        return 0
    finally:
        if cluster is not None:
            cluster.remove()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
