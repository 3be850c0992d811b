"""The alert sensors, called with real run status contexts: alerts reach Slack, never fail anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from restore_assets.jobs.alerts import (
    alert_on_cancel,
    alert_on_failure,
    alert_on_success,
    make_alert_sensors,
    run_event,
)
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.tags import REFUSED, end_refused_run, reject_run
from tests.unit.test_alerts import WEBHOOK_PATH, free_port, slack_stand_in


@dg.op
def fine(start: int | None = None) -> int:
    return 1


@dg.op
def broken() -> int:
    raise dg.Failure(description="restore r-42 failed: provision: quota exceeded")


@dg.job(tags={"restore-assets/kind": "schema_restore"})
def tiny_ok():
    fine()


@dg.op(out=dg.Out(int, is_required=False))
def refuse(context) -> Iterator[dg.Output]:
    reject_run(context, "r-43", "unknown schema 'nope'")
    yield from ()


@dg.job(tags={"restore-assets/kind": "schema_restore"})
def tiny_refused():
    fine(refuse.with_hooks({end_refused_run})())


@dg.job(tags={"restore-assets/kind": "instance_restore"})
def tiny_broken():
    broken()


def backend_with_alerts(tmp_path: Path, alerts: dict[str, Any]) -> RestoreBackend:
    """The backend resource reading a configuration file with an alerts: section."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "backend.yaml"
    cfg.write_text(yaml.safe_dump({"backend": "local", "root": str(tmp_path), "alerts": alerts}))
    return RestoreBackend(root=str(tmp_path), config_file=str(cfg))


def context_for(job: dg.JobDefinition, backend: RestoreBackend, run_config: dict | None = None):
    """Execute a job in process and build the sensor context of its final run event."""
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(
        instance=instance, raise_on_error=False, run_config=run_config or {}
    )
    event = result.get_run_success_event() if result.success else result.get_run_failure_event()
    ctx = dg.build_run_status_sensor_context(
        sensor_name="alert",
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"backend": backend},
    )
    return result, ctx


def test_a_failed_run_is_alerted_with_its_cause(tmp_path: Path) -> None:
    with slack_stand_in() as slack:
        backend = backend_with_alerts(tmp_path, {"slack_webhook_url": slack.url})
        result, ctx = context_for(tiny_broken, backend)
        assert alert_on_failure(ctx.for_run_failure()) is None
    assert not result.success
    [msg] = slack.received
    assert msg["text"].startswith("[restore-assets] instance_restore FAILED")
    assert "cause: restore r-42 failed: provision: quota exceeded" in msg["text"]
    assert f"run_id: {result.run_id}" in msg["text"]
    assert slack.paths == [WEBHOOK_PATH]


def test_a_refused_request_is_never_alerted(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = tiny_refused.execute_in_process(instance=instance, raise_on_error=False)
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE
    [failure] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert failure.dagster_event.message.startswith(REFUSED)
    with slack_stand_in() as slack:
        backend = backend_with_alerts(
            tmp_path, {"slack_webhook_url": slack.url, "on_success": True}
        )
        ctx = dg.build_run_status_sensor_context(
            sensor_name="alert",
            dagster_event=failure.dagster_event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id),
            resources={"backend": backend},
        )
        assert isinstance(alert_on_failure(ctx.for_run_failure()), dg.SkipReason)
        assert isinstance(alert_on_cancel(ctx), dg.SkipReason)
        # the same sensor alerts a run that failed for another reason
        _, broken = context_for(tiny_broken, backend)
        assert alert_on_failure(broken.for_run_failure()) is None
    assert len(slack.received) == 1 and "r-43" not in slack.received[0]["text"]


def test_successes_are_alerted_only_when_asked(tmp_path: Path) -> None:
    with slack_stand_in() as slack:
        quiet = backend_with_alerts(tmp_path / "q", {"slack_webhook_url": slack.url})
        loud = backend_with_alerts(
            tmp_path / "l", {"slack_webhook_url": slack.url, "on_success": True}
        )
        _, ctx = context_for(tiny_ok, quiet)
        alert_on_success(ctx)
        assert slack.received == []
        _, ctx = context_for(tiny_ok, loud)
        alert_on_success(ctx)
    [msg] = slack.received
    assert msg["text"].startswith("[restore-assets] schema_restore SUCCEEDED")


