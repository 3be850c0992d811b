"""Server restore on a managed fleet backed up by its own pgBackRest stanza (real pgbackrest).

`pgbackrest restore --delta` into a copy of the set-aside data directory: to a backup label or to a
point in time, the same port and DSN, the original put back intact after a failure, and nothing of
an abandoned timeline followed by later restores (the tool never writes to the repository itself).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from restore_assets.backends.local.audit import SqliteAuditLog
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.core.errors import InvalidRequest
from restore_assets.jobs.instance_restore import (
    plan_instance_restore_job,
    run_instance_restore_job,
)
from tests import faults
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import commit, execute, mark

pytestmark = [
    pytest.mark.integration,
]


@dataclass
class Prod:
    """A managed fleet with its own stanza: items seed-1..seed-50 in full backup `label`."""

    fleet: LocalFleet
    label: str
    at_label: list[str]
    config: dict[str, Any]

    @property
    def app(self) -> str:
        """DSN of the app database."""
        return self.fleet.production_dsn("app")

    def labels(self, dsn: str | None = None) -> list[str]:
        """The items' labels in id order."""
        return [r[0] for r in execute(dsn or self.app, "SELECT label FROM items ORDER BY id")]

    def timeline(self) -> int:
        """Production's current timeline."""
        return execute(
            self.fleet.production_dsn(), "SELECT timeline_id FROM pg_control_checkpoint()"
        )[0][0]

    def leftovers(self) -> list[str]:
        """Set-aside (or seeded) directories left under production/."""
        names = (p.name for p in (self.fleet.data_root / "production").iterdir() if p.is_dir())
        return sorted(n for n in names if n != "data")

    def histories(self) -> list[str]:
        """Timeline history files in the stanza's repository (read-only listing)."""
        repo = self.fleet.data_root / "pgbackrest" / "repo"
        return sorted(p.name for p in repo.rglob("*.history"))

    def audit(self, rid: str) -> dict[str, Any]:
        """The audit record of one run."""
        return SqliteAuditLog(self.fleet.root / "audit.sqlite").get(rid)

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """The instance_restore Dagster job, in process."""
        return run_instance_restore_job(request, self.config)


@pytest.fixture(scope="module")
def prod() -> Iterator[Prod]:
    root = scratch_dir("ra-pgbr-srv-")
    fleet = LocalFleet(root / "fleet")
    fleet.up(pgbackrest=True)
    try:
        execute(fleet.production_dsn(), "CREATE DATABASE app")
        app = fleet.production_dsn("app")
        execute(
            app,
            "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL,"
            " committed_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        execute(app, "INSERT INTO items (label) SELECT 'seed-' || g FROM generate_series(1, 50) g")
        label = fleet.snapshot("full").id
        at_label = [r[0] for r in execute(app, "SELECT label FROM items ORDER BY id")]
        commit(app, "after-full")
        config = root / "backend.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "backend": "local",
                    "root": str(fleet.root),
                    # a pgbackrest backup (incr) on the new timeline after each restore
                    "instance_restore": {"post_restore_snapshot": True},
                }
            )
        )
        yield Prod(
            fleet,
            label,
            at_label,
            {"backend": "local", "root": str(fleet.root), "config_file": str(config)},
        )
    finally:
        fleet.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


def test_plan_and_refusals_change_nothing(prod: Prod) -> None:
    datadir = prod.fleet.data_root / "production" / "data"
    inode = datadir.stat().st_ino
    plan = plan_instance_restore_job({"snapshot_id": prod.label}, prod.config)
    assert plan["preserved_configuration"]["pgbackrest_stanza"] == "production"
    assert plan["snapshot"]["id"] == prod.label
    first = prod.fleet.snapshots()[0]
    with pytest.raises(InvalidRequest, match="before the earliest snapshot"):
        plan_instance_restore_job({"restore_time": first.created_at.isoformat()}, prod.config)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with pytest.raises(InvalidRequest, match="in the future"):
        plan_instance_restore_job({"restore_time": future}, prod.config)
    with pytest.raises(InvalidRequest, match="unknown snapshot id"):
        plan_instance_restore_job({"snapshot_id": "20000101-000000F"}, prod.config)
    with pytest.raises(InvalidRequest, match="not both"):
        plan_instance_restore_job({"snapshot_id": prod.label, "restore_time": future}, prod.config)
    out = prod.run({"restore_time": future})
    assert out["status"] == "rejected" and "in the future" in out["cause"]
    assert datadir.stat().st_ino == inode and prod.leftovers() == []
    assert prod.fleet.production_cluster().is_running()


