"""Run tags of the restore jobs: who and what a run restores, so the run list filters by tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from restore_assets.core.request import RestorePlan

PREFIX = "restore-assets"
RESTORE_ID_TAG = f"{PREFIX}/restore-id"
REJECTED_TAG = f"{PREFIX}/rejected"
DATABASE_TAG = f"{PREFIX}/database"
SCHEMAS_TAG = f"{PREFIX}/schemas"
TARGETS_TAG = f"{PREFIX}/targets"
RESTORE_POINT_TAG = f"{PREFIX}/restore-point"
SNAPSHOT_TAG = f"{PREFIX}/snapshot"
KIND_TAG = f"{PREFIX}/kind"  # what a job does (schema_restore, cleanup, snapshot, ...)
# dagster.yaml's tag concurrency limits: restores per fleet, and one run per database+schema target
CONCURRENCY_TAG = f"{PREFIX}/concurrency"
TARGET_TAG = f"{PREFIX}/target"

# Dagster tag values are limited in length; a long schema list is cut with a marker
_MAX_VALUE = 250


def _value(text: str) -> str:
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def request_tags(restore_id: str, plan: RestorePlan) -> dict[str, str]:
    """The tags of a validated restore: database, schemas, targets, restore point or snapshot, id."""
    request = plan.request
    tags = {
        RESTORE_ID_TAG: restore_id,
        DATABASE_TAG: request.database,
        SCHEMAS_TAG: _value(",".join(request.schemas)),
        TARGETS_TAG: _value(",".join(plan.targets[s] for s in request.schemas)),
        RESTORE_POINT_TAG: plan.restore_point.isoformat(),
    }
    if request.snapshot_id:
        tags[SNAPSHOT_TAG] = request.snapshot_id
    return tags


def request_tags_from_config(config: dict[str, object]) -> dict[str, str]:
    """The tags a request's launch config already tells (database, schemas, point), before checks."""
    tags: dict[str, str] = {}
    database, schemas = config.get("database"), config.get("schemas")
    if isinstance(database, str) and database:
        tags[DATABASE_TAG] = _value(database)
    if isinstance(schemas, list) and schemas:
        tags[SCHEMAS_TAG] = _value(",".join(str(s) for s in schemas))
    for key, tag in (("restore_time", RESTORE_POINT_TAG), ("snapshot_id", SNAPSHOT_TAG)):
        value = config.get(key)
        if isinstance(value, str) and value:
            tags[tag] = _value(value)
    return tags


def is_rejected(run: dg.DagsterRun) -> bool:
    """Whether a run was refused at validation (nothing was created: no cleanup to launch)."""
    return run.tags.get(REJECTED_TAG) == "true"


REFUSED = "Request refused, nothing was created"


def reject_run(context: dg.OpExecutionContext, restore_id: str, message: str) -> None:
    """Tag the run rejected and end it as FAILURE with the refusal as its one message.

    No step fails (a failed step always carries a Python stack trace in the UI): the run is marked
    failed through the instance, the op then returns no output so the ops after it are skipped, and
    `end_refused_run` stops the execution before Dagster would record the run as a success.
    """
    tags = {REJECTED_TAG: "true", RESTORE_ID_TAG: restore_id}
    tags.update(request_tags_from_config(_request_config(context)))
    context.instance.add_run_tags(context.run_id, tags)
    context.instance.report_run_failed(context.dagster_run, f"{REFUSED}: {message}")


@dg.success_hook
def end_refused_run(context: dg.HookContext) -> None:
    """After a validation that refused the request: stop the run, which stays FAILURE.

    Raised between steps, Dagster's interrupt ends the execution with no step failure and no stack
    trace ("Execution was interrupted for a run that was already in a failure state").
    """
    run = context.instance.get_run_by_id(context.run_id)
    if run is not None and is_rejected(run) and run.status == dg.DagsterRunStatus.FAILURE:
        raise dg.DagsterExecutionInterruptedError(f"run {context.run_id}: request refused")


def _request_config(context: dg.OpExecutionContext) -> dict[str, object]:
    config = context.op_config
    return dict(config) if isinstance(config, dict) else {}
