"""The `schema_restore` job: its launchpad form and first op, the graph of its phase ops
(`jobs/schema_phases.py`), and the `cleanup` job the crash sensors launch after a failed run."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from restore_assets.core.audit import check_restore_id, process_owner
from restore_assets.core.errors import InvalidRequest
from restore_assets.core.request import RestoreRequest
from restore_assets.core.schema_restore import cleanup as restore_cleanup
from restore_assets.core.schema_restore import phases
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.runs import (
    RestoreIdConfig,
    checked_restore_id,
    crash_sensors,
    for_ended_owner,
    reexecution_refusal,
    restore_id_of,
    restore_id_request,
)
from restore_assets.jobs.schema_phases import (
    apply_post_ddl,
    apply_pre_ddl,
    clean_up_after_failed_phase,
    cleanup_resources,
    compare_restored,
    copy_schema_data,
    detect_topology,
    extract_ddl,
    fan_out_schemas,
    finish_restore,
    op_services,
    provision_temp_database,
    release_temporary_resources,
)
from restore_assets.jobs.strict import INFO_CONSOLE, launchpad_form, strict_config_mapping
from restore_assets.jobs.tags import (
    CONCURRENCY_TAG,
    KIND_TAG,
    end_refused_run,
    reject_run,
    request_tags,
)


class RestoreRequestConfig(launchpad_form(RestoreRequest)):
    """The restore request: `database`, `schemas`, and exactly one of `restore_time` or `snapshot_id`.

    Example: database: tenant_a / schemas: [customer_a1] / restore_time: "2026-01-02T03:04:05Z".
    The restored schemas appear next to the live ones as `<schema>_<suffix>`. The request fields
    are those of the core model (`core/request.RestoreRequest`), which checks them in the first op.
    """

    compare: bool = Field(
        default=True,
        description="Compare each restored schema with its live schema and attach the report.",
    )
    detach_cleanup: bool = Field(
        default=False,
        description="Remove the temporary server in a detached process (the run ends sooner).",
    )


def request_of(config: dict[str, Any]) -> dict[str, Any]:
    """The core request of a launchpad config: its request fields, the empty ones left out."""
    return {
        k: v
        for k, v in config.items()
        if k in RestoreRequest.model_fields and v not in (None, [], "")
    }


@strict_config_mapping(
    RestoreRequestConfig, check=lambda val: RestoreRequest.parse(request_of(val))
)
def request_as_run_config(val: dict[str, Any]) -> dict[str, Any]:
    """Map the top-level request typed in the launchpad to the validate op's config; what the request
    model checks without the server (empty database or schemas, a time without zone, both or neither
    of restore_time and snapshot_id, names PostgreSQL would truncate) is refused before a run exists."""
    return {
        "ops": {"validate_request": {"config": val}},
        "loggers": INFO_CONSOLE,
    }


@dg.op(out=dg.Out(dict, is_required=False))
def validate_request(
    context: dg.OpExecutionContext, config: RestoreRequestConfig, backend: RestoreBackend
) -> Iterator[dg.Output]:
    """Phase 1: validate the request against the server before anything is created; record it.

    A refused request yields no output: the run ends FAILURE with the refusal (`reject_run`)."""
    raw = request_of(config.model_dump())
    refusal = reexecution_refusal(context.run)
    if refusal:  # the parent's restore is not resumed: its record and resources stay its own
        raise dg.Failure(description=refusal, allow_retries=False)
    rid = restore_id_of(context.run)
    services = op_services(backend, context)
    try:
        check_restore_id(rid)
        rid, plan = phases.validate(services, raw, rid, owner=process_owner(context.run_id))
    except InvalidRequest as exc:
        reject_run(context, rid, str(exc))
        return
    context.instance.add_run_tags(context.run_id, request_tags(rid, plan))
    context.log.info(f"restore {rid}: {plan.request.target.describe()} -> {plan.targets}")
    yield dg.Output(
        {
            "restore_id": rid,
            "plan": plan.to_dict(),
            "compare": config.compare,
            "detach_cleanup": config.detach_cleanup,
        },
        metadata={
            "restore_id": rid,
            "restore_point": plan.restore_point.isoformat(),
            "targets": dg.MetadataValue.json(plan.targets),
        },
    )


@dg.job(
    config=request_as_run_config,
    tags={KIND_TAG: "schema_restore", CONCURRENCY_TAG: "restore"},
    hooks={clean_up_after_failed_phase},
)
def schema_restore() -> None:
    """Restore schemas of one database to a point in time or snapshot, side by side with the live ones."""
    run = validate_request.with_hooks({end_refused_run})()
    topo = detect_topology(run)
    temp = provision_temp_database(run, topo)
    ddl = extract_ddl(run, temp)
    pre = apply_pre_ddl(run, ddl)
    copies = fan_out_schemas(run, temp, pre, ddl).map(copy_schema_data).collect()
    post = apply_post_ddl(run, ddl, copies)
    compared = compare_restored(run, post)
    cleaned = cleanup_resources(run, topo, temp, ddl, pre, copies, post, compared)
    answer = finish_restore(run, cleaned)
    release_temporary_resources(run, answer, copies)


@dg.op(out=dg.Out(dict))
def cleanup_restore(
    context: dg.OpExecutionContext, config: RestoreIdConfig, backend: RestoreBackend
) -> dict:
    """Remove everything a crashed, failed or terminated restore left behind (idempotent).

    Only for a restore whose owner has ended: the owner's run status comes from this instance.
    """
    rid, services = config.restore_id, backend.services()
    out = for_ended_owner(
        context,
        services.audit,
        rid,
        lambda status: restore_cleanup.cleanup_restore(services, rid, run_status=status),
    )
    if out is None:
        context.log.info(f"restore {rid} has no audit record: nothing to clean")
        return {"removed": [], "kept": [], "errors": []}
    context.log.info(f"removed {out['removed']}")
    context.add_output_metadata({"removed": dg.MetadataValue.json(out["removed"])})
    if out["errors"]:
        raise dg.Failure(description=f"cleanup of {rid} incomplete: {out['errors']}")
    return out


@dg.job(tags={KIND_TAG: "cleanup"})
def cleanup() -> None:
    """Remove the leftovers of one restore id: temporary servers, secrets, partial schemas."""
    cleanup_restore()


def _cleanup_request(run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    rid = checked_restore_id(run)
    if isinstance(rid, dg.SkipReason):
        return rid
    return restore_id_request("cleanup_restore", "cleanup", rid)


cleanup_after_failure, cleanup_after_termination = crash_sensors(
    schema_restore, cleanup, _cleanup_request, "cleanup_after_failure", "cleanup_after_termination"
)
