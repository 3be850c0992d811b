"""Instance-level restore and snapshots, step by step, over an InstanceBackend (no Dagster here).

A restore in place: validate (every name and the snapshot, before anything changes) -> snapshot
(task create_snapshot) -> set_aside (rename the original to `<id>-old-<suffix>`) -> restore (the
snapshot under the original's name, with its configuration) -> wait (until it and every member are
available, then verify) -> delete_old (final snapshot first, unless told otherwise). A failure at any
step from set_aside on rolls back: the half-restored target is deleted and the original renamed
back. Every step is recorded in the audit log; a rollback sends an alert through the Notifier.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from restore_assets.backends.protocols import Notifier
from restore_assets.core.audit import AuditLog
from restore_assets.core.errors import InvalidRequest, RestoreError
from restore_assets.core.schema_restore import phases
from restore_assets.core.schema_restore.phases import PhaseResult, first_failure
from restore_assets.core.server_restore.model import InstancePlan, InstanceRequest
from restore_assets.core.server_restore.protocols import InstanceBackend, Record

log = logging.getLogger("restore_assets.backends.server_factory")

KIND_RESTORE = "instance_restore"
KIND_SNAPSHOT = "snapshot"
STEPS = ("validate", "snapshot", "export", "set_aside", "restore", "wait", "delete_old")
ROLLBACK_STEPS = ("set_aside", "restore", "wait", "delete_old")
# resources the backends record once a step has started changing things
RESOURCE_KINDS = (
    "rds-renamed-original",
    "rds-restored-target",
    "local-set-aside",
    "local-restored",
)


@dataclass
class InstanceServices:
    """What an instance-level run uses: the backend, the audit log, the notifier, the time limits."""

    backend: InstanceBackend
    audit: AuditLog
    notifier: Notifier | None = None
    wait_timeout: float = 3600
    snapshot_timeout: float = 3600
    export_timeout: float = 6 * 3600


def run_step(
    services: InstanceServices,
    restore_id: str,
    step: str,
    fn: Callable[[], Any],
    upstream: list[PhaseResult] | tuple[PhaseResult, ...] = (),
    metadata: Callable[[Any], dict[str, Any]] | None = None,
) -> PhaseResult:
    """Run one step unless an upstream one failed; record it in the audit log; never raise."""
    started = datetime.now(UTC).isoformat()
    failed = first_failure(list(upstream))
    if failed is not None:
        return PhaseResult(step, ok=False, skipped=True, error=failed.error, started_at=started)
    t0 = time.monotonic()
    try:
        phases.phase_hook(restore_id, step, "before")
        value = fn()
        phases.phase_hook(restore_id, step, "after")
        meta = metadata(value) if metadata else {}
        result = PhaseResult(step, True, value, started_at=started, metadata=meta)
    except Exception as exc:  # noqa: BLE001 - carried to finish, which rolls back and fails the run
        cause = f"{step}: {type(exc).__name__}: {exc}"
        log.error("step %s failed: %s", step, exc)
        log.debug("%s", traceback.format_exc())
        result = PhaseResult(step, False, error=cause, started_at=started)
    result.seconds = round(time.monotonic() - t0, 3)
    services.audit.phase(
        restore_id,
        step,
        "succeeded" if result.ok else "failed",
        started_at=started,
        error=result.error,
        metadata={**result.metadata, "seconds": result.seconds},
    )
    return result


def not_requested(step: str) -> PhaseResult:
    """The result of a step this task does not include."""
    return PhaseResult(step, ok=True, value=None, metadata={"not_requested": True})


# ---------------------------------------------------------------------------- validate / plan
def make_plan(
    backend: InstanceBackend, raw: Mapping[str, Any], force_task: str | None = None
) -> InstancePlan:
    """Check a request statically, then against the server (read-only calls); change nothing."""
    data = dict(raw)
    if force_task:
        if data.get("task") not in (None, "", force_task):
            raise InvalidRequest(f"this job only runs task {force_task}, not {data['task']!r}")
        data["task"] = force_task
    request = InstanceRequest.parse(data)
    identifier = backend.resolve_identifier(request.identifier)
    names = backend.check_names(identifier, request.suffix)  # static: before any call
    names["snapshot_identifier"] = request.snapshot_identifier
    source = backend.describe(identifier)
    snapshot = None
    if request.snapshot_id:
        snapshot = backend.check_snapshot(source, request.snapshot_id)
    elif request.restore_time:
        check_time = getattr(backend, "check_restore_time", None)
        if check_time is None:
            raise InvalidRequest(
                f"a point-in-time server restore is not available on {backend.name}"
            )
        snapshot = check_time(source, request.restore_time)  # the base backup and the time
    checked = {**names, "task": request.task, "export_s3": request.export_s3}
    warnings = backend.check_free(source, checked)  # may complete the names (members, snapshot)
    names = {k: v for k, v in checked.items() if k not in ("task", "export_s3")}
    if snapshot and snapshot.get("warnings"):
        warnings += list(snapshot["warnings"])
    return InstancePlan(request, source, snapshot, names, warnings)


def describe_plan(plan: InstancePlan) -> dict[str, Any]:
    """What a run would do, step by step, and the configuration it preserves (for --plan)."""
    req, names, src = plan.request, plan.names, plan.source
    steps: list[str] = []
    if req.takes_snapshot:
        steps.append(
            f"take a snapshot of {src.identifier}"
            + (f" named {names['snapshot_identifier']}" if names.get("snapshot_identifier") else "")
            + " and wait until it is available"
        )
        if req.export_s3:
            steps.append("export the snapshot to S3 and follow the export to completion")
    if req.restores:
        snap = plan.snapshot["id"] if plan.snapshot else "the new snapshot"
        if req.restore_time:
            snap = f"{snap} recovered to {req.restore_time}"
        steps += [
            f"rename {src.identifier} to {names['renamed']} and wait",
            f"restore {snap} as {src.identifier} with the configuration below",
            f"wait until {src.identifier}"
            + (" and every member" if src.members else "")
            + " is available, then verify it",
        ]
        if req.keep_old:
            steps.append(f"keep {names['renamed']}")
        else:
            final = (
                "without a final snapshot"
                if req.skip_final_snapshot
                else f"with final snapshot {names.get('final_snapshot')}"
            )
            steps.append(f"delete {names['renamed']} {final}")
        steps.append(f"on any failure: delete the restored target, rename {names['renamed']} back")
    return {
        "task": req.task,
        "identifier": src.identifier,
        "topology": src.topology,
        "snapshot": plan.snapshot,
        "names": names,
        "steps": steps,
        "preserved_configuration": src.config,
        "members": src.members,
        "warnings": plan.warnings,
    }


def validate(
    services: InstanceServices,
    raw: Mapping[str, Any],
    kind: str = KIND_RESTORE,
    restore_id: str | None = None,
    owner: dict[str, Any] | None = None,
) -> tuple[str, InstancePlan]:
    """Plan the run and open its audit record; a refused request is recorded as rejected."""
    force = "create_snapshot_only" if kind == KIND_SNAPSHOT else None
    try:
        plan = make_plan(services.backend, raw, force)
    except InvalidRequest as exc:
        rid = services.audit.reject(kind, _safe(raw), str(exc), restore_id)
        raise InvalidRequest(f"{exc} (run {rid} rejected)") from None
    rid = services.audit.open(
        kind,
        {
            **plan.request.to_dict(),
            "identifier": plan.source.identifier,
            "backend": _name(services),
        },
        restore_id,
        owner=owner,
    )
    # the run's id travels with its names: backends tag (AWS) or label (local) what they create
    # with it, and a rollback touches only what carries it
    plan.names["restore_id"] = rid
    services.audit.phase(
        rid,
        "validate",
        "succeeded",
        started_at=datetime.now(UTC).isoformat(),
        # the whole plan (no secret in it): what a recovery after a crash needs
        metadata={"plan": plan.to_dict(), "warnings": plan.warnings},
    )
    return rid, plan


def _name(services: InstanceServices) -> str:
    return getattr(services.backend, "name", type(services.backend).__name__)


def _safe(raw: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        return {"request": str(raw)}
    return {
        str(k): (v if isinstance(v, str | int | float | bool | type(None)) else str(v))
        for k, v in raw.items()
    }


def _recorder(services: InstanceServices, restore_id: str) -> Record:
    def record(kind: str, identifier: str, details: dict[str, Any]) -> None:
        services.audit.resource(restore_id, kind, identifier, details)

    return record


# ---------------------------------------------------------------------------- steps
def snapshot_step(services: InstanceServices, restore_id: str, plan: InstancePlan) -> PhaseResult:
    """Take the snapshot (tasks create_snapshot and create_snapshot_only)."""
    if not plan.request.takes_snapshot:
        return not_requested("snapshot")
    return run_step(
        services,
        restore_id,
        "snapshot",
        lambda: services.backend.create_snapshot(
            plan.source,
            plan.names.get("snapshot_identifier"),
            _recorder(services, restore_id),
            services.snapshot_timeout,
        ),
        metadata=lambda v: {"snapshot_id": v["id"], "status": v.get("status")},
    )


def export_step(
    services: InstanceServices, restore_id: str, plan: InstancePlan, snap: PhaseResult
) -> PhaseResult:
    """Export the new snapshot to S3 when asked, following the export to its end."""
    if not plan.request.export_s3:
        return not_requested("export")
    return run_step(
        services,
        restore_id,
        "export",
        lambda: services.backend.export_snapshot(snap.value, services.export_timeout),
        [snap],
        metadata=lambda v: v,
    )


def the_snapshot(plan: InstancePlan, snap: PhaseResult) -> dict[str, Any]:
    """The snapshot a restore uses: the one just taken, or the one the request named."""
    if snap.value:
        return snap.value
    if plan.snapshot is None:
        raise RestoreError("no snapshot to restore from")
    return plan.snapshot


def set_aside_step(
    services: InstanceServices, restore_id: str, plan: InstancePlan, upstream: list[PhaseResult]
) -> PhaseResult:
    """Rename the original out of the way and wait."""
    if not plan.request.restores:
        return not_requested("set_aside")
    return run_step(
        services,
        restore_id,
        "set_aside",
        lambda: services.backend.set_aside(
            plan.source, plan.names, _recorder(services, restore_id)
        ),
        upstream,
        metadata=lambda v: v,
    )


def restore_step(
    services: InstanceServices,
    restore_id: str,
    plan: InstancePlan,
    snap: PhaseResult,
    aside: PhaseResult,
) -> PhaseResult:
    """Restore the snapshot under the original's name with all of its configuration."""
    if not plan.request.restores:
        return not_requested("restore")
    return run_step(
        services,
        restore_id,
        "restore",
        lambda: services.backend.restore(
            plan.source, the_snapshot(plan, snap), plan.names, _recorder(services, restore_id)
        ),
        [aside],
        metadata=lambda v: v,
    )


