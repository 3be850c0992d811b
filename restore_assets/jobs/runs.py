"""What the jobs share about their runs: the restore id of a run, the jobs that act on a restore id
(cleanup, recovery) and the sensors that launch them after a crash."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from restore_assets.core.audit import NotOwner, check_restore_id, describe_owner
from restore_assets.core.errors import InvalidRequest
from restore_assets.jobs.strict import StrictConfig
from restore_assets.jobs.tags import RESTORE_ID_TAG, is_rejected


def restore_id_for(run_id: str, configured: str | None = None) -> str:
    """The restore id of a Dagster run: the configured one, else derived from the run id."""
    return configured or f"dg-{run_id}"


def restore_id_of(run: dg.DagsterRun) -> str:
    """The restore id of a run: configured (top-level or op config), else `dg-<root run id>`.

    The ops and the sensors both call this, so they name the same restore; a re-execution (which
    reuses its parent's validate output) derives its root run's id, not one of its own.
    """
    config: dict[str, Any] = dict(run.run_config or {})
    configured = run.tags.get(RESTORE_ID_TAG) or config.get("restore_id")
    for op in (config.get("ops") or {}).values():
        configured = configured or ((op or {}).get("config") or {}).get("restore_id")
    return restore_id_for(run.root_run_id or run.run_id, str(configured) if configured else None)


def reexecution_refusal(run: dg.DagsterRun) -> str | None:
    """Why a run may not open a restore: it re-executes another run (None for a new run)."""
    if not run.parent_run_id:
        return None
    return (
        f"run {run.run_id} re-executes run {run.parent_run_id}: a restore belongs to the run that"
        f" started it, so restore {restore_id_of(run)} is not resumed. Launch a new run from the"
        " launchpad instead (it gets its own restore id); the failed run's leftovers are removed"
        " by the cleanup job."
    )


def check_owner(context: dg.OpExecutionContext, record: dict[str, Any]) -> None:
    """Fail the op unless this run owns the restore record (refuses re-executions and strangers)."""
    owner = record.get("owner") or {}
    if owner.get("dagster_run_id") == context.run_id:
        return
    why = reexecution_refusal(context.dagster_run) or (
        f"restore {record.get('restore_id')} belongs to {describe_owner(owner)}, not to run"
        f" {context.run_id}: nothing is done. Launch a new run instead."
    )
    raise dg.Failure(description=why, allow_retries=False)


def owner_run_status(instance: dg.DagsterInstance, record: dict[str, Any]) -> str | None:
    """The Dagster status of the run owning a record, when this instance knows that run."""
    run_id = (record.get("owner") or {}).get("dagster_run_id")
    run = instance.get_run_by_id(run_id) if run_id else None
    return run.status.value if run is not None else None


class RestoreIdConfig(StrictConfig):
    """The restore id to act on (the crash sensors pass the id of the run that ended)."""

    restore_id: str


def for_ended_owner(
    context: dg.OpExecutionContext,
    audit: Any,
    restore_id: str,
    act: Callable[[str | None], dict[str, Any]],
) -> dict[str, Any] | None:
    """`act(run status of the owner)` on a restore whose owner has ended; None without a record.

    A malformed id, or an owner that has not ended (`NotOwner`), fails the op without a retry."""
    try:
        check_restore_id(restore_id)
        return act(owner_run_status(context.instance, audit.get(restore_id)))
    except KeyError:
        return None
    except (InvalidRequest, NotOwner) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None


def restore_id_request(op_name: str, key: str, restore_id: str) -> dg.RunRequest:
    """A run of a job whose op `op_name` takes the restore id (RestoreIdConfig), keyed `<key>-<id>`."""
    return dg.RunRequest(
        run_key=f"{key}-{restore_id}",
        run_config={"ops": {op_name: {"config": {"restore_id": restore_id}}}},
    )


def checked_restore_id(run: dg.DagsterRun) -> str | dg.SkipReason:
    """The restore id of a run for a sensor, or a SkipReason when it is not a valid id."""
    rid = restore_id_of(run)
    try:
        return check_restore_id(rid)
    except InvalidRequest as exc:
        return dg.SkipReason(f"run {run.run_id}: {exc}; nothing launched")


def crash_sensors(
    job: dg.JobDefinition,
    request_job: dg.JobDefinition,
    to_request: Callable[[dg.DagsterRun], dg.RunRequest | dg.SkipReason],
    failure_name: str,
    termination_name: str,
) -> tuple[dg.SensorDefinition, dg.SensorDefinition]:
    """Sensors that launch request_job for a run of job that failed, crashed or was terminated."""

    watch: dict[str, Any] = {
        "monitored_jobs": [job],
        "request_job": request_job,
        "default_status": dg.DefaultSensorStatus.RUNNING,
        "minimum_interval_seconds": 30,
    }

    @dg.run_failure_sensor(
        name=failure_name,
        **watch,
        description=f"Launch {request_job.name} for a {job.name} run that failed or crashed",
    )
    def on_failure(context: dg.RunFailureSensorContext) -> dg.RunRequest | dg.SkipReason:
        if is_rejected(context.dagster_run):
            return dg.SkipReason(f"run {context.dagster_run.run_id} was refused: nothing to clean")
        return to_request(context.dagster_run)

    @dg.run_status_sensor(
        name=termination_name,
        run_status=dg.DagsterRunStatus.CANCELED,
        **watch,
        description=f"Launch {request_job.name} for a {job.name} run terminated from the UI",
    )
    def on_termination(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
        return to_request(context.dagster_run)

    return on_failure, on_termination
