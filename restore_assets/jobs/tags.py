"""Run tags of the restore jobs: who and what a run restores, so the run list filters by tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

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


def reject_run(context: dg.OpExecutionContext, restore_id: str, message: str) -> NoReturn:
    """Tag the run rejected and fail its op with the refusal alone (nothing was created)."""
    tags = {REJECTED_TAG: "true", RESTORE_ID_TAG: restore_id}
    tags.update(request_tags_from_config(_request_config(context)))
    context.instance.add_run_tags(context.run_id, tags)
    context.log.error(f"request refused: {message}")
    raise dg.Failure(
        description=f"Request refused, nothing was created: {message}",
        metadata={"restore_id": restore_id, "rejected": True},
        allow_retries=False,
    ) from None


def _request_config(context: dg.OpExecutionContext) -> dict[str, object]:
    config = context.op_config
    return dict(config) if isinstance(config, dict) else {}
