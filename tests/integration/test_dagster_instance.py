"""CLI and notebook restores run on a persistent Dagster instance: $DAGSTER_HOME's when it is set, else
the fleet root's `<root>/dagster` (made with the shipped dagster.yaml)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from restore_assets.jobs.in_process import INSTANCE_SETTINGS, InProcessInstance, dagster_instance
from restore_assets.jobs.launch import run_schema_restore
from restore_assets.jobs.tags import DATABASE_TAG, RESTORE_ID_TAG, SCHEMAS_TAG

pytestmark = pytest.mark.integration


def committed_after(fleet) -> None:
    """A commit after the restore point, so the archive reaches past it (a quiet fleet has none)."""
    with psycopg.connect(fleet.production_dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_catalog.txid_current()")


def test_a_cli_restore_is_a_run_of_the_dagster_home_instance(
    demo_fleet, tmp_path: Path, monkeypatch
):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    point = datetime.now(UTC)
    time.sleep(0.1)
    committed_after(demo_fleet)
    out = run_schema_restore(
        {
            "database": "tenant_a",
            "schemas": ["customer_a1"],
            "restore_time": point.isoformat(),
            "suffix": "home",
        },
        {"root": str(demo_fleet.root)},
        compare=False,
        detach_cleanup=False,
    )
    try:
        assert out["status"] == "succeeded", out
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run = instance.get_run_by_id(out["dagster_run_id"])
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            assert run.tags[RESTORE_ID_TAG] == out["restore_id"]
            assert run.tags[DATABASE_TAG] == "tenant_a"
            steps = {e.step_key for e in instance.all_logs(run.run_id) if e.step_key}
            assert {"validate_request", "provision_temp_database", "finish_restore"} <= steps
    finally:
        with psycopg.connect(demo_fleet.production_dsn("tenant_a"), autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS customer_a1_home CASCADE")


def test_without_dagster_home_a_cli_restore_is_a_run_of_the_fleet_root_instance(
    demo_fleet, monkeypatch
):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = Path(demo_fleet.root) / "dagster"
    point = datetime.now(UTC)
    time.sleep(0.1)
    committed_after(demo_fleet)
    out = run_schema_restore(
        {
            "database": "tenant_a",
            "schemas": ["customer_a2"],
            "restore_time": point.isoformat(),
            "suffix": "roothome",
        },
        {"root": str(demo_fleet.root)},
        compare=False,
        detach_cleanup=False,
    )
    try:
        assert out["status"] == "succeeded", out
        # the home holds the shipped settings: the UI started on it queues runs under its limits
        assert (home / "dagster.yaml").read_text() == INSTANCE_SETTINGS.read_text()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run = instance.get_run_by_id(out["dagster_run_id"])
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            assert run.tags[RESTORE_ID_TAG] == out["restore_id"]
            assert run.tags[DATABASE_TAG] == "tenant_a" and run.tags[SCHEMAS_TAG] == "customer_a2"
            assert instance.get_run_records(dg.RunsFilter(tags={DATABASE_TAG: "tenant_a"}))
    finally:
        with psycopg.connect(demo_fleet.production_dsn("tenant_a"), autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS customer_a2_roothome CASCADE")


def test_restores_of_one_process_open_the_fleet_root_instance_at_once(tmp_path: Path, monkeypatch):
    """Threads opening a new home together (Dagster creates its SQLite tables on first open) get
    one instance each; it adds no logging.config step at run start (that deadlocks two threads)."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    errors: list[str] = []

    def open_it() -> None:
        try:
            with dagster_instance(tmp_path) as instance:
                assert isinstance(instance, InProcessInstance) and instance.is_persistent
                assert instance.get_yaml_python_handlers() == []
                instance.get_runs()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
