"""Instance-level restore and snapshots, step by step, over an InstanceBackend (no Dagster here).

A restore in place: validate (every name and the snapshot, before anything changes) -> snapshot
(task create_snapshot) -> set_aside (rename the original to `<id>-old-<suffix>`) -> restore (the
snapshot under the original's name, with its configuration) -> wait (until it and every member are
available, then verify) -> delete_old (final snapshot first, unless told otherwise). A failure at any
step from set_aside on rolls back: the half-restored target is deleted and the original renamed
back. Every step is recorded in the audit log; a rollback sends an alert through the Notifier.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from restore_assets.backends.protocols import Notifier
from restore_assets.core.audit import AuditLog
from restore_assets.core.errors import InvalidRequest, RestoreError
from restore_assets.core.runner import (
    PhaseResult,
    close_run,
    first_failure,
    not_requested,
    run_phase,
    timings,
)
from restore_assets.core.server_restore.model import InstancePlan, InstanceRequest
from restore_assets.core.server_restore.protocols import InPlaceRestore, InstanceBackend, Record

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
def _step(
    services: InstanceServices,
    restore_id: str,
    step: str,
    requested: bool,
    work: Callable[[], Any],
    upstream: list[PhaseResult] | tuple[PhaseResult, ...] = (),
    metadata: Callable[[Any], dict[str, Any]] = dict,
) -> PhaseResult:
    """One step through the runner (its value is its audit metadata), or not requested."""
    if not requested:
        return not_requested(step)
    return run_phase(services.audit, restore_id, step, work, upstream, metadata)


def snapshot_step(services: InstanceServices, restore_id: str, plan: InstancePlan) -> PhaseResult:
    """Take the snapshot (tasks create_snapshot and create_snapshot_only)."""
    name, record = plan.names.get("snapshot_identifier"), _recorder(services, restore_id)
    return _step(
        services,
        restore_id,
        "snapshot",
        plan.request.takes_snapshot,
        lambda: services.backend.create_snapshot(
            plan.source, name, record, services.snapshot_timeout
        ),
        metadata=lambda v: {"snapshot_id": v["id"], "status": v.get("status")},
    )


def export_step(
    services: InstanceServices, restore_id: str, plan: InstancePlan, snap: PhaseResult
) -> PhaseResult:
    """Export the new snapshot to S3 when asked, following the export to its end."""
    work = partial(services.backend.export_snapshot, snap.value, services.export_timeout)
    return _step(services, restore_id, "export", bool(plan.request.export_s3), work, [snap])


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
    record = _recorder(services, restore_id)
    work = partial(services.backend.set_aside, plan.source, plan.names, record)
    return _step(services, restore_id, "set_aside", plan.request.restores, work, upstream)


def restore_step(
    services: InstanceServices,
    restore_id: str,
    plan: InstancePlan,
    snap: PhaseResult,
    aside: PhaseResult,
) -> PhaseResult:
    """Restore the snapshot under the original's name with all of its configuration."""
    record = _recorder(services, restore_id)

    def work() -> Any:
        snapshot = the_snapshot(plan, snap)
        return services.backend.restore(InPlaceRestore(plan.source, snapshot, plan.names, record))

    return _step(services, restore_id, "restore", plan.request.restores, work, [aside])


def wait_step(
    services: InstanceServices, restore_id: str, plan: InstancePlan, restored: PhaseResult
) -> PhaseResult:
    """Wait for the restored server and every member; verify it."""
    wait = services.backend.wait_restored
    work = partial(wait, plan.source, plan.names, services.wait_timeout)
    return _step(services, restore_id, "wait", plan.request.restores, work, [restored])


def delete_old_step(
    services: InstanceServices, restore_id: str, plan: InstancePlan, ready: PhaseResult
) -> PhaseResult:
    """Remove the renamed original once the restored one is available (final snapshot first)."""
    req = plan.request
    delete = services.backend.delete_old
    work = partial(delete, plan.source, plan.names, req.keep_old, req.skip_final_snapshot)
    return _step(services, restore_id, "delete_old", req.restores, work, [ready])


# ---------------------------------------------------------------------------- finish
def needs_rollback(results: list[PhaseResult]) -> bool:
    """True when a step from set_aside on failed (not merely skipped)."""
    return any(r.phase in ROLLBACK_STEPS and not r.ok and not r.skipped for r in results)


def rollback_step(services: InstanceServices, restore_id: str, plan: InstancePlan) -> PhaseResult:
    """Delete the half-restored target and rename the original back (recorded as step rollback)."""
    resources = partial(services.audit.resources, restore_id, include_deleted=True)
    return _step(
        services,
        restore_id,
        "rollback",
        True,
        lambda: services.backend.rollback(plan.source, plan.names, resources()),
    )


def rolled_back(rollback: PhaseResult | None) -> bool:
    """True when the rollback step ran and put the original back."""
    return bool(rollback and rollback.ok and rollback.value.get("rolled_back"))


def rollback_cause(cause: str | None, plan: InstancePlan, rollback: PhaseResult) -> str:
    """The run's cause followed by what the rollback did (or why it failed)."""
    if rolled_back(rollback):
        return f"{cause}; rolled back: {plan.source.identifier} is the original again"
    if rollback.ok:
        return f"{cause}; not rolled back: {rollback.value.get('reason')}"
    return f"{cause}; ROLLBACK FAILED: {rollback.error} — see the runbook"


def rollback_event(
    kind: str, restore_id: str, plan: InstancePlan, rollback: PhaseResult, cause: str
) -> dict[str, Any]:
    """The alert a rollback sends: rolled back, or the rollback failed."""
    return {
        "kind": kind,
        "status": "rolled_back" if rolled_back(rollback) else "rollback_failed",
        "restore_id": restore_id,
        "identifier": plan.source.identifier,
        "cause": cause,
    }


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
    cause = failed.error if failed else None
    if failed is not None and needs_rollback(results):
        rollback = rollback_step(services, restore_id, plan)
        results = [*results, rollback]
        cause = rollback_cause(cause, plan, rollback)
    snap = next((r for r in results if r.phase == "snapshot" and r.ok and r.value), None)
    summary = {
        "restore_id": restore_id,
        "kind": kind,
        "status": "failed" if failed else "succeeded",
        "cause": cause,
        "task": plan.request.task,
        "identifier": plan.source.identifier,
        "snapshot_id": (snap.value["id"] if snap else (plan.snapshot or {}).get("id")),
        "names": plan.names,
        "steps": timings(results),
        "rolled_back": rolled_back(rollback),
        "warnings": plan.warnings,
    }
    for r in results:
        if r.ok and isinstance(r.value, dict) and r.phase in ("wait", "delete_old", "export"):
            summary[r.phase] = r.value
    event = rollback_event(kind, restore_id, plan, rollback, cause) if rollback else None
    close_run(services.audit, restore_id, summary, services.notifier, event)
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
