"""Instance restore in place on the local fleet (real PostgreSQL): same port and DSN, snapshot's data,
the original put back intact after a failure at any step, point-in-time restores still working."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from restore_assets.backends.local import pg as pg_local
from restore_assets.backends.local.audit import SqliteAuditLog
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.jobs.instance_restore import (
    plan_instance_restore_job,
    run_instance_restore_job,
)
from tests import faults
from tests.conftest import REPO, scratch_dir
from tests.notebooks.runbook import marked, notebook_text
from tests.unit.test_alerts import SlackStandIn, slack_stand_in

pytestmark = pytest.mark.integration


def sql(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    """Run one statement in autocommit mode; return its rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def checksum(dsn: str) -> str:
    """A checksum over every row of app.items."""
    return sql(dsn, "SELECT md5(coalesce(string_agg(i::text, '|' ORDER BY id), '')) FROM items i")[
        0
    ][0]


@dataclass
class Prod:
    """A managed fleet: app.items rows 1-100 in snapshot `snap`, rows 101-150 after it."""

    fleet: LocalFleet
    snap: str
    snap_checksum: str
    backend_config: dict[str, Any]
    slack: SlackStandIn

    @property
    def app(self) -> str:
        """DSN of the app database."""
        return self.fleet.production_dsn("app")

    def audit(self, rid: str) -> dict[str, Any]:
        """The audit record of one run."""
        return SqliteAuditLog(self.fleet.root / "audit.sqlite").get(rid)

    def leftovers(self) -> list[str]:
        """Set-aside data directories under production/."""
        aside = (self.fleet.root / "production").glob("data.old-*")
        return sorted(p.name for p in aside if p.is_dir())

    def timeline(self) -> int:
        """Production's current timeline."""
        return sql(self.fleet.production_dsn(), "SELECT timeline_id FROM pg_control_checkpoint()")[
            0
        ][0]


@pytest.fixture(scope="module")
def prod() -> Iterator[Prod]:
    root = scratch_dir("ra-inst-")
    fleet = LocalFleet(root / "fleet")
    fleet.up()
    try:
        sql(fleet.production_dsn(), "CREATE DATABASE app")
        sql(fleet.production_dsn("app"), "CREATE TABLE items (id int PRIMARY KEY, label text)")
        sql(
            fleet.production_dsn("app"),
            "INSERT INTO items SELECT g, 'before-' || g FROM generate_series(1, 100) g",
        )
        snap = fleet.snapshot().id
        snap_checksum = checksum(fleet.production_dsn("app"))
        sql(
            fleet.production_dsn("app"),
            "INSERT INTO items SELECT g, 'after-' || g FROM generate_series(101, 150) g",
        )
        with slack_stand_in() as slack:
            config = root / "backend.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "backend": "local",
                        "root": str(fleet.root),
                        "alerts": {"slack_webhook_url": slack.url},
                        # later PITRs then start from the snapshot taken before the restore,
                        # following the new timeline (and the tests run faster)
                        "instance_restore": {"post_restore_snapshot": False},
                    }
                )
            )
            yield Prod(
                fleet,
                snap,
                snap_checksum,
                {"backend": "local", "root": str(fleet.root), "config_file": str(config)},
                slack,
            )
    finally:
        fleet.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


def test_plan_shows_the_preserved_configuration_and_changes_nothing(prod: Prod) -> None:
    datadir = prod.fleet.root / "production" / "data"
    inode = datadir.stat().st_ino
    plan = plan_instance_restore_job({"snapshot_id": prod.snap}, prod.backend_config)
    cfg = plan["preserved_configuration"]
    assert cfg["port"] == prod.fleet.config().port and cfg["dsn"] == prod.fleet.production_dsn()
    assert cfg["settings"]["archive_mode"] == "on" and "pg_hba.conf" in cfg["config_files"]
    assert plan["snapshot"]["id"] == prod.snap
    assert any("rename" in s for s in plan["steps"])
    assert datadir.stat().st_ino == inode and prod.fleet.production_cluster().is_running()
    assert prod.leftovers() == []
    assert SqliteAuditLog(prod.fleet.root / "audit.sqlite").history() == []


