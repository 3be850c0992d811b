"""Launch the schema restore for the CLI and the runbook notebooks (the job runs in process)."""

from __future__ import annotations

from typing import Any

from restore_assets.backends.factory import build_services
from restore_assets.core.audit import check_restore_id, new_restore_id
from restore_assets.core.errors import InvalidRequest


def run_schema_restore(
    request: dict[str, Any],
    backend_config: dict[str, Any],
    *,
    compare: bool = True,
    restore_id: str | None = None,
    detach_cleanup: bool = False,
) -> dict[str, Any]:
    """Execute the schema_restore job in process; return restore_id, status, restored, phases, artifacts."""
    from restore_assets.jobs.in_process import execute_schema_restore

    rid = check_restore_id(restore_id or new_restore_id())  # before anything is created
    services = build_services(backend_config)
    refused = _refusal(services, request, rid)
    if refused is not None:
        return {
            "restore_id": rid,
            "status": "rejected",
            "cause": refused,
            "restored": {},
            "phases": {},
            "artifacts": {},
        }
    run_config = {**request, "compare": compare, "detach_cleanup": detach_cleanup}
    run_id, success, failure = execute_schema_restore(run_config, backend_config, rid)
    try:
        rec = services.audit.get(rid)
    except KeyError:
        rec = None
    if rec is None or rec["status"] == "rejected" and not success:
        cause = rec["cause"] if rec else failure
        return {
            "restore_id": rid,
            "status": "rejected",
            "cause": cause,
            "restored": {},
            "phases": {},
            "artifacts": {},
        }
    summary = rec.get("result") or {}
    return {
        "restore_id": rid,
        "status": rec["status"],
        "cause": rec.get("cause"),
        "dagster_run_id": run_id,
        "restore_point": rec.get("restore_point"),
        "restored": summary.get("restored", {}),
        "phases": {
            p["phase"]: {
                "outcome": p["outcome"],
                "seconds": p["metadata"].get("seconds"),
                "error": p["error"],
            }
            for p in rec["phases"]
        },
        "artifacts": summary.get("artifacts", {}),
        "report": summary.get("report"),
        "duration_s": rec.get("duration_s"),
        **_rto_and_total(rec),
    }


def _rto_and_total(rec: dict[str, Any]) -> dict[str, Any]:
    """RTO: request to the answer (the schemas usable); total: plus removing the temporary server."""
    rto = rec.get("duration_s")
    after = [
        p["metadata"].get("seconds") or 0.0
        for p in rec["phases"]
        if p["metadata"].get("after_answer")
    ]
    return {
        "rto_s": rto,
        "total_s": round(rto + sum(after), 3) if rto is not None and after else None,
    }


def _refusal(services: Any, request: dict[str, Any], restore_id: str) -> str | None:
    """The reason a request is refused (recorded as rejected), checked before launching the job.

    The job's validate op checks again (the source may change in between); checking here first keeps
    Dagster's step-failure output away from a user who only mistyped a name.
    """
    from restore_assets.core.schema_restore.phases import check_request

    try:
        check_request(services, request, restore_id)
    except InvalidRequest as exc:
        return str(exc)
    return None


def plan_schema_restore(request: dict[str, Any], backend_config: dict[str, Any]) -> dict[str, Any]:
    """Validate a request and describe what a restore would create, creating nothing."""
    from restore_assets.core.request import RestoreRequest, plan_restore

    services = build_services(backend_config)
    req = RestoreRequest.parse(request)
    plan = plan_restore(req, services.fleet)
    describe = getattr(services.fleet, "plan_resources", None)
    resources = describe(plan) if describe else []
    return {"plan": plan.to_dict(), "would_create": resources}


__all__ = ["run_schema_restore", "plan_schema_restore", "InvalidRequest"]