def wait_step(
    services: InstanceServices, restore_id: str, plan: InstancePlan, restored: PhaseResult
) -> PhaseResult:
    """Wait for the restored server and every member; verify it."""
    if not plan.request.restores:
        return not_requested("wait")
    return run_step(
        services,
        restore_id,
        "wait",
        lambda: services.backend.wait_restored(plan.source, plan.names, services.wait_timeout),
        [restored],
        metadata=lambda v: v,
    )


def delete_old_step(
    services: InstanceServices, restore_id: str, plan: InstancePlan, ready: PhaseResult
) -> PhaseResult:
    """Remove the renamed original once the restored one is available (final snapshot first)."""
    if not plan.request.restores:
        return not_requested("delete_old")
    return run_step(
        services,
        restore_id,
        "delete_old",
        lambda: services.backend.delete_old(
            plan.source, plan.names, plan.request.keep_old, plan.request.skip_final_snapshot
        ),
        [ready],
        metadata=lambda v: v,
    )


# ---------------------------------------------------------------------------- finish
def needs_rollback(results: list[PhaseResult]) -> bool:
    """True when a step from set_aside on failed (not merely skipped)."""
    return any(r.phase in ROLLBACK_STEPS and not r.ok and not r.skipped for r in results)


def finish(
    services: InstanceServices,
    restore_id: str,
    plan: InstancePlan,
    results: list[PhaseResult],
    kind: str = KIND_RESTORE,
) -> dict[str, Any]:
    """Roll back when needed, alert on a rollback, write the final status; return the summary."""
    failed = first_failure(results)
    rollback: PhaseResult | None = None
    if failed is not None and needs_rollback(results):
        rollback = run_step(
            services,
            restore_id,
            "rollback",
            lambda: services.backend.rollback(
                plan.source, plan.names, services.audit.resources(restore_id, include_deleted=True)
            ),
            metadata=lambda v: v,
        )
        results = [*results, rollback]
    cause = failed.error if failed else None
    if rollback is not None:
        if rollback.ok and rollback.value.get("rolled_back"):
            cause = f"{cause}; rolled back: {plan.source.identifier} is the original again"
        elif rollback.ok:
            cause = f"{cause}; not rolled back: {rollback.value.get('reason')}"
        else:
            cause = f"{cause}; ROLLBACK FAILED: {rollback.error} — see the runbook"
    snap = next((r for r in results if r.phase == "snapshot" and r.ok and r.value), None)
    status = "failed" if failed else "succeeded"
    summary = {
        "restore_id": restore_id,
        "kind": kind,
        "status": status,
        "cause": cause,
        "task": plan.request.task,
        "identifier": plan.source.identifier,
        "snapshot_id": (snap.value["id"] if snap else (plan.snapshot or {}).get("id")),
        "names": plan.names,
        "steps": {
            r.phase: {
                "ok": r.ok,
                "skipped": r.skipped,
                "seconds": r.seconds,
                "error": r.error,
                **({"not_requested": True} if r.metadata.get("not_requested") else {}),
            }
            for r in results
        },
        "rolled_back": bool(rollback and rollback.ok and rollback.value.get("rolled_back")),
        "warnings": plan.warnings,
    }
    for r in results:
        if r.ok and isinstance(r.value, dict) and r.phase in ("wait", "delete_old", "export"):
            summary[r.phase] = r.value
    services.audit.update(restore_id, result=summary)
    services.audit.close(restore_id, status, cause)
    if rollback is not None and services.notifier is not None:
        services.notifier.send(
            {
                "kind": kind,
                "status": "rolled_back" if summary["rolled_back"] else "rollback_failed",
                "restore_id": restore_id,
                "identifier": plan.source.identifier,
                "cause": cause,
            }
        )
    return summary