# ---------------------------------------------------------------------------- staging refresh
def refresh(prod: Prod, schemas: list[str]) -> Any:
    """Run the staging_refresh job in process on the module's fleet."""
    from restore_assets.jobs.resources import RestoreBackend
    from restore_assets.jobs.schedules import staging_refresh

    return staging_refresh.execute_in_process(
        run_config={
            "ops": {"refresh_staging": {"config": {"database": "app", "schemas": schemas}}}
        },
        resources={"backend": RestoreBackend(root=str(prod.fleet.root))},
        raise_on_error=False,
    )


def test_staging_refresh_drops_the_previous_copy_and_restores_the_latest_point(prod: Prod) -> None:
    sql(prod.app, "CREATE SCHEMA customer_a")
    sql(prod.app, "CREATE TABLE customer_a.users (id int PRIMARY KEY, name text)")
    sql(prod.app, "INSERT INTO customer_a.users SELECT g, 'v1' FROM generate_series(1, 20) g")
    first = refresh(prod, ["customer_a"])
    assert first.success
    assert sql(prod.app, "SELECT count(*), min(name) FROM customer_a_staging.users") == [(20, "v1")]
    sql(prod.app, "UPDATE customer_a.users SET name = 'v2'")
    sql(prod.app, "INSERT INTO customer_a.users VALUES (21, 'v2')")
    second = refresh(prod, ["customer_a"])
    assert second.success
    assert second.output_for_node("refresh_staging")["dropped"] == ["customer_a_staging"]
    assert sql(prod.app, "SELECT count(*), min(name) FROM customer_a_staging.users") == [(21, "v2")]


def test_staging_refresh_never_drops_a_schema_it_did_not_create(prod: Prod) -> None:
    sql(prod.app, "CREATE SCHEMA customer_b")
    sql(prod.app, "CREATE SCHEMA customer_b_staging")
    sql(prod.app, "CREATE TABLE customer_b_staging.keep (id int)")
    result = refresh(prod, ["customer_b"])
    assert not result.success
    assert sql(prod.app, "SELECT count(*) FROM customer_b_staging.keep") == [(0,)]


def _schemas(prod: Prod, like: str) -> list[str]:
    return [
        r[0]
        for r in sql(
            prod.app, "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1", (like,)
        )
    ]


def _oid(prod: Prod, schema: str) -> int:
    return sql(prod.app, "SELECT oid::int FROM pg_namespace WHERE nspname = %s", (schema,))[0][0]


def test_staging_refresh_keeps_a_previous_copy_that_a_view_elsewhere_depends_on(prod: Prod) -> None:
    """A view in another schema reads the staging copy: the refresh swaps the new copy in, keeps
    the previous one (renamed `_old_`) instead of dropping it with the view, and lists the view."""
    sql(prod.app, "CREATE SCHEMA customer_c")
    sql(prod.app, "CREATE TABLE customer_c.users (id int PRIMARY KEY, name text)")
    sql(prod.app, "INSERT INTO customer_c.users SELECT g, 'v1' FROM generate_series(1, 5) g")
    assert refresh(prod, ["customer_c"]).success
    first_oid = _oid(prod, "customer_c_staging")
    sql(prod.app, "CREATE SCHEMA reports")
    sql(prod.app, "CREATE VIEW reports.c_users AS SELECT id, name FROM customer_c_staging.users")
    sql(prod.app, "UPDATE customer_c.users SET name = 'v2'")
    second = refresh(prod, ["customer_c"])
    assert second.success
    out = second.output_for_node("refresh_staging")
    assert out["dropped"] == []
    [old] = list(out["kept"])
    assert old.startswith("customer_c_staging_old_") and _oid(prod, old) == first_oid
    assert any("reports.c_users" in d for d in out["kept"][old]), out["kept"]
    assert any("reports.c_users" in w for w in out["warnings"])
    # the new copy is in place; the view still reads the previous copy (PostgreSQL binds by oid)
    assert sql(prod.app, "SELECT DISTINCT name FROM customer_c_staging.users") == [("v2",)]
    assert sql(prod.app, "SELECT DISTINCT name FROM reports.c_users") == [("v1",)]
    assert _schemas(prod, "customer\\_c\\_staging\\_new\\_%") == []


