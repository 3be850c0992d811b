"""Chaos: randomized trials against a real local fleet, each followed by the safety invariants.

Trials (one of each kind per run, in a seeded random order, with seeded random parameters):
- kill: `kill -9` of a restore process paused at a random phase (before or after its work) or in the
  middle of its copy (one table committed, the next one pending), then the crash path
  (`restore-assets cleanup --restore-id`);
- concurrent: two restore processes of the same target schema started together;
- reused-id: a finished restore's id used again, then `cleanup` of that id.

After every trial: no temporary cluster or postmaster left, no partial schema, no succeeded
restore touched, live and other tenants unchanged (row checksums), the audit log consistent.
`CHAOS_SEED=<n>` replays a run (the seed is printed); `CHAOS_TRIALS=<n>` runs more trials.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from restore_assets.backends.factory import build_services
from restore_assets.cli import main as cli
from restore_assets.core.schema_restore.services import ARTIFACT_RESOURCE, SCHEMA_RESOURCE
from tests.conftest import REPO
from tests.integration.fleet_helpers import postmasters_under

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SCHEMAS = {"tenant_a": ("customer_a1", "customer_a2"), "tenant_b": ("customer_b1", "customer_b2")}
KILL_POINTS = (
    "topology",
    "provision",
    "provision:after",
    "ddl",
    "pre",
    "pre:after",
    "mid-copy",
    "copy",
    "copy:after",
    "post",
    "post:after",
    "compare",
    "compare:after",
    "cleanup",
)
KINDS = ("kill", "concurrent", "reused-id")
WAIT = (
    240  # seconds a child may take to reach its pause (a guard against hanging, not a timing check)
)


# ---------------------------------------------------------------------------- observations
def schemas_with_checksums(dsn: str) -> dict[str, dict[str, str]]:
    """schema -> {table: md5 of its rows} for every user schema of a database."""
    out: dict[str, dict[str, str]] = {}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_namespace n"
            " LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind = 'r'"
            " WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
            " ORDER BY 1, 2"
        ).fetchall()
        for schema, table in rows:
            tables = out.setdefault(schema, {})
            if table is None:
                continue
            q = sql.SQL(
                "SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {}.{} x"
            ).format(sql.Identifier(schema), sql.Identifier(table))
            tables[table] = conn.execute(q).fetchone()[0]
    return out


def schema_oid(dsn: str, schema: str) -> int | None:
    """The oid of a schema, None when it does not exist."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT oid::int FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return row[0] if row else None