# ---------------------------------------------------------------------------- whole runs
def run_instance_restore(
    services: InstanceServices,
    raw: Mapping[str, Any],
    restore_id: str | None = None,
    kind: str = KIND_RESTORE,
) -> dict[str, Any]:
    """Every step in order, without Dagster (the job runs the same steps as ops)."""
    rid, plan = validate(services, raw, kind, restore_id)
    snap = snapshot_step(services, rid, plan)
    exported = export_step(services, rid, plan, snap)
    aside = set_aside_step(services, rid, plan, [snap, exported])
    restored = restore_step(services, rid, plan, snap, aside)
    ready = wait_step(services, rid, plan, restored)
    deleted = delete_old_step(services, rid, plan, ready)
    return finish(services, rid, plan, [snap, exported, aside, restored, ready, deleted], kind)


def take_snapshot(
    services: InstanceServices, raw: Mapping[str, Any], restore_id: str | None = None
) -> dict[str, Any]:
    """The snapshot job's core: take a snapshot (and export it) without Dagster."""
    return run_instance_restore(services, raw, restore_id, kind=KIND_SNAPSHOT)


def plan_instance_restore(backend: InstanceBackend, raw: Mapping[str, Any]) -> dict[str, Any]:
    """What a run would do and the configuration it preserves; no mutating call."""
    return describe_plan(make_plan(backend, raw))