@pytest.mark.parametrize("fail_at", ["post", "staging_swap"])
def test_a_failed_staging_refresh_leaves_the_previous_copy_in_place(
    prod: Prod, fail_at: str
) -> None:
    """The restore fails mid-way (post DDL), or the refresh fails just before the swap: the
    previous `<schema>_staging` is the same schema with the same rows, and no new copy is left."""
    schema = f"customer_d{fail_at[0]}"
    sql(prod.app, f"CREATE SCHEMA {schema}")
    sql(prod.app, f"CREATE TABLE {schema}.users (id int PRIMARY KEY, name text)")
    sql(prod.app, f"INSERT INTO {schema}.users SELECT g, 'v1' FROM generate_series(1, 7) g")
    assert refresh(prod, [schema]).success
    before = _oid(prod, f"{schema}_staging")
    sql(prod.app, f"UPDATE {schema}.users SET name = 'v2'")
    with faults.fail_at(fail_at):
        failed = refresh(prod, [schema])
    assert not failed.success
    assert _oid(prod, f"{schema}_staging") == before
    assert sql(prod.app, f"SELECT count(*), min(name) FROM {schema}_staging.users") == [(7, "v1")]
    assert _schemas(prod, f"{schema}\\_staging\\_%") == []


@pytest.mark.parametrize("fail_at", ["set_aside:after", "restore:after", "wait", "delete_old"])
def test_a_failure_after_the_rename_puts_the_original_back_intact(prod: Prod, fail_at: str) -> None:
    before = checksum(prod.app)
    dsn, timeline = prod.fleet.production_dsn(), prod.timeline()
    history = sorted(p.name for p in prod.fleet.archive_dir.glob("*.history"))
    alerts = len(prod.slack.received)
    with faults.fail_at(fail_at):
        out = run_instance_restore_job({"snapshot_id": prod.snap}, prod.backend_config)
    assert out["status"] == "failed" and out["dagster_success"] is False
    assert out["rolled_back"] is True, out["cause"]
    assert "injected failure" in out["cause"] and "rolled back" in out["cause"]
    assert checksum(prod.app) == before  # the original, intact
    assert prod.fleet.production_dsn() == dsn and prod.timeline() == timeline
    assert prod.leftovers() == []
    # an abandoned timeline is moved out of the archive: later PITRs must never follow it
    assert sorted(p.name for p in prod.fleet.archive_dir.glob("*.history")) == history
    rec = prod.audit(out["restore_id"])
    assert rec["status"] == "failed" and rec["kind"] == "instance_restore"
    assert rec["phases"][-1]["phase"] == "rollback"
    assert [m["text"].splitlines()[0] for m in prod.slack.received[alerts:]] == [
        "[restore-assets] instance_restore ROLLED BACK (production)"
    ]