@pytest.mark.parametrize("fail_at", ["restore:after", "wait"])
def test_a_failure_before_verification_rolls_back_and_nothing_reaches_the_repository(
    prod: Prod, fail_at: str
) -> None:
    before, timeline, histories = prod.labels(), prod.timeline(), prod.histories()
    dsn = prod.fleet.production_dsn()
    with faults.fail_at(fail_at):
        out = prod.run({"snapshot_id": prod.label})
    assert out["status"] == "failed" and out["rolled_back"] is True, out["cause"]
    assert "injected failure" in out["cause"]
    assert prod.labels() == before and prod.timeline() == timeline
    assert prod.fleet.production_dsn() == dsn
    assert prod.leftovers() == []
    # the restored server promoted, but its archiving was held: no new timeline in the repository
    assert prod.histories() == histories
    assert prod.audit(out["restore_id"])["phases"][-1]["phase"] == "rollback"


def test_point_in_time_server_restore_after_then_before_changes(prod: Prod) -> None:
    commit(prod.app, "A")
    after_a = mark(prod.app)
    commit(prod.app, "B")
    after_b = mark(prod.app)
    commit(prod.app, "C")
    live = prod.labels()
    dsn, port, timeline = prod.fleet.production_dsn(), prod.fleet.config().port, prod.timeline()
    out = prod.run({"restore_time": after_b.isoformat()})
    assert out["status"] == "succeeded", out["cause"]
    assert prod.labels() == live[: live.index("B") + 1]
    assert prod.fleet.production_dsn() == dsn and prod.fleet.config().port == port
    assert prod.timeline() > timeline
    assert execute(prod.fleet.production_dsn(), "SHOW archive_mode")[0][0] == "on"
    assert out["wait"]["archiving"] == "released"
    post = out["wait"]["post_restore_snapshot"]
    assert post in [s.id for s in prod.fleet.snapshots() if s.kind == "pgbackrest-incr"]
    assert prod.leftovers() == []
    restored = next(p for p in prod.audit(out["restore_id"])["phases"] if p["phase"] == "restore")
    assert restored["metadata"]["by"] == "pgbackrest restore --delta"
    assert restored["metadata"]["snapshot"] == prod.label
    # and to a time before B, on the timeline the first restore left behind
    again = prod.run({"restore_time": after_a.isoformat()})
    assert again["status"] == "succeeded", again["cause"]
    assert prod.labels() == live[: live.index("A") + 1]
    assert prod.histories()  # the new timelines reached the repository once verified


def test_restore_to_a_backup_label(prod: Prod) -> None:
    commit(prod.app, "before-label-restore")
    out = prod.run({"snapshot_id": prod.label, "suffix": "label1"})
    assert out["status"] == "succeeded", out["cause"]
    assert prod.labels() == prod.at_label
    final = out["delete_old"]["final_snapshot"]
    assert Path(final["path"]).is_dir() and final["name"] == "production-final-label1"
    prod.fleet.switch_wal()  # archiving into the stanza works after the restore
    failed = execute(prod.fleet.production_dsn(), "SELECT failed_count FROM pg_stat_archiver")
    assert failed[0][0] == 0


def test_a_failure_after_archiving_was_released_keeps_later_restores_on_the_original(
    prod: Prod,
) -> None:
    commit(prod.app, "original-1")
    before, timeline = prod.labels(), prod.timeline()
    known = {s.id for s in prod.fleet.snapshots()}
    with faults.fail_at("delete_old"):
        out = prod.run({"snapshot_id": prod.label})
    assert out["status"] == "failed" and out["rolled_back"] is True, out["cause"]
    # the abandoned server's post-restore backup, then the original's after the rollback
    abandoned, original = [s for s in prod.fleet.snapshots() if s.id not in known]
    assert prod.labels() == before and prod.leftovers() == []
    rollback = prod.audit(out["restore_id"])["phases"][-1]
    assert any("above it" in a for a in rollback["metadata"]["actions"]), rollback
    # the original is on a timeline above the abandoned one: restores follow it
    assert prod.timeline() > timeline + 1
    commit(prod.app, "original-2")
    point = mark(prod.app)
    commit(prod.app, "original-3")
    temp = prod.fleet.provision("after-rollback", RestoreTarget(restore_time=point))
    try:
        labels = prod.labels(prod.fleet.temp_dsn(temp, "app"))
    finally:
        prod.fleet.delete_temp("after-rollback")
    assert labels == [*before, "original-2"], json.dumps(labels[-5:])
    # a time after the abandoned backup is consistent and before the original's is: recovery
    # along the original's timeline starts from a backup of one of its ancestors
    assert abandoned.completed_at is not None and original.completed_at is not None
    between = abandoned.completed_at + (original.completed_at - abandoned.completed_at) / 2
    refused = prod.fleet.source.refused_bases()
    assert abandoned.id in refused and original.id not in refused, refused
    temp = prod.fleet.provision("between-backups", RestoreTarget(restore_time=between))
    try:
        labels = prod.labels(prod.fleet.temp_dsn(temp, "app"))
    finally:
        prod.fleet.delete_temp("between-backups")
    assert temp.details["snapshot"] not in (abandoned.id, original.id), temp.details
    assert labels == before, json.dumps(labels[-5:])
    # the abandoned backup by its label: refused by name before anything is made
    with pytest.raises(InvalidRequest, match=f"{abandoned.id} cannot be restored.*timeline"):
        prod.fleet.provision("abandoned", RestoreTarget(snapshot_id=abandoned.id))
    assert not (prod.fleet.temp_root / "abandoned").exists()