def recover_instance_restore(
    services: InstanceServices, restore_id: str, run_status: str | None = None
) -> dict[str, Any]:
    """After a crash or termination (the record still `running`): roll back, or close as done.

    Idempotent: a run that finished (succeeded, failed and rolled back, rejected) is left as it is.
    A run whose delete_old step had completed is closed as succeeded; any other is rolled back.
    Only for a run whose owner has ended or is provably dead (run_status: the Dagster status of the
    owner's run, when the caller can see it); otherwise NotOwner names the owner.
    """
    from restore_assets.core.audit import NotOwner, check_restore_id, owner_gone

    check_restore_id(restore_id)
    rec = services.audit.get(restore_id)
    if rec["status"] != "running":
        return {"restore_id": restore_id, "status": rec["status"], "action": "none: run finished"}
    gone, why = owner_gone(rec.get("owner"), run_status)
    if not gone:
        raise NotOwner(
            f"run {restore_id} is running and belongs to {why}: recovery refused."
            " Recover it after that run has ended."
        )
    validate_phase = next((p for p in rec["phases"] if p["phase"] == "validate"), None)
    if validate_phase is None or "plan" not in validate_phase["metadata"]:
        services.audit.close(restore_id, "failed", "run ended before its plan was recorded")
        return {"restore_id": restore_id, "status": "failed", "action": "none: nothing was changed"}
    plan = InstancePlan.from_dict(validate_phase["metadata"]["plan"])
    done = {p["phase"] for p in rec["phases"] if p["outcome"] == "succeeded"}
    snapshot_done = {"snapshot", "export"} <= done | (
        {"export"} if not plan.request.export_s3 else set()
    )
    if "delete_old" in done or (not plan.request.restores and snapshot_done):
        services.audit.close(restore_id, "succeeded", None)
        return {
            "restore_id": restore_id,
            "status": "succeeded",
            "action": "closed: every step done",
        }
    started = {p["phase"] for p in rec["phases"]} | {
        r["kind"] for r in services.audit.resources(restore_id, include_deleted=True)
    }
    if not plan.request.restores or not started & {"set_aside", *RESOURCE_KINDS}:
        services.audit.close(
            restore_id, "failed", "run ended (crashed or terminated) before any change"
        )
        return {"restore_id": restore_id, "status": "failed", "action": "none: original untouched"}
    rollback = run_step(
        services,
        restore_id,
        "rollback",
        lambda: services.backend.rollback(
            plan.source, plan.names, services.audit.resources(restore_id, include_deleted=True)
        ),
        metadata=lambda v: v,
    )
    if rollback.ok and rollback.value.get("rolled_back"):
        cause = f"run ended (crashed or terminated); rolled back: {plan.source.identifier} is the original again"
    elif rollback.ok:
        cause = (
            f"run ended (crashed or terminated); not rolled back: {rollback.value.get('reason')}"
        )
    else:
        cause = f"run ended (crashed or terminated); ROLLBACK FAILED: {rollback.error}"
    services.audit.close(restore_id, "failed", cause)
    if services.notifier is not None:
        services.notifier.send(
            {
                "kind": KIND_RESTORE,
                "status": "rolled_back"
                if rollback.ok and rollback.value.get("rolled_back")
                else "rollback_failed",
                "restore_id": restore_id,
                "identifier": plan.source.identifier,
                "cause": cause,
            }
        )
    return {
        "restore_id": restore_id,
        "status": "failed",
        "action": "rolled back"
        if rollback.ok and rollback.value.get("rolled_back")
        else "see cause",
        "cause": cause,
        "rollback": rollback.value if rollback.ok else rollback.error,
    }