def test_restore_in_place_keeps_the_port_and_dsn_and_brings_the_snapshot_back(prod: Prod) -> None:
    dsn, port = prod.fleet.production_dsn(), prod.fleet.config().port
    sysid = sql(dsn, "SELECT system_identifier FROM pg_control_system()")[0][0]
    assert checksum(prod.app) != prod.snap_checksum
    out = run_instance_restore_job({"snapshot_id": prod.snap}, prod.backend_config)
    assert out["status"] == "succeeded", out["cause"]
    assert prod.fleet.production_dsn() == dsn and prod.fleet.config().port == port
    assert checksum(prod.app) == prod.snap_checksum
    assert sql(dsn, "SELECT system_identifier FROM pg_control_system()")[0][0] == sysid
    assert prod.timeline() > 1  # recovery promoted: a new timeline
    assert sql(dsn, "SHOW archive_mode")[0][0] == "on"
    assert prod.leftovers() == []  # removed once the restored one was verified
    assert out["wait"]["port"] == port and "post_restore_snapshot" not in out["wait"]
    rec = prod.audit(out["restore_id"])
    assert [p["phase"] for p in rec["phases"]] == [
        "validate",
        "set_aside",
        "restore",
        "wait",
        "delete_old",
    ]


def test_point_in_time_restore_still_works_after_it(prod: Prod) -> None:
    sql(prod.app, "INSERT INTO items VALUES (1001, 'new-timeline-1')")
    time.sleep(0.2)
    point: datetime = sql(prod.app, "SELECT clock_timestamp()")[0][0]
    time.sleep(0.2)
    sql(prod.app, "INSERT INTO items VALUES (1002, 'new-timeline-2')")
    temp = prod.fleet.provision("pitr-after-instance", RestoreTarget(restore_time=point))
    try:
        labels = [
            r[0]
            for r in sql(prod.fleet.temp_dsn(temp, "app"), "SELECT label FROM items ORDER BY id")
        ]
    finally:
        prod.fleet.delete_temp("pitr-after-instance")
    assert labels[-1] == "new-timeline-1" and len(labels) == 101
    assert not any(lbl.startswith("after-") for lbl in labels)


def test_create_snapshot_keep_old_then_restore_from_the_same_snapshot_again(prod: Prod) -> None:
    before = checksum(prod.app)
    out = run_instance_restore_job(
        {
            "task": "create_snapshot",
            "snapshot_identifier": "before-second",
            "keep_old": True,
            "suffix": "keep1",
        },
        prod.backend_config,
    )
    assert out["status"] == "succeeded", out["cause"]
    assert out["snapshot_id"] == "before-second" and checksum(prod.app) == before
    assert prod.leftovers() == ["data.old-keep1"]
    shutil.rmtree(prod.fleet.root / "production" / "data.old-keep1")
    (prod.fleet.root / "production" / "data.old-keep1.log").unlink(missing_ok=True)
    again = run_instance_restore_job({"snapshot_id": prod.snap}, prod.backend_config)
    assert again["status"] == "succeeded", again["cause"]
    assert checksum(prod.app) == prod.snap_checksum
    prod.fleet.switch_wal()  # archiving still works after two promotions from one snapshot
    failed = sql(prod.fleet.production_dsn(), "SELECT failed_count FROM pg_stat_archiver")[0][0]
    assert failed == 0


def _cli(args: list[str]) -> tuple[int, str]:
    from restore_assets.cli.server_restore import register

    parser = argparse.ArgumentParser(prog="restore-assets")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(args)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            rc = ns.fn(ns)
        except Exception as exc:  # the real main() turns RestoreError into exit code 2
            from restore_assets.core.errors import RestoreError

            assert isinstance(exc, RestoreError), exc
            return 2, str(exc)
    return rc, out.getvalue()


def test_cli_snapshot_plan_and_refusal(prod: Prod) -> None:
    root = str(prod.fleet.root)
    rc, text = _cli(["snapshot", "--root", root, "--identifier", "cli-snap", "--json"])
    assert rc == 0 and json.loads(text)["snapshot_id"] == "cli-snap"
    assert "cli-snap" in [s.id for s in prod.fleet.snapshots()]
    rc, text = _cli(["restore-instance", "--root", root, "--snapshot-id", "cli-snap", "--plan"])
    assert rc == 0 and "configuration preserved:" in text and "port:" in text
    rc, text = _cli(["restore-instance", "--root", root, "--snapshot-id", "nope", "--json"])
    assert rc == 2 and "unknown snapshot id 'nope'" in json.loads(text)["cause"]
    rc, text = _cli(["snapshot", "--root", root, "--export-s3", "--json"])
    assert rc == 2 and "needs the aws backend" in json.loads(text)["cause"]
    assert prod.leftovers() == []


