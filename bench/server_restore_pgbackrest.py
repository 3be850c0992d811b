"""Server restore time: a pgBackRest fleet (`pgbackrest restore --delta` into a copy of the set-aside
directory) against a base-backup fleet (copy of the base backup), same data, restore to a backup.

Usage: .venv/bin/python -m bench.server_restore_pgbackrest [--rows N] [--rounds R]

Each fleet gets a `bulk` database of N rows, one backup, then 2 % of the rows updated; every round
restores production in place from that backup (post-restore snapshot and final backup off, so only
the restore is timed) and updates another 2 %. Prints the `restore` step and whole-run seconds of
every round with their medians (pgBackRest: seed copy, --delta and recovery apart), the load
average, and, for reference, a plain `pgbackrest restore` of the same backup into an empty directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time

from restore_assets.backends.factory import server_restore_services
from restore_assets.backends.local import pg
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.core.server_restore.steps import run_instance_restore
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import execute


def fleet_with_data(root: str, pgbackrest: bool, rows: int) -> tuple[LocalFleet, str]:
    """A managed fleet (base backups or its own stanza) with `bulk` and one backup."""
    fleet = LocalFleet(root)
    fleet.up(pgbackrest=pgbackrest)
    execute(fleet.production_dsn(), "CREATE DATABASE bulk")
    bulk = fleet.production_dsn("bulk")
    execute(
        bulk,
        "CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 4) AS pad"
        f" FROM generate_series(1, {int(rows)}) g",
    )
    snap = fleet.snapshot("full" if pgbackrest else None).id
    execute(bulk, "UPDATE filler SET pad = 'changed' WHERE g %% 50 = 0")
    return fleet, snap


def time_fleet(root: str, pgbackrest: bool, rows: int, rounds: int) -> dict:
    """Build one fleet, restore it in place `rounds` times, remove it; return the timings."""
    fleet = LocalFleet(root)
    try:
        fleet, snap = fleet_with_data(root, pgbackrest, rows)
        services = server_restore_services(
            {
                "backend": "local",
                "root": str(fleet.root),
                "instance_restore": {"post_restore_snapshot": False, "final_backup": False},
            }
        )
        runs = []
        for i in range(rounds):
            t0 = time.monotonic()
            res = run_instance_restore(services, {"snapshot_id": snap, "suffix": f"b{i}"})
            total = time.monotonic() - t0
            assert res["status"] == "succeeded", res["cause"]
            phases = services.audit.get(res["restore_id"])["phases"]
            meta = next(p for p in phases if p["phase"] == "restore")["metadata"]
            runs.append(
                {
                    "restore_step_s": res["steps"]["restore"]["seconds"],
                    "run_s": round(total, 3),
                    **({"parts_s": meta["timings_s"]} if "timings_s" in meta else {}),
                }
            )
            execute(
                fleet.production_dsn("bulk"), f"UPDATE filler SET pad = 'r{i}' WHERE g %% 50 = 1"
            )
        out: dict = {
            "runs": runs,
            "median_restore_step_s": statistics.median(r["restore_step_s"] for r in runs),
            "median_run_s": statistics.median(r["run_s"] for r in runs),
        }
        source = fleet.pgbackrest
        if source is not None:
            plain = fleet.data_root / "bench-plain-restore"
            fleet.manifest.record(plain)
            os.mkdir(plain, 0o700)
            pg.give_to_server_user(plain)
            t0 = time.monotonic()
            source.repo.restore(
                plain,
                snap,
                RestoreTarget(snapshot_id=snap),
                None,
                source.process_max,
                fleet.data_root / "bench-plain-tablespaces",
            )
            out["plain_restore_into_empty_dir_s"] = round(time.monotonic() - t0, 3)
            fleet.manifest.remove(plain)
        return out
    finally:
        if fleet.exists():
            fleet.down(purge=True)


def main() -> None:
    """Time the server restore on both fleets; print JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    base = scratch_dir("ra-bench-srv-")
    out: dict[str, dict] = {}
    try:
        for kind in ("base-backups", "pgbackrest"):
            out[kind] = time_fleet(str(base / kind), kind == "pgbackrest", args.rows, args.rounds)
    finally:
        out["load_average"] = {"1m_5m_15m": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(out, indent=1))
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
