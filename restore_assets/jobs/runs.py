"""What the jobs share about their runs: the restore id of a run, and the sensors that follow a crash."""

from collections.abc import Callable
from typing import Any

import dagster as dg


def restore_id_for(run_id: str, configured: str | None = None) -> str:
    """The restore id of a Dagster run: the configured one, else derived from the run id."""
    return configured or f"dg-{run_id}"


def restore_id_of(run: dg.DagsterRun) -> str:
    """The restore id a run was launched with (top-level or op config), else `dg-<run id>`."""
    config: dict[str, Any] = dict(run.run_config or {})
    configured = config.get("restore_id")
    for op in (config.get("ops") or {}).values():
        configured = configured or ((op or {}).get("config") or {}).get("restore_id")
    return restore_id_for(run.run_id, str(configured) if configured else None)


def crash_sensors(
    job: dg.JobDefinition,
    request_job: dg.JobDefinition,
    to_request: Callable[[dg.DagsterRun], dg.RunRequest],
    failure_name: str,
    termination_name: str,
) -> tuple[dg.SensorDefinition, dg.SensorDefinition]:
    """Sensors that launch request_job for a run of job that failed, crashed or was terminated."""

    @dg.run_failure_sensor(
        name=failure_name,
        monitored_jobs=[job],
        request_job=request_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description=f"Launch {request_job.name} for a {job.name} run that failed or crashed",
    )
    def on_failure(context: dg.RunFailureSensorContext) -> dg.RunRequest:
        return to_request(context.dagster_run)

    @dg.run_status_sensor(
        name=termination_name,
        run_status=dg.DagsterRunStatus.CANCELED,
        monitored_jobs=[job],
        request_job=request_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description=f"Launch {request_job.name} for a {job.name} run terminated from the UI",
    )
    def on_termination(context: dg.RunStatusSensorContext) -> dg.RunRequest:
        return to_request(context.dagster_run)

    return on_failure, on_termination
