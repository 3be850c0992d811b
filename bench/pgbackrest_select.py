"""Provisioning time of a pgBackRest fleet's temporary cluster: --db-include of the tenant's database
against a full restore, on a cluster where another database holds most of the data.

Usage: .venv/bin/python -m bench.pgbackrest_select [--bulk-rows N]
"""

from __future__ import annotations

import argparse
import shutil
import time

from restore_assets.backends.base import RestoreTarget
from restore_assets.backends.local.fleet import LocalFleet
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import commit, execute
from tests.integration.test_fleet_pgbackrest import make_stanza


def main() -> None:
    """Build the stanza, take a full backup, time both provisions (and print the sizes)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bulk-rows", type=int, default=2_000_000)
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
        for name, dbs in (("db-include tenants", ["tenants"]), ("full restore", None)):
            started = time.monotonic()
            db = fleet.provision(
                name.replace(" ", "-"), RestoreTarget(snapshot_id=snap.id), databases=dbs
            )
            took = time.monotonic() - started
            print(f"{name}: provisioned in {took:.1f} s (process-max {fleet._process_max()})")
            fleet.delete_temp(db.restore_id)
    finally:
        fleet.down(purge=True)
        st.cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
