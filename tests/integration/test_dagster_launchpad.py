"""The schema_restore launchpad: described fields, a default skeleton, static refusals before a run
exists, server refusals in the first op (a FAILURE run tagged `rejected`: one message, no stack
trace, no cleanup run), the failing phase's op marked failed, tenant tags on runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
import yaml

from restore_assets.backends.factory import build_services
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.schema_restore import cleanup_after_failure, schema_restore
from restore_assets.jobs.strict import REFUSED_BEFORE_RUN
from restore_assets.jobs.tags import (
    DATABASE_TAG,
    REFUSED,
    REJECTED_TAG,
    RESTORE_ID_TAG,
    SCHEMAS_TAG,
)
from tests import faults

pytestmark = pytest.mark.integration


def _root_config_snap():
    from dagster._core.snap import JobSnap

    snap = JobSnap.from_job_def(schema_restore)
    schema = snap.config_schema_snapshot
    return schema, schema.get_config_snap(snap.mode_def_snaps[0].root_config_key)


def test_every_launchpad_field_is_described_and_no_test_seam_or_restore_id_is_offered():
    _schema, root = _root_config_snap()
    fields = {f.name: f for f in root.fields}
    assert {"database", "schemas", "restore_time", "snapshot_id"} <= set(fields)
    assert not {"restore_id", "fail_at_phase"} & set(fields)
    undescribed = [name for name, f in fields.items() if not (f.description or "").strip()]
    assert undescribed == []


def test_the_default_launchpad_config_is_a_skeleton_dagster_accepts():
    from dagster_graphql.schema.run_config import default_values_yaml_from_type_snap

    schema, root = _root_config_snap()
    from dagster._config import validate_config_from_snap

    default = yaml.safe_load(default_values_yaml_from_type_snap(schema, root))
    assert {"database", "schemas", "restore_time", "snapshot_id"} <= set(default)
    # no red in the launchpad's editor (it checks the config schema) ...
    assert validate_config_from_snap(schema, root.key, default).success
    # ... and launched as it is, the empty skeleton is refused before a run exists
    with pytest.raises(dg.DagsterInvalidConfigError, match=REFUSED_BEFORE_RUN):
        dg.validate_run_config(schema_restore, default)


def _launch(instance: dg.DagsterInstance, root: str, config: dict) -> dg.ExecuteInProcessResult:
    return schema_restore.execute_in_process(
        run_config=config,
        resources={"backend": RestoreBackend(root=root)},
        instance=instance,
        raise_on_error=False,
    )


def _errors(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Every Python error (message and stack) the UI would show among a run's events."""
    found = []
    for record in instance.all_logs(run_id):
        data = record.dagster_event.event_specific_data if record.dagster_event else None
        for error in (record.error_info, getattr(data, "error", None)):
            if error is not None:
                found.append(f"{error.message}{''.join(error.stack)}")
    return found


@pytest.mark.parametrize(
    ("request_config", "message"),
    [
        ({"database": "", "schemas": ["customer_a1"]}, "database name must be a non-empty"),
        (
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "restore_time": "2026-01-01T00:00",
            },
            "has no time zone",
        ),
        ({"database": "tenant_a", "schemas": ["customer_a1"]}, "exactly one of restore_time or"),
        ({"database": "tenant_a", "schemas": [], "snapshot_id": "s-1"}, "at least one schema"),
    ],
)
def test_what_the_request_model_checks_alone_is_refused_before_a_run_exists(
    tmp_path, request_config, message
):
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(dg.DagsterInvalidConfigError, match=REFUSED_BEFORE_RUN) as refused:
        _launch(instance, str(tmp_path), request_config)
    assert message in str(refused.value)
    assert instance.get_runs() == []  # Dagster resolves the config before it creates the run


# checks that need the server: refused in the first op, as a run
@pytest.mark.parametrize(
    ("request_config", "message"),
    [
        (
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "restore_time": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            },
            "is in the future",
        ),
        (
            {"database": "tenant_a", "schemas": ["nope"], "restore_time": "NOW"},
            "unknown schema",
        ),
    ],
)
def test_a_refused_request_fails_its_run_with_one_message_no_stack_trace_and_no_cleanup(
    demo_fleet, request_config, message
):
    instance = dg.DagsterInstance.ephemeral()
    if request_config.get("restore_time") == "NOW":
        request_config = {**request_config, "restore_time": datetime.now(UTC).isoformat()}
        time.sleep(0.1)
    result = _launch(instance, str(demo_fleet.root), request_config)
    assert not result.success
    # no step fails (a step failure always carries a stack trace in the UI); no later op starts
    assert result.get_step_failure_events() == []
    started = {
        e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START
    }
    assert started == {"validate_request"}
    run = instance.get_run_by_id(result.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    [failure] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    description = failure.dagster_event.message
    assert description.startswith(f"{REFUSED}:") and message in description
    assert _errors(instance, run.run_id) == []
    assert run.tags[REJECTED_TAG] == "true"
    assert (
        build_services({"root": str(demo_fleet.root)}).audit.get(run.tags[RESTORE_ID_TAG])["status"]
        == "rejected"
    )
    ctx = dg.build_run_status_sensor_context(
        sensor_name="cleanup_after_failure",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
    )
    assert isinstance(cleanup_after_failure(ctx.for_run_failure()), dg.SkipReason)
    assert demo_fleet.temp_instances() == []


def test_the_failing_phase_op_is_marked_failed_and_its_hook_cleans_up(demo_fleet):
    instance = dg.DagsterInstance.ephemeral()
    point = datetime.now(UTC)
    time.sleep(0.1)
    with psycopg.connect(demo_fleet.production_dsn("tenant_a")) as conn:
        before = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
    with faults.fail_at("pre:after"):  # the restored schemas exist when the phase fails
        result = _launch(
            instance,
            str(demo_fleet.root),
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "restore_time": point.isoformat(),
                "suffix": "failpre",
            },
        )
    assert not result.success
    assert [e.step_key for e in result.get_step_failure_events()] == ["apply_pre_ddl"]
    # ops before the failing phase are green
    assert {"validate_request", "detect_topology", "provision_temp_database", "extract_ddl"} <= {
        e.step_key for e in result.get_step_success_events()
    }
    run = instance.get_run_by_id(result.run_id)
    assert run.tags[DATABASE_TAG] == "tenant_a" and run.tags[SCHEMAS_TAG] == "customer_a1"
    assert run.tags["restore-assets/targets"] == "customer_a1_failpre"
    assert REJECTED_TAG not in run.tags
    rec = build_services({"root": str(demo_fleet.root)}).audit.get(run.tags[RESTORE_ID_TAG])
    assert rec["status"] == "failed" and "injected failure after step pre" in rec["cause"]
    assert demo_fleet.temp_instances() == []
    with psycopg.connect(demo_fleet.production_dsn("tenant_a")) as conn:
        assert {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")} == before
