"""Provisioning benchmark: a small tenant's restore with selective provisioning against a full copy.

One managed local fleet: a tenant schema of --tenant-mb MB in database `tenant_db`, --other-mb MB
of other tenants' data in database `others_db` and --same-db-mb MB in another schema of `tenant_db`
(by default 1 GB each: the issue's 2 GB split between the two; selective provisioning zero-fills
both, the "schemas" path; with --schemas N, N small
tenants in `tenant_db`, 15 tables of 10 rows each, about 75 relations a tenant). One snapshot,
then writes to every database (a hot 1% of rows updated, three times, and inserts; every 97th row
with --spread-writes), then the restore point T, then more writes.

Each round restores the tenant at T twice with the whole `schema_restore` job (compare off), once
with selective provisioning (the default) and once with `full_provision`, in alternating order
(selective first in even rounds). Each restore runs as `restore-assets restore` does: the answer
comes as soon as the schema is complete and the temporary instance is removed after it, by a
detached process (`detach_cleanup`). Timed per restore:
- wall (the primary figure): request to the return of `run_schema_restore`, what a user waits for;
- rto: the audit record's request-to-answer time (from the record's creation, so without the
  job's start-up before it);
- phases: the sum of the audited phases before the answer (provision, DDL, data, post, ...);
  job: wall - phases, what the job itself costs (Dagster's run and its event log, the checks);
- removal: the detached process's audited removal of the temporary instance;
- total: request until that removal has finished (the next restore starts only then, so the
  removal never overlaps a timed restore; after it, an untimed `sync` lets the kernel finish
  writing back and discarding the removed files, so no restore is timed while the previous
  one's files are still being flushed).
With --cold, the snapshot's files (only those: POSIX_FADV_DONTNEED per file) are dropped from the
page cache before each restore, so both paths read the snapshot from disk, as they would a snapshot
larger than memory; without it the snapshot stays cached between restores (on a machine with memory
to spare, a full copy then moves bytes from memory to memory).
The audit record's provision metadata must name the path taken (selective / full). Every restored
schema must equal the first one (per-table row counts and checksums). Medians are printed, then
the RTO and total ratios, then the ratio against only the full restores that came right after
another full restore (a full copy has been faster there than after a selective restore, cause not
established: the full path's best case); the last line is `ratio: X` = median wall (selective) /
median wall (full).
Each timed restore starts after --pause seconds of rest (default 15): back to back (--pause 0),
a full copy right after another full restore was 2-3 times faster than after a selective one or
after a rest (warm and cold; the cause, below the tool, is not established), and alternation then
decided much of the baseline's figure.
Before the rounds, one untimed selective restore loads the job's code (the first restore of a
process pays it, and it would fall on round 0's selective restore alone).

    .venv/bin/python bench/provision_bench.py --rounds 5              # 50 MB tenant, 2 GB others
    .venv/bin/python bench/provision_bench.py --rounds 5 --cold       # the snapshot read from disk
    .venv/bin/python bench/provision_bench.py --other-mb 100 --same-db-mb 100   # a quick check
    .venv/bin/python bench/provision_bench.py --other-mb 0 --same-db-mb 0 --schemas 2000 --tenant-mb 5 --cold
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.backends.factory import build_services
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.jobs.launch import run_schema_restore

TENANT_DB = "tenant_db"
OTHERS_DB = "others_db"
TENANT = "tenant_small"
ROW_BYTES = 330  # a row of `payload` below takes about this much heap space
CHUNK_ROWS = 200_000

_CHECKSUM = (
    "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text"
    " FROM {} AS t"
)


def run(dsn: str, query: Any, params: tuple = ()) -> list[tuple]:
    """One statement in autocommit mode; its rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def fill(dsn: str, schema: str, table: str, mb: float) -> None:
    """A table of about mb megabytes of text rows, inserted in chunks."""
    name = sql.Identifier(schema, table)
    run(dsn, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    run(dsn, sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, payload text)").format(name))
    rows = int(mb * 1024 * 1024 / ROW_BYTES)
    done = 0
    while done < rows:
        n = min(CHUNK_ROWS, rows - done)
        run(
            dsn,
            sql.SQL(
                "INSERT INTO {} (payload) SELECT repeat(md5((g + %s)::text), 9)"
                " FROM generate_series(1, %s) g"
            ).format(name),
            (done, n),
        )
        done += n


def writes(dsn: str, schema: str, table: str, spread: bool, rounds: int = 3) -> None:
    """Updates and inserts: WAL between the snapshot and T.

    Default: each round updates a contiguous 1% of the rows (the hot, recent ones); spread=True
    updates every 97th row instead, which touches most of the table's pages.
    """
    name = sql.Identifier(schema, table)
    top = run(dsn, sql.SQL("SELECT max(id) FROM {}").format(name))[0][0] or 0
    for i in range(rounds):
        if spread:
            where, params = sql.SQL("id %% 97 = %s"), (i,)
        else:
            lo = int(top * (0.97 - 0.01 * i))
            where, params = sql.SQL("id > %s AND id <= %s"), (lo, lo + max(1, top // 100))
        run(
            dsn,
            sql.SQL("UPDATE {} SET payload = md5(payload) WHERE {}").format(name, where),
            params,
        )
        run(
            dsn,
            sql.SQL(
                "INSERT INTO {} (payload) SELECT md5(g::text) FROM generate_series(1, 1000) g"
            ).format(name),
        )


def sums(dsn: str, schema: str) -> dict[str, tuple]:
    """table -> (rows, checksum) of a schema, and its index count."""
    out: dict[str, tuple] = {}
    for (table,) in run(
        dsn,
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND relkind = 'r' ORDER BY 1",
        (schema,),
    ):
        out[table] = tuple(run(dsn, sql.SQL(_CHECKSUM).format(sql.Identifier(schema, table)))[0])
    out["#indexes"] = run(dsn, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s", (schema,))[
        0
    ]
    return out


def many_schemas(dsn: str, count: int, tables: int = 15) -> None:
    """count small tenants in the database: schemas small_NNNNN of `tables` tables of 10 rows
    (each table with its primary key index, its sequence, its TOAST table and index)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(count):
            schema = sql.Identifier(f"small_{i:05d}")
            stmts = [sql.SQL("CREATE SCHEMA {}").format(schema)]
            for k in range(tables):
                name = sql.Identifier(f"small_{i:05d}", f"tab{k}")
                stmts += [
                    sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, note text)").format(name),
                    sql.SQL(
                        "INSERT INTO {} (note) SELECT md5(g::text) FROM generate_series(1, 10) g"
                    ).format(name),
                ]
            conn.execute(sql.SQL("; ").join(stmts))


def setup(fleet: LocalFleet, args: argparse.Namespace) -> datetime:
    """The tenant and the others, a snapshot, writes, the restore point T, more writes."""
    dsn = fleet.up()
    for db in (TENANT_DB, OTHERS_DB):
        run(dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    tenant, others = fleet.production_dsn(TENANT_DB), fleet.production_dsn(OTHERS_DB)
    t0 = time.monotonic()
    fill(tenant, TENANT, "events", args.tenant_mb)
    parts = max(1, int(args.other_mb // 256))
    for i in range(parts):
        fill(others, f"other_{i}", "events", args.other_mb / parts)
    if args.same_db_mb:
        fill(tenant, "other_same_db", "events", args.same_db_mb)
    if args.schemas:
        many_schemas(tenant, args.schemas)
    run(tenant, "CHECKPOINT")
    print(f"setup: data loaded in {time.monotonic() - t0:.1f} s", flush=True)
    t0 = time.monotonic()
    snap = fleet.snapshot()
    print(
        f"setup: snapshot {snap.id} ({snap.size_bytes / 2**20:.0f} MB) in {time.monotonic() - t0:.1f} s"
    )
    spread = args.spread_writes
    writes(tenant, TENANT, "events", spread)
    for i in range(parts):
        writes(others, f"other_{i}", "events", spread)
    if args.same_db_mb:
        writes(tenant, "other_same_db", "events", spread)
    for i in range(0, args.schemas, 50):  # one tenant in 50 of the many small ones writes
        run(
            tenant,
            sql.SQL("INSERT INTO {} (note) SELECT 'w' FROM generate_series(1, 100)").format(
                sql.Identifier(f"small_{i:05d}", "tab0")
            ),
        )
    time.sleep(0.3)
    t = run(dsn, "SELECT clock_timestamp()")[0][0]
    time.sleep(0.3)
    writes(tenant, TENANT, "events", spread, rounds=1)
    writes(others, "other_0", "events", spread, rounds=1)
    fleet.window(refresh=True)
    return t


def evict_snapshots(fleet: LocalFleet) -> int:
    """Drop the snapshots' files from the page cache (each file flushed, then POSIX_FADV_DONTNEED):
    read from disk by the next restore, as a snapshot larger than memory would be. Only these
    files: nothing else on the machine loses its cache. Returns the bytes evicted."""
    total = 0
    for dirpath, _dirs, files in os.walk(fleet.config().backup_dir):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                total += os.fstat(fd).st_size
            finally:
                os.close(fd)
    return total


def wait_released(fleet: LocalFleet, restore_id: str, timeout: float = 600) -> dict[str, Any]:
    """Wait until the detached process recorded the temporary instance's removal; its phase."""
    audit = build_services({"root": str(fleet.root)}).audit
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = audit.get(restore_id)
        done = [p for p in rec["phases"] if p["metadata"].get("after_answer")]
        if done:
            if done[-1]["outcome"] != "succeeded":
                raise SystemExit(f"removing {restore_id}'s temporary instance failed: {done[-1]}")
            return done[-1]
        time.sleep(0.02)
    raise SystemExit(f"the temporary instance of {restore_id} was not removed within {timeout} s")


def restore_once(fleet: LocalFleet, t: datetime, mode: str, suffix: str) -> dict[str, Any]:
    """One schema restore at T: wall (request to return), RTO, removal, total, the audited path."""
    request = {
        "database": TENANT_DB,
        "schemas": [TENANT],
        "restore_time": t.isoformat(),
        "suffix": suffix,
        "full_provision": mode == "full",
    }
    t0 = time.monotonic()
    out = run_schema_restore(request, {"root": str(fleet.root)}, compare=False, detach_cleanup=True)
    wall = time.monotonic() - t0
    if out["status"] != "succeeded":
        raise SystemExit(f"{mode} restore failed: {out['cause']}")
    removal = wait_released(fleet, out["restore_id"])
    total = time.monotonic() - t0
    # untimed: the kernel writes back and discards (the root file system may be mounted with
    # `discard`) what this restore wrote and removed, before the next restore is timed
    os.sync()
    rec = build_services({"root": str(fleet.root)}).audit.get(out["restore_id"])
    prov = next(p for p in rec["phases"] if p["phase"] == "provision")
    # the phases before the answer, each as the runner timed it; the rest of wall is the job's own
    phases = sum(
        p["metadata"].get("seconds") or 0.0
        for p in rec["phases"]
        if not p["metadata"].get("after_answer")
    )
    path = prov["metadata"]["details"]["provisioning"]
    if path["mode"] != mode:
        raise SystemExit(f"asked for {mode} provisioning, the audit says {path}")
    return {
        "wall": wall,
        "provision": prov["metadata"]["seconds"],
        "rto": out.get("rto_s"),
        "phases": phases,
        "job": wall - phases,
        "removal": removal["metadata"].get("seconds", 0.0),
        "total": total,
        "copied": path.get("bytes_copied", 0),
        "zero": path.get("bytes_zero_filled", 0),
        "left_out": path.get("files_left_out", 0),
        "copy_s": path.get("copy_seconds", 0.0),
        "recovery_s": path.get("recovery_seconds", 0.0),
        "schema": f"{TENANT}_{suffix}",
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; print per-restore lines, medians and `ratio: X` last."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tenant-mb", type=float, default=50, help="the restored tenant (default 50)")
    ap.add_argument(
        "--other-mb", type=float, default=1024, help="other tenants, other database (default 1024)"
    )
    ap.add_argument(
        "--same-db-mb",
        type=float,
        default=1024,
        help="other tenants in another schema of the tenant's database (default 1024)",
    )
    ap.add_argument(
        "--schemas",
        type=int,
        default=0,
        help="other tenants as this many small schemas in the tenant's database (15 tables of"
        " 10 rows each; one in 50 written to after the snapshot)",
    )
    ap.add_argument(
        "--spread-writes",
        action="store_true",
        help="between snapshot and T update every 97th row (most pages) instead of a hot 1%%",
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (selective, full), at least 3")
    ap.add_argument(
        "--cold",
        action="store_true",
        help="before each restore, drop the snapshot's files (only those) from the page cache",
    )
    ap.add_argument(
        "--pause",
        type=float,
        default=15,
        help="seconds of rest before each timed restore (default 15; see the module's doc)",
    )
    ap.add_argument(
        "--root",
        help="scratch directory, made if missing and kept (default: a new one under /tmp, removed after)",
    )
    args = ap.parse_args(argv)
    if args.rounds < 3:
        ap.error("--rounds must be at least 3")
    if args.pause < 0:
        ap.error("--pause must not be negative")
    if args.root:
        base = Path(args.root)
        base.mkdir(parents=True, exist_ok=True)
    else:
        base = Path(tempfile.mkdtemp(prefix="ra-provbench-"))
    base.chmod(0o755)
    fleet = LocalFleet(base / "fleet")
    results: dict[str, list[dict[str, Any]]] = {"selective": [], "full": []}
    try:
        t = setup(fleet, args)
        tenant = fleet.production_dsn(TENANT_DB)
        # untimed: the first restore of a process also loads the job's code and definitions,
        # a cost the first timed restore (a selective one) would otherwise carry alone
        warm = restore_once(fleet, t, "selective", "warmup")
        print(f"warm-up (untimed): wall {warm['wall']:.2f} s", flush=True)
        reference = sums(tenant, warm["schema"])
        previous = "selective"  # the warm-up
        for r in range(args.rounds):
            order = ["selective", "full"] if r % 2 == 0 else ["full", "selective"]
            for mode in order:
                time.sleep(args.pause)
                if args.cold:
                    evict_snapshots(fleet)
                res = restore_once(fleet, t, mode, f"r{r}{mode[0]}")
                got = sums(tenant, res["schema"])
                if got != reference:
                    raise SystemExit(
                        f"round {r} {mode}: restored schema differs: {got} != {reference}"
                    )
                res["after"] = previous
                previous = mode
                results[mode].append(res)
                print(
                    f"round {r} {mode:9s}: wall {res['wall']:.2f} s, rto {res['rto']:.2f} s,"
                    f" provision {res['provision']:.2f} s (copy {res['copy_s']:.2f} s,"
                    f" recovery {res['recovery_s']:.2f} s), phases {res['phases']:.2f} s,"
                    f" job {res['job']:.2f} s, removal {res['removal']:.2f} s,"
                    f" total {res['total']:.2f} s, copied {res['copied'] / 2**20:.0f} MB,"
                    f" zero-filled {res['zero'] / 2**20:.0f} MB, left out {res['left_out']} files",
                    flush=True,
                )
        print(
            f"outputs: every restored schema equal ({len(reference or {}) - 1} tables, rows and checksums)"
        )
        keys = ("wall", "rto", "provision", "phases", "job", "removal", "total")
        med = {m: {k: statistics.median(x[k] for x in v) for k in keys} for m, v in results.items()}
        for m, v in med.items():
            print(f"median {m:9s}: " + ", ".join(f"{k} {v[k]:.2f} s" for k in keys))
        for k in ("rto", "total"):
            print(f"ratio ({k}): {med['selective'][k] / med['full'][k]:.3f}")
        # a full copy right after another full restore has been faster than one after a selective
        # restore (cause not established): the ratio against those alone, the full path's best case
        after_full = [x["wall"] for x in results["full"] if x["after"] == "full"]
        if after_full:
            best = statistics.median(after_full)
            print(
                f"full restores right after a full one ({len(after_full)}): median wall {best:.2f} s;"
                f" ratio (wall) against them: {med['selective']['wall'] / best:.3f}"
            )
        print(f"ratio: {med['selective']['wall'] / med['full']['wall']:.3f}")
    finally:
        fleet.down(purge=True)
        if not args.root:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
