"""The instance_restore job: restore a server in place from a snapshot, keeping its endpoint.

Thin ops over restore_assets.core.server_restore.steps: each step returns a PhaseResult (never raises) that is
carried to the always-run finish op, which rolls back (delete the half-restored target, rename the
original back, alert) when a step from set_aside on failed, writes the audit status and fails the run.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg

from restore_assets.backends.factory import server_restore_backend, server_restore_services
from restore_assets.core.audit import AuditConflict, check_restore_id, new_restore_id, process_owner
from restore_assets.core.errors import InvalidRequest
from restore_assets.core.runner import PhaseResult
from restore_assets.core.server_restore import steps
from restore_assets.core.server_restore.model import InstancePlan, InstanceRequest
from restore_assets.jobs.in_process import backend_resource, first_failure
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.runs import (
    RestoreIdConfig,
    check_owner,
    crash_sensors,
    for_ended_owner,
    reexecution_refusal,
    restore_id_of,
    restore_id_request,
)
from restore_assets.jobs.strict import INFO_CONSOLE, launchpad_form, strict_config_mapping
from restore_assets.jobs.tags import KIND_TAG
from restore_assets.jobs.thin_ops import report_result, thin_op


class InstanceRestoreConfig(launchpad_form(InstanceRequest, exclude={"export_s3"})):
    """The launchpad form: what to restore, from which snapshot, and what to keep (the fields of
    the core InstanceRequest, which checks them in the first op; export_s3 is the snapshot job's)."""

    restore_id: str | None = None


@strict_config_mapping(InstanceRestoreConfig)
def instance_request_as_run_config(val: dict[str, Any]) -> dict[str, Any]:
    """Map the top-level request typed in the launchpad to the validate op's config."""
    return {"ops": {"validate_instance_request": {"config": val}}, "loggers": INFO_CONSOLE}


def request_of(config: dg.Config, exclude: set[str]) -> dict[str, Any]:
    """The core request mapping of an op config (unset fields left out)."""
    raw = config.model_dump(exclude=exclude)
    return {k: v for k, v in raw.items() if v not in (None, "")}


def services_for(backend: RestoreBackend) -> steps.InstanceServices:
    """The instance services of the run's backend resource."""
    return server_restore_services(backend.settings())


def _ctx(
    run: dict, context: dg.OpExecutionContext, backend: RestoreBackend
) -> tuple[str, InstancePlan]:
    """The restore id and plan of the run; fails the op unless this run owns the record."""
    check_owner(context, services_for(backend).audit.get(run["restore_id"]))
    return run["restore_id"], InstancePlan.from_dict(run["plan"])


def _step(
    context: dg.OpExecutionContext,
    run: dict,
    backend: RestoreBackend,
    step: Callable[..., PhaseResult],
    *inputs: Any,
) -> PhaseResult:
    """One step of the run for its op: the owner check, the step (services, id, plan, inputs), metadata."""
    rid, plan = _ctx(run, context, backend)
    return report_result(context, step(services_for(backend), rid, plan, *inputs), "step")


def validate_op_body(
    context: dg.OpExecutionContext,
    raw: dict[str, Any],
    backend: RestoreBackend,
    kind: str,
    restore_id: str | None,
) -> dict:
    """Shared body of the validate ops: plan, record, refuse bad input without a retry."""
    refusal = reexecution_refusal(context.run)
    if refusal:  # the parent's run is not resumed: its record and resources stay its own
        raise dg.Failure(description=refusal, allow_retries=False)
    rid = restore_id or restore_id_of(context.run)  # the id the crash sensors derive too
    services = services_for(backend)
    try:
        check_restore_id(rid)
        rid, plan = steps.validate(services, raw, kind, rid, owner=process_owner(context.run_id))
    except (InvalidRequest, AuditConflict) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    described = steps.describe_plan(plan)
    for w in plan.warnings:
        context.log.warning(w)
    context.log.info(f"{kind} {rid}: " + "; ".join(described["steps"]))
    context.add_output_metadata(
        {
            "restore_id": rid,
            "identifier": plan.source.identifier,
            "steps": dg.MetadataValue.json(described["steps"]),
            "preserved_configuration": dg.MetadataValue.json(plan.source.config),
        }
    )
    return {"restore_id": rid, "plan": plan.to_dict()}


@dg.op(out=dg.Out(dict))
def validate_instance_request(
    context: dg.OpExecutionContext, config: InstanceRestoreConfig, backend: RestoreBackend
) -> dict:
    """Check every name, the snapshot and the server before anything changes; open the audit record."""
    raw = request_of(config, {"restore_id"})
    return validate_op_body(context, raw, backend, steps.KIND_RESTORE, config.restore_id)


def step_op(body: Callable[..., PhaseResult]) -> dg.OpDefinition:
    """Decorate `body(services, restore id, plan, *upstream)`: the op running it as one step."""
    return thin_op(
        body,
        lambda context, backend, run, inputs: _step(context, run, backend, body, *inputs.values()),
    )


@step_op
def take_snapshot_step(s: steps.InstanceServices, rid: str, plan: InstancePlan) -> PhaseResult:
    """Take a snapshot and wait until it is available (create_snapshot tasks only)."""
    return steps.snapshot_step(s, rid, plan)


@step_op
def export_snapshot_step(
    s: steps.InstanceServices, rid: str, plan: InstancePlan, snap: PhaseResult
) -> PhaseResult:
    """Export the new snapshot to S3 and follow the export to its end (when asked)."""
    return steps.export_step(s, rid, plan, snap)


@step_op
def set_aside_original(
    s: steps.InstanceServices,
    rid: str,
    plan: InstancePlan,
    snap: PhaseResult,
    exported: PhaseResult,
) -> PhaseResult:
    """Rename the original to <identifier>-old-<suffix> and wait."""
    return steps.set_aside_step(s, rid, plan, [snap, exported])


@step_op
def restore_in_place(
    s: steps.InstanceServices, rid: str, plan: InstancePlan, snap: PhaseResult, aside: PhaseResult
) -> PhaseResult:
    """Restore the snapshot under the original identifier with all of its configuration."""
    return steps.restore_step(s, rid, plan, snap, aside)


@step_op
def wait_for_restored(
    s: steps.InstanceServices, rid: str, plan: InstancePlan, restored: PhaseResult
) -> PhaseResult:
    """Wait until the restored server and every member are available; verify it."""
    return steps.wait_step(s, rid, plan, restored)


@step_op
def delete_renamed_original(
    s: steps.InstanceServices, rid: str, plan: InstancePlan, ready: PhaseResult
) -> PhaseResult:
    """Delete the renamed original (final snapshot first unless skipped), or keep it."""
    return steps.delete_old_step(s, rid, plan, ready)


def finish_op_body(
    context: dg.OpExecutionContext,
    run: dict,
    results: list[PhaseResult],
    backend: RestoreBackend,
    kind: str,
) -> dict:
    """Shared body of the finish ops: roll back if needed, close the audit record, fail the run."""
    rid, plan = _ctx(run, context, backend)
    services = services_for(backend)
    summary = steps.finish(services, rid, plan, results, kind)
    if summary.get("steps", {}).get("rollback"):
        (context.log.warning if summary["rolled_back"] else context.log.error)(
            f"rollback: {summary['cause']}"
        )
    context.add_output_metadata(
        {
            "status": summary["status"],
            "restore_id": rid,
            "rolled_back": summary["rolled_back"],
            "summary": dg.MetadataValue.json(summary),
        }
    )
    if summary["status"] != "succeeded":
        raise dg.Failure(
            description=f"{kind} {rid} failed: {summary['cause']}",
            metadata={"restore_id": rid},
            allow_retries=False,
        )
    return summary


@dg.op(out=dg.Out(dict))
def finish_instance_restore(
    context: dg.OpExecutionContext,
    run: dict,
    snap: PhaseResult,
    exported: PhaseResult,
    aside: PhaseResult,
    restored: PhaseResult,
    ready: PhaseResult,
    deleted: PhaseResult,
    backend: RestoreBackend,
) -> dict:
    """Always runs: roll back after a failure (and alert), write the final audit status."""
    return finish_op_body(
        context, run, [snap, exported, aside, restored, ready, deleted], backend, steps.KIND_RESTORE
    )


@dg.job(config=instance_request_as_run_config, tags={KIND_TAG: "instance_restore"})
def instance_restore() -> None:
    """Restore an instance or cluster in place from a snapshot, keeping its identifier and endpoint."""
    run = validate_instance_request()
    snap = take_snapshot_step(run)
    exported = export_snapshot_step(run, snap)
    aside = set_aside_original(run, snap, exported)
    restored = restore_in_place(run, snap, aside)
    ready = wait_for_restored(run, restored)
    deleted = delete_renamed_original(run, ready)
    finish_instance_restore(run, snap, exported, aside, restored, ready, deleted)


# ---------------------------------------------------------------------------- crash recovery
@dg.op(out=dg.Out(dict))
def recover_instance(
    context: dg.OpExecutionContext, config: RestoreIdConfig, backend: RestoreBackend
) -> dict:
    """Roll back (or close) an instance restore that ended without its finish step; idempotent."""
    from restore_assets.core.server_restore.recovery import recover_instance_restore

    rid, services = config.restore_id, services_for(backend)
    out = for_ended_owner(
        context,
        services.audit,
        rid,
        lambda status: recover_instance_restore(services, rid, run_status=status),
    )
    if out is None:
        context.log.info(f"run {rid} has no audit record: nothing to recover")
        return {"restore_id": rid, "action": "none: no audit record"}
    context.log.info(f"recovery of {rid}: {out['action']}")
    context.add_output_metadata({"recovery": dg.MetadataValue.json(out)})
    if "ROLLBACK FAILED" in (out.get("cause") or ""):
        raise dg.Failure(description=out["cause"], allow_retries=False)
    return out


@dg.job(tags={KIND_TAG: "instance_recover"})
def instance_recover() -> None:
    """Roll back an instance restore that crashed or was terminated (keyed by its restore id)."""
    recover_instance()


def _recover_request(run: dg.DagsterRun) -> dg.RunRequest:
    return restore_id_request("recover_instance", "recover", restore_id_of(run))


recover_after_instance_failure, recover_after_instance_termination = crash_sensors(
    instance_restore,
    instance_recover,
    _recover_request,
    "recover_after_instance_failure",
    "recover_after_instance_termination",
)


# ---------------------------------------------------------------------------- in process
def outcome(job: dg.JobDefinition, run_config: dict, backend_config: dict, rid: str) -> dict:
    """Execute a job in process and return its audit record's summary (status, cause, steps)."""
    resource = backend_resource(backend_config)
    result = job.execute_in_process(
        run_config=run_config,
        resources={"backend": resource},
        raise_on_error=False,
    )
    services = server_restore_services(resource.settings())
    try:
        rec = services.audit.get(rid)
    except KeyError:
        rec = None
    if rec is None:
        return {"restore_id": rid, "status": "rejected", "cause": first_failure(result)}
    summary = rec.get("result") or {}
    return {
        **summary,
        "restore_id": rid,
        "status": rec["status"],
        "cause": rec.get("cause"),
        "dagster_run_id": result.run_id,
        "dagster_success": result.success,
        "duration_s": rec.get("duration_s"),
    }


def run_instance_restore_job(
    request: dict[str, Any],
    backend_config: dict[str, Any],
    *,
    restore_id: str | None = None,
) -> dict[str, Any]:
    """Execute the instance_restore job in process; return the run's summary from the audit log."""
    rid = check_restore_id(restore_id or new_restore_id("i"))
    run_config = {**request, "restore_id": rid}
    return outcome(instance_restore, run_config, backend_config, rid)


def plan_instance_restore_job(request: dict[str, Any], backend_config: dict[str, Any]) -> dict:
    """What an instance restore would do and the configuration it preserves; changes nothing."""
    from restore_assets.core.server_restore.steps import plan_instance_restore

    settings = backend_resource(backend_config).settings()
    return plan_instance_restore(server_restore_backend(settings), request)
