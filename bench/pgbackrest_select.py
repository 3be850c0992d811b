"""Provisioning time of a pgBackRest fleet's temporary cluster: --db-include of the tenant's database
against a full restore, on a cluster where another database holds most of the data.

Usage: .venv/bin/python -m bench.pgbackrest_select [--bulk-rows N] [--rounds R]

Both provisions run in every round, in alternating order; medians are printed, and the last line is
`ratio: X` = median --db-include / median full restore. Each provisioned database is checked to hold
the tenant's rows (the same on both paths).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import commit, execute
from tests.integration.test_fleet_pgbackrest import make_stanza


def main() -> None:
    """Build the stanza, take a full backup, time both provisions (and print the sizes)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bulk-rows", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    base = scratch_dir("ra-pgbr-bench-")
    st = make_stanza(base, "bench")
    fleet = LocalFleet(base / "fleet")
    try:
        dsn = st.cluster.dsn()
        execute(dsn, "CREATE DATABASE tenants")
        execute(dsn, "CREATE DATABASE bulk")
        execute(
            st.cluster.dsn("bulk"),
            "CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 3) AS pad"
            f" FROM generate_series(1, {int(args.bulk_rows)}) g",
        )
        tdsn = st.cluster.dsn("tenants")
        execute(tdsn, "CREATE TABLE items (id serial PRIMARY KEY, label text)")
        commit(tdsn, "seed")
        sizes = execute(dsn, "SELECT datname, pg_database_size(datname) FROM pg_database")
        st.pgbackrest("bench", "backup", "--type=full")
        fleet.adopt_pgbackrest(dsn, "bench", str(st.config))
        snap = fleet.snapshots()[-1]
        print("database sizes (bytes):", dict(sizes), "backup:", snap.size_bytes)
        paths = [("db-include tenants", ["tenants"]), ("full restore", None)]
        times: dict[str, list[float]] = {name: [] for name, _ in paths}
        for r in range(max(3, args.rounds)):
            for name, dbs in paths if r % 2 == 0 else paths[::-1]:
                started = time.monotonic()
                db = fleet.provision(
                    f"{name.replace(' ', '-')}-{r}",
                    RestoreTarget(snapshot_id=snap.id),
                    databases=dbs,
                )
                took = time.monotonic() - started
                rows = execute(fleet.temp_dsn(db, "tenants"), "SELECT count(*) FROM items")[0][0]
                assert rows == 1, f"{name}: the tenant's table holds {rows} rows, expected 1"
                times[name].append(took)
                print(f"round {r + 1} {name}: provisioned in {took:.1f} s", flush=True)
                fleet.delete_temp(db.restore_id)
        med = {name: statistics.median(t) for name, t in times.items()}
        for name, m in med.items():
            print(f"median {name}: {m:.2f} s (process-max {fleet.pgbackrest.process_max})")
        print(f"ratio: {med['db-include tenants'] / med['full restore']:.3f}")
    finally:
        fleet.down(purge=True)
        st.cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
