"""Recovery of a server restore whose run ended without finishing (crash or termination): roll
back what it changed, or close it when every step had completed (no Dagster here)."""

from __future__ import annotations

from typing import Any

from restore_assets.core.audit import NotOwner, check_restore_id, owner_gone
from restore_assets.core.server_restore.model import InstancePlan
from restore_assets.core.server_restore.steps import (
    KIND_RESTORE,
    RESOURCE_KINDS,
    InstanceServices,
    rollback_cause,
    rollback_event,
    rollback_step,
    rolled_back,
)


def recover_instance_restore(
    services: InstanceServices, restore_id: str, run_status: str | None = None
) -> dict[str, Any]:
    """After a crash or termination (the record still `running`): roll back, or close as done.

    Idempotent: a run that finished (succeeded, failed and rolled back, rejected) is left as it is.
    A run whose delete_old step had completed is closed as succeeded; any other is rolled back.
    Only for a run whose owner has ended or is provably dead (run_status: the Dagster status of the
    owner's run, when the caller can see it); otherwise NotOwner names the owner.
    """
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
    rollback = rollback_step(services, restore_id, plan)
    cause = rollback_cause("run ended (crashed or terminated)", plan, rollback)
    services.audit.close(restore_id, "failed", cause)
    if services.notifier is not None:
        services.notifier.send(rollback_event(KIND_RESTORE, restore_id, plan, rollback, cause))
    return {
        "restore_id": restore_id,
        "status": "failed",
        "action": "rolled back" if rolled_back(rollback) else "see cause",
        "cause": cause,
        "rollback": rollback.value if rollback.ok else rollback.error,
    }