# ---------------------------------------------------------------------------- runbook notebook
NOTEBOOK = REPO / "restore_assets" / "notebook_files" / "instance_restore_runbook.ipynb"


def run_runbook(prod: Prod, out: Path, **parameters: Any) -> Path:
    """Execute the runbook with papermill (kernel python3) against the module's fleet."""
    import papermill

    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={
            "root": str(prod.fleet.root),
            "config_file": prod.backend_config["config_file"],
            **parameters,
        },
        kernel_name="python3",
        cwd=str(REPO),
        progress_bar=False,
    )
    return out


@pytest.mark.notebooks
def test_runbook_without_confirm_stops_before_any_change(prod: Prod, tmp_path: Path) -> None:
    import papermill

    sql(prod.app, "INSERT INTO items VALUES (5000, 'runbook')")
    datadir = prod.fleet.root / "production" / "data"
    inode, before = datadir.stat().st_ino, checksum(prod.app)
    runs = len(SqliteAuditLog(prod.fleet.root / "audit.sqlite").history())
    out = tmp_path / "preflight.ipynb"
    with pytest.raises(papermill.PapermillExecutionError, match="confirm=True"):
        run_runbook(prod, out, snapshot_id=prod.snap)
    text = notebook_text(out)
    assert "configuration that will be preserved" in text
    assert (
        marked(text, "PLAN_JSON: ")["preserved_configuration"]["port"] == prod.fleet.config().port
    )
    assert datadir.stat().st_ino == inode and checksum(prod.app) == before
    assert prod.leftovers() == []
    assert len(SqliteAuditLog(prod.fleet.root / "audit.sqlite").history()) == runs


@pytest.mark.notebooks
def test_runbook_with_confirm_restores_in_place(prod: Prod, tmp_path: Path) -> None:
    dsn = prod.fleet.production_dsn()
    assert checksum(prod.app) != prod.snap_checksum
    out = run_runbook(prod, tmp_path / "restore.ipynb", snapshot_id=prod.snap, confirm=True)
    result = marked(notebook_text(out), "RESULT_JSON: ")
    assert result["status"] == "succeeded" and result["snapshot_id"] == prod.snap
    assert prod.fleet.production_dsn() == dsn and checksum(prod.app) == prod.snap_checksum


def test_an_adopted_fleet_is_refused(tmp_path: Path) -> None:
    from restore_assets.backends.factory import server_restore_backend
    from restore_assets.core.errors import InvalidRequest
    from restore_assets.core.server_restore.steps import plan_instance_restore

    root = tmp_path / "adopted"
    root.mkdir()
    (root / "fleet.json").write_text(
        json.dumps(
            {
                "mode": "adopted",
                "archive_dir": str(tmp_path),
                "backup_dir": str(tmp_path),
                "dsn": "",
            }
        )
    )
    with pytest.raises(InvalidRequest, match="needs a managed fleet"):
        plan_instance_restore(server_restore_backend({"root": str(root)}), {"snapshot_id": "x"})


# ---------------------------------------------------------------------------- final backups
def _start_copy_of(backup: Path) -> pg_local.Cluster:
    """Start a final backup on a free port with archiving off (it must not touch the archive)."""
    auto = backup / "postgresql.auto.conf"
    auto.write_text(auto.read_text() + "\narchive_mode = off\n")
    cluster = pg_local.Cluster(backup, pg_local.free_port())
    cluster.start()
    return cluster