def test_cli_plan_by_label_and_refused_time(prod: Prod) -> None:
    import argparse
    import contextlib
    import io

    from restore_assets.cli.server_restore import register
    from restore_assets.core.errors import RestoreError

    def cli(args: list[str]) -> tuple[int, str]:
        parser = argparse.ArgumentParser(prog="restore-assets")
        register(parser.add_subparsers(dest="command", required=True))
        ns = parser.parse_args(args)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                return ns.fn(ns), out.getvalue()
            except RestoreError as exc:  # main() turns it into exit code 2
                return 2, str(exc)

    root = str(prod.fleet.root)
    rc, text = cli(["restore-instance", "--root", root, "--snapshot-id", prod.label, "--plan"])
    assert rc == 0 and "pgbackrest_stanza" in text and prod.label in text
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    rc, text = cli(["restore-instance", "--root", root, "--restore-time", future, "--json"])
    assert rc == 2 and "in the future" in text
    assert prod.leftovers() == []


def test_kill_9_after_the_delta_restore_then_recover_rolls_back(prod: Prod) -> None:
    """The process dies with the restored server promoted (archiving held): --recover puts the
    original back and nothing of the abandoned timeline is in the repository."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    before, timeline, histories = prod.labels(), prod.timeline(), prod.histories()
    root = str(prod.fleet.root)
    rid = "pgbr-kill-1"
    marker = prod.fleet.root / "paused"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.run_paused", "restore:after", str(marker)]
        + ["restore-instance", "--root", root, "--snapshot-id", prod.label]
        + ["--restore-id", rid, "--suffix", "kill1", "--json"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "never paused after the restore step"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert prod.audit(rid)["status"] == "running"
    assert (prod.fleet.data_root / "production" / "data.old-kill1").is_dir()
    from restore_assets.cli import main as cli

    assert cli.main(["restore-instance", "--root", root, "--recover", rid, "--json"]) == 0
    rec = prod.audit(rid)
    assert rec["status"] == "failed" and "rolled back" in rec["cause"], rec["cause"]
    assert prod.labels() == before and prod.timeline() == timeline
    assert prod.leftovers() == [] and prod.histories() == histories


def test_point_in_time_needs_a_pgbackrest_fleet_and_a_managed_server(tmp_path: Path) -> None:
    from restore_assets.backends.local.server_restore import LocalInstanceBackend
    from restore_assets.core.server_restore.model import Described

    backend = LocalInstanceBackend(LocalFleet(tmp_path / "none"))
    plain = Described("production", "local-cluster", {"port": 5432, "pg_version": "15"})
    with pytest.raises(InvalidRequest, match="needs a fleet backed up by pgBackRest"):
        backend.check_restore_time(plain, datetime.now(UTC).isoformat())
    adopted = Described(
        "production",
        "pgbackrest-stanza",
        {"pgbackrest_stanza": "main"},
        details={"pgbackrest": True, "snapshot_only": True},
    )
    with pytest.raises(InvalidRequest, match="not available on a pgBackRest fleet"):
        backend.check_restore_time(adopted, datetime.now(UTC).isoformat())
    with pytest.raises(InvalidRequest, match="not available on a pgBackRest fleet"):
        backend.check_snapshot(adopted, "20261202-110834F")
