"""Restore drills: the job records RTO/RPO/phase seconds per schema and drops only its own copy;
thresholds and failures alert; the schedule is off by default; the CLI runs one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from typing import Any

import dagster as dg
import psycopg
import pytest

from restore_assets.backends.factory import build_services
from restore_assets.core.schema_restore.drill import drop_drill_schemas, run_drill
from restore_assets.core.schema_restore.services import SCHEMA_RESOURCE
from restore_assets.jobs.drill import DRILL_ASSET, drill_run_config, make_drill_schedule
from restore_assets.jobs.drill import restore_drill as restore_drill_job
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.tags import TARGET_TAG

pytestmark = pytest.mark.integration


def _schemas(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}


def test_a_drill_records_rto_rpo_and_phases_and_drops_only_its_copy(demo_fleet) -> None:
    dsn = demo_fleet.production_dsn("tenant_a")
    before = _schemas(dsn)
    instance = dg.DagsterInstance.ephemeral()
    result = restore_drill_job.execute_in_process(
        run_config={
            "ops": {
                "run_restore_drill": {
                    "config": {"database": "tenant_a", "schemas": ["customer_a2"], "name": "dj"}
                }
            }
        },
        resources={"backend": RestoreBackend(root=str(demo_fleet.root))},
        instance=instance,
    )
    assert result.success
    out = result.output_for_node("run_restore_drill")
    assert out["ok"] and out["problems"] == {"customer_a2": []}
    event = instance.get_latest_materialization_event(dg.AssetKey(DRILL_ASSET))
    mat = event.asset_materialization
    assert mat.partition == "tenant_a/customer_a2"
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["ok"] is True and meta["rto_seconds"] > 0 and meta["rpo_seconds"] >= 0
    assert meta["seconds_provision"] > 0 and "seconds_copy_customer_a2" in meta
    assert len(out["dropped"]) == 1 and out["dropped"][0].startswith("tenant_a.customer_a2_dj_")
    assert _schemas(dsn) == before
    assert demo_fleet.temp_instances() == []


class Recorder:
    """A Notifier that keeps the events it is sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        """Keep one event."""
        self.events.append(event)


def test_a_failed_drill_alerts_with_its_cause(demo_fleet) -> None:
    services = build_services({"root": str(demo_fleet.root)})
    services.notifier = Recorder()

    def restore(request: dict[str, Any], restore_id: str) -> dict[str, Any]:
        return {"status": "failed", "cause": "provision: timed out", "restored": {}, "phases": {}}

    result = run_drill(services, restore, "tenant_a", ["customer_a1"], name="df")
    assert not result.ok and result.status == "failed"
    assert [e["status"] for e in services.notifier.events] == ["failed"]
    assert "provision: timed out" in services.notifier.events[0]["cause"]


def test_a_drill_drops_no_schema_it_cannot_prove_its_own(demo_fleet) -> None:
    dsn = demo_fleet.production_dsn("tenant_a")
    services = build_services({"root": str(demo_fleet.root)})
    rid = services.audit.open("schema_restore", {"database": "tenant_a"}, "r-drill-guard")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA customer_a1_drill_guard")
        oid = conn.execute(
            "SELECT oid::int FROM pg_namespace WHERE nspname = 'customer_a1_drill_guard'"
        ).fetchone()[0]
    details = {"database": "tenant_a", "schema": "customer_a1_drill_guard", "oid": oid + 1}
    services.audit.resource(rid, SCHEMA_RESOURCE, "tenant_a.customer_a1_drill_guard", details)
    try:
        assert drop_drill_schemas(services, rid) == []
        assert "customer_a1_drill_guard" in _schemas(dsn)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA customer_a1_drill_guard")


def test_the_drill_schedule_is_off_by_default_and_skips_until_configured() -> None:
    schedule = make_drill_schedule(env={})
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.build_schedule_context() as ctx:
        assert isinstance(schedule(ctx), dg.SkipReason)
    env = {
        "RESTORE_ASSETS_DRILL_DATABASE": "tenant_a",
        "RESTORE_ASSETS_DRILL_SCHEMAS": "customer_a1, customer_a2",
        "RESTORE_ASSETS_DRILL_MAX_RTO_SECONDS": "600",
    }
    configured = make_drill_schedule(env=env)
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 1, 5, 4)) as ctx:
        request = configured(ctx)
    assert request.run_config == drill_run_config(env)
    config = request.run_config["ops"]["run_restore_drill"]["config"]
    assert config == {
        "database": "tenant_a",
        "schemas": ["customer_a1", "customer_a2"],
        "max_rto_seconds": 600.0,
    }
    assert request.tags[TARGET_TAG] == "tenant_a.customer_a1,customer_a2"


def test_the_cli_drill_fails_past_its_rto_threshold_and_still_drops_its_copy(demo_fleet) -> None:
    dsn = demo_fleet.production_dsn("tenant_b")
    before = _schemas(dsn)
    res = subprocess.run(
        [sys.executable, "-m", "restore_assets.cli.main", "drill", "--root", str(demo_fleet.root)]
        + ["--database", "tenant_b", "--schema", "customer_b2", "--name", "dc"]
        + ["--max-rto", "0.001", "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
        check=False,
    )
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    assert out["status"] == "succeeded" and not out["ok"]
    assert out["breaches"] and out["breaches"][0].startswith("RTO ")
    assert out["problems"] == {"customer_b2": []}
    assert len(out["dropped"]) == 1
    assert _schemas(dsn) == before