def test_the_set_aside_directory_is_backed_up_before_it_is_removed(prod: Prod) -> None:
    """delete_old copies data.old-<suffix> (cleanly stopped) into final-backups/ first: the
    backup starts and holds production as it was just before the restore."""
    sql(prod.app, "INSERT INTO items VALUES (5001, 'only-in-the-old-one')")
    before = checksum(prod.app)
    out = run_instance_restore_job({"snapshot_id": prod.snap, "suffix": "fb1"}, prod.backend_config)
    assert out["status"] == "succeeded", out["cause"]
    assert prod.leftovers() == []
    backup = prod.fleet.data_root / "final-backups" / "production-final-fb1"
    meta = json.loads((backup.parent / "production-final-fb1.json").read_text())
    assert meta["restore_id"] == out["restore_id"] and meta["cluster_state"] == "shut down"
    assert out["delete_old"]["final_snapshot"]["path"] == str(backup)
    copy = _start_copy_of(backup)
    try:
        dsn = copy.dsn("app")
        assert checksum(dsn) == before
        assert sql(dsn, "SELECT label FROM items WHERE id = 5001") == [("only-in-the-old-one",)]
    finally:
        copy.stop(mode="immediate")
    assert checksum(prod.app) == prod.snap_checksum  # production itself is the snapshot again


def test_final_backup_off_removes_the_set_aside_directory_without_a_copy(
    prod: Prod, tmp_path: Path
) -> None:
    """`instance_restore.final_backup: false` (told otherwise): no copy is taken."""
    settings = yaml.safe_load(Path(prod.backend_config["config_file"]).read_text())
    settings["instance_restore"]["final_backup"] = False
    config = tmp_path / "backend.yaml"
    config.write_text(yaml.safe_dump(settings))
    out = run_instance_restore_job(
        {"snapshot_id": prod.snap, "suffix": "fb2"},
        {**prod.backend_config, "config_file": str(config)},
    )
    assert out["status"] == "succeeded", out["cause"]
    assert prod.leftovers() == []
    assert not (prod.fleet.data_root / "final-backups" / "production-final-fb2").exists()
    assert "final_snapshot" not in out["delete_old"]


def test_delete_old_removes_only_a_directory_the_tool_recorded(prod: Prod) -> None:
    """A data.old-<suffix> the fleet manifest does not list (not set aside by the tool) is kept."""
    from restore_assets.backends.local.server_restore import LocalInstanceBackend
    from restore_assets.core.errors import FleetError

    backend = LocalInstanceBackend(prod.fleet)
    names = backend.check_names("production", "foreign")
    foreign = Path(names["renamed_dir"])
    foreign.mkdir()
    (foreign / "precious").write_text("not the tool's")
    try:
        with pytest.raises(FleetError, match="not recorded in the fleet manifest"):
            backend.delete_old(None, names, keep_old=False, skip_final_snapshot=False)  # type: ignore[arg-type]
        assert (foreign / "precious").read_text() == "not the tool's"
    finally:
        shutil.rmtree(foreign)


def test_a_rollback_backs_up_the_promoted_restored_directory_before_removing_it(
    prod: Prod,
) -> None:
    """delete_old fails after the restored production served on the port: the rollback keeps a
    copy of what that restored directory held (the local twin of the AWS rollback snapshot)."""
    before = checksum(prod.app)
    with faults.fail_at("delete_old"):
        out = run_instance_restore_job(
            {"snapshot_id": prod.snap, "suffix": "rb2"}, prod.backend_config
        )
    assert out["status"] == "failed" and out["rolled_back"] is True, out["cause"]
    assert checksum(prod.app) == before and prod.leftovers() == []
    backup = prod.fleet.data_root / "final-backups" / "production-rollback-rb2"
    meta = json.loads((backup.parent / "production-rollback-rb2.json").read_text())
    assert meta["restore_id"] == out["restore_id"] and meta["cluster_state"] == "shut down"
    copy = _start_copy_of(backup)
    try:
        assert checksum(copy.dsn("app")) == prod.snap_checksum  # what the restored one held
    finally:
        copy.stop(mode="immediate")