class Chaos:
    """The fleet, the random source, and what the trials have left (to check it is kept)."""

    def __init__(self, fleet, rng: random.Random, seed: int, tmp: Path) -> None:
        self.fleet, self.rng, self.seed, self.tmp = fleet, rng, seed, tmp
        self.root = str(fleet.root)
        self.audit = build_services({"root": self.root}).audit
        self.dsns = {db: fleet.production_dsn(db) for db in SCHEMAS}
        self.rids: list[str] = []  # every restore id a trial used
        self.succeeded: dict[
            str, tuple[str, str, int, dict[str, str]]
        ] = {}  # rid -> db, schema, oid, sums
        self.closed: dict[str, tuple] = {}  # rid -> (status, finished_at, cause) once final
        self.n = 0

    # ------------------------------------------------------------------ helpers
    def where(self) -> str:
        return f"(chaos seed {self.seed}, trial {self.n})"

    def new_id(self, tag: str) -> str:
        rid = f"chaos-{self.seed % 100000}-{self.n}-{tag}"
        self.rids.append(rid)
        return rid

    def pick(self) -> tuple[str, str]:
        database = self.rng.choice(sorted(SCHEMAS))
        return database, self.rng.choice(SCHEMAS[database])

    def restore_args(self, rid: str, database: str, schema: str, suffix: str) -> list[str]:
        point = datetime.now(UTC)
        time.sleep(0.2)
        return [
            "restore", "--root", self.root, "--database", database, "--schema", schema,
            "--restore-time", point.isoformat(), "--suffix", suffix, "--restore-id", rid, "--json",
        ]  # fmt: skip

    def spawn(self, argv: list[str], name: str) -> subprocess.Popen:
        err = open(self.tmp / f"{name}.err", "w")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )

    def stderr(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text()[-3000:]

    def cli(self, *argv: str) -> int:
        return cli.main(list(argv))

    # ------------------------------------------------------------------ trials
    def trial_kill(self) -> str:
        point = self.rng.choice(KILL_POINTS)
        database, schema = self.pick()
        rid = self.new_id("kill")
        marker = self.tmp / f"paused-{rid}"
        name = f"kill-{rid}"
        proc = self.spawn(
            ["-m", "tests.run_paused", point, str(marker),
             *self.restore_args(rid, database, schema, f"k{self.n}")],
            name,
        )  # fmt: skip
        deadline = time.monotonic() + WAIT
        try:
            while not marker.exists():
                assert proc.poll() is None, f"{self.where()} exited early: {self.stderr(name)}"
                assert time.monotonic() < deadline, f"{self.where()} never paused at {point}"
                time.sleep(0.2)
            time.sleep(self.rng.uniform(0, 0.5))
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)  # the restore process only, as a crash would
            proc.wait()
        assert self.audit.get(rid)["status"] == "running", self.where()  # it never finished
        # what the crash left for the crash path to remove
        stage = KILL_POINTS.index(point)
        if stage >= KILL_POINTS.index("provision:after"):
            assert [t["restore_id"] for t in self.fleet.temp_instances()] == [rid], self.where()
        if stage >= KILL_POINTS.index("pre:after"):
            target = f"{schema}_k{self.n}"
            assert schema_oid(self.dsns[database], target) is not None, self.where()
        assert self.cli("cleanup", "--root", self.root, "--restore-id", rid, "--json") == 0
        rec = self.audit.get(rid)
        assert rec["status"] == "failed", (self.where(), rec["status"], rec["cause"])
        # the killed process's session: whatever it left running (e.g. a report kernel) goes too
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return f"kill -9 at {point} of {database}.{schema}"

    def trial_concurrent(self) -> str:
        database, schema = self.pick()
        suffix = f"c{self.n}"
        rids = [self.new_id("a"), self.new_id("b")]
        delay = self.rng.uniform(0, 2.0)  # the second arrives at once or while the first runs
        procs = []
        for r in rids:
            argv = [
                "-m",
                "restore_assets.cli.main",
                *self.restore_args(r, database, schema, suffix),
            ]
            procs.append(self.spawn(argv, r))
            time.sleep(delay)
        outs = {}
        for rid, proc in zip(rids, procs, strict=True):
            stdout, _ = proc.communicate(timeout=WAIT * 2)
            assert stdout.strip(), f"{self.where()} {rid}: {self.stderr(rid)}"
            outs[rid] = json.loads(stdout)
            assert proc.returncode == {"succeeded": 0, "rejected": 2}.get(outs[rid]["status"], 1)
        statuses = sorted(o["status"] for o in outs.values())
        assert statuses == ["rejected", "succeeded"], (self.where(), outs)
        winner = next(r for r, o in outs.items() if o["status"] == "succeeded")
        loser = next(r for r in rids if r != winner)
        assert self.audit.get(loser)["resources"] == [], self.where()  # the loser created nothing
        cause = outs[loser]["cause"]
        assert f"being restored by restore {winner}" in cause or "already exist" in cause, cause
        self.wait_released(winner)
        self.keep(winner, database, f"{schema}_{suffix}")
        return (
            f"two restores of {database}.{schema}_{suffix}, the second {delay:.1f}s later:"
            f" {winner} won"
        )

    def trial_reused_id(self) -> str:
        if not self.succeeded:  # a finished restore to reuse the id of
            database, schema = self.pick()
            rid = self.new_id("base")
            assert self.cli(*self.restore_args(rid, database, schema, f"r{self.n}")) == 0
            self.wait_released(rid)
            self.keep(rid, database, f"{schema}_r{self.n}")
            self.closed[rid] = self.final(rid)
        rid = self.rng.choice(sorted(self.succeeded))
        database, schema = self.pick()
        assert self.cli(*self.restore_args(rid, database, schema, f"u{self.n}")) == 2, self.where()
        assert schema_oid(self.dsns[database], f"{schema}_u{self.n}") is None
        assert self.cli("cleanup", "--root", self.root, "--restore-id", rid, "--json") == 0
        return f"restore id {rid} reused for {database}.{schema}, then cleaned up"

    def wait_released(self, rid: str) -> None:
        """Wait until a succeeded restore's detached release of its temporary server has ended."""
        deadline = time.monotonic() + WAIT
        while not any(
            p["phase"] == "cleanup" and p["metadata"].get("after_answer")
            for p in self.audit.get(rid)["phases"]
        ):
            assert time.monotonic() < deadline, f"{self.where()} {rid}: release never ended"
            time.sleep(0.3)

    # ------------------------------------------------------------------ invariants
    def keep(self, rid: str, database: str, target: str) -> None:
        dsn = self.dsns[database]
        oid = schema_oid(dsn, target)
        assert oid is not None, self.where()
        self.succeeded[rid] = (database, target, oid, schemas_with_checksums(dsn)[target])

    def final(self, rid: str) -> tuple:
        rec = self.audit.get(rid)
        return rec["status"], rec["finished_at"], rec["cause"]

    def check(self, before: dict[str, dict[str, dict[str, str]]]) -> None:
        """Every invariant, after one trial."""
        where = self.where()
        # no temporary cluster, no postmaster of one
        assert self.fleet.temp_instances() == [], where
        data_root = Path(getattr(self.fleet, "data_root", self.fleet.root))
        assert postmasters_under(data_root / "temp") == [], where
        assert postmasters_under(Path(self.root) / "temp") == [], where
        mine = {target for _db, target, _oid, _sums in self.succeeded.values()}
        for database, dsn in self.dsns.items():
            now = schemas_with_checksums(dsn)
            # live and other tenants unchanged; nothing but succeeded restores appeared
            for schema, sums in before[database].items():
                assert now.get(schema) == sums, (where, database, schema)
            appeared = set(now) - set(before[database])
            assert appeared <= mine, (where, database, appeared - mine)  # no partial schema
            # every succeeded restore: the same schema (oid), the same rows, equal to its live one
            for rid, (db, target, oid, sums) in self.succeeded.items():
                if db != database:
                    continue
                assert schema_oid(dsn, target) == oid, (where, rid, target)
                assert now[target] == sums, (where, rid, target)
                live = target.rsplit("_", 1)[0]
                assert now[target] == now[live], (where, rid, target)  # complete (live is static)
        self.check_audit()

    def check_audit(self) -> None:
        where = self.where()
        for rid in self.rids:
            rec = self.audit.get(rid)
            assert rec["status"] in ("succeeded", "failed", "rejected"), (where, rid, rec["status"])
            if rec["status"] == "rejected":
                assert rec["resources"] == [], (where, rid)
            for res in rec["resources"]:
                details = res["details"]
                if res["kind"] == SCHEMA_RESOURCE:
                    present = schema_oid(self.dsns[details["database"]], details["schema"])
                    if rec["status"] == "succeeded":
                        assert present is not None and present == details.get("oid"), (where, rid)
                        assert res["deleted_at"] is None, (where, rid)
                    else:  # a failed restore left no schema of its own
                        assert present is None or present != details.get("oid"), (where, rid)
                elif res["kind"] != ARTIFACT_RESOURCE:  # temporary resources are all gone
                    assert res["deleted_at"] is not None, (where, rid, res["kind"])
            if rid in self.closed:  # a final record is never rewritten
                assert self.final(rid) == self.closed[rid], (where, rid)
            else:
                self.closed[rid] = self.final(rid)

    def drop_succeeded(self) -> None:
        """Drop the schemas the trials restored, through the explicit, audited command."""
        for rid, (database, target, _oid, _sums) in self.succeeded.items():
            rc = self.cli(
                "drop-restored", "--root", self.root, "--restore-id", rid, "--yes-drop-restored"
            )
            if rc != 0 or schema_oid(self.dsns[database], target) is not None:
                with psycopg.connect(self.dsns[database], autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target))
                    )


def test_chaos(demo_fleet, tmp_path, capsys):
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 10**9))
    trials = int(os.environ.get("CHAOS_TRIALS") or len(KINDS))
    with capsys.disabled():
        print(f"\nchaos seed: {seed} (replay with CHAOS_SEED={seed})")
    rng = random.Random(seed)
    chaos = Chaos(demo_fleet, rng, seed, tmp_path)
    kinds = rng.sample(KINDS, len(KINDS))
    kinds += [rng.choice(KINDS) for _ in range(trials - len(kinds))]
    try:
        for chaos.n, kind in enumerate(kinds[:trials], 1):
            before = {db: schemas_with_checksums(dsn) for db, dsn in chaos.dsns.items()}
            t0 = time.monotonic()
            what = getattr(chaos, f"trial_{kind.replace('-', '_')}")()
            chaos.check(before)
            with capsys.disabled():
                print(
                    f"chaos trial {chaos.n}: {what}: invariants hold ({time.monotonic() - t0:.1f}s)"
                )
    finally:
        chaos.drop_succeeded()