def test_an_unreachable_webhook_changes_nothing(tmp_path: Path, caplog) -> None:
    dead = f"http://127.0.0.1:{free_port()}{WEBHOOK_PATH}"
    backend = backend_with_alerts(tmp_path, {"slack_webhook_url": dead, "on_success": True})
    ok, ctx_ok = context_for(tiny_ok, backend)
    broken_result, ctx_broken = context_for(tiny_broken, backend)
    assert alert_on_success(ctx_ok) is None  # logged, not raised
    assert alert_on_failure(ctx_broken.for_run_failure()) is None
    assert ok.success and not broken_result.success  # the runs' outcomes are their own
    assert "s3cr3tT0ken" not in caplog.text


def test_no_alert_configuration_is_a_skip(tmp_path: Path) -> None:
    backend = RestoreBackend(root=str(tmp_path))
    _, ctx = context_for(tiny_broken, backend)
    skip = alert_on_failure(ctx.for_run_failure())
    assert isinstance(skip, dg.SkipReason)
    broken_cfg = tmp_path / "bad.yaml"
    broken_cfg.write_text("alerts: [unclosed")
    _, ctx = context_for(
        tiny_broken, RestoreBackend(root=str(tmp_path), config_file=str(broken_cfg))
    )
    assert isinstance(alert_on_failure(ctx.for_run_failure()), dg.SkipReason)


def test_sensors_monitor_the_restore_jobs_and_read_the_restore_id() -> None:
    from restore_assets.jobs.instance_restore import instance_restore
    from restore_assets.jobs.schema_restore import schema_restore
    from restore_assets.jobs.snapshot import snapshot

    sensors = make_alert_sensors()
    assert [s.name for s in sensors] == ["alert_on_failure", "alert_on_cancel", "alert_on_success"]
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors)
    defs = dg.Definitions(
        jobs=[schema_restore, instance_restore, snapshot],
        sensors=sensors,
        resources={"backend": RestoreBackend()},
    )
    defs.get_repository_def().load_all_definitions()
    run = dg.DagsterRun(
        job_name="instance_restore",
        run_id="abc",
        run_config={"restore_id": "i-1", "identifier": "prod-db"},
        tags={"restore-assets/kind": "instance_restore"},
    )
    event = run_event(run, "failed", "boom")
    assert event["restore_id"] == "i-1" and event["identifier"] == "prod-db"
    other = dg.DagsterRun(job_name="x", run_id="def", run_config={"ops": {"v": {"config": {}}}})
    assert run_event(other, "failed")["restore_id"] == "dg-def"


@pytest.mark.parametrize("cron", ["not a cron", "61 * * * *"])
def test_a_bad_cron_names_the_variable(cron: str) -> None:
    from restore_assets.jobs.schedules import SNAPSHOT_CRON_ENV, make_snapshot_schedule

    with pytest.raises(ValueError, match=SNAPSHOT_CRON_ENV):
        make_snapshot_schedule(env={SNAPSHOT_CRON_ENV: cron})


def test_a_failed_instance_restore_launches_its_recovery(tmp_path: Path) -> None:
    from restore_assets.jobs.instance_restore import recover_after_instance_failure

    result, ctx = context_for(tiny_broken, RestoreBackend(root=str(tmp_path)))
    request = recover_after_instance_failure(ctx.for_run_failure())
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"recover-dg-{result.run_id}"
    assert request.run_config == {
        "ops": {"recover_instance": {"config": {"restore_id": f"dg-{result.run_id}"}}}
    }


def test_everything_merges_into_the_project_definitions() -> None:
    from restore_assets.jobs.alerts import ALERT_SENSORS
    from restore_assets.jobs.definitions import defs
    from restore_assets.jobs.instance_restore import (
        instance_recover,
        instance_restore,
        recover_after_instance_failure,
        recover_after_instance_termination,
    )
    from restore_assets.jobs.schedules import SCHEDULES, staging_refresh
    from restore_assets.jobs.snapshot import snapshot

    mine = dg.Definitions(
        jobs=[instance_restore, instance_recover, snapshot, staging_refresh],
        sensors=[
            *ALERT_SENSORS,
            recover_after_instance_failure,
            recover_after_instance_termination,
        ],
        schedules=SCHEDULES,
    )
    repo = dg.Definitions.merge(defs, mine).get_repository_def()
    repo.load_all_definitions()
    assert {"instance_restore", "instance_recover", "snapshot", "staging_refresh"} <= {
        j.name for j in repo.get_all_jobs()
    }
