"""Run the Dagster jobs in process (what the CLI and the runbook notebooks call)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from restore_assets.audit import check_restore_id, new_restore_id
from restore_assets.backends import build_services
from restore_assets.errors import InvalidRequest


def _resource(config: dict[str, Any]):
    from restore_assets.jobs.resources import RestoreBackend

    kwargs = {
        k: config[k]
        for k in ("root", "copy_workers", "provision_timeout_s", "lock_timeout", "keep_artifacts")
        if k in config
    }
    return RestoreBackend(
        backend=config.get("backend", "local"), config_file=config.get("config_file", ""), **kwargs
    )


def run_schema_restore(
    request: dict[str, Any],
    backend_config: dict[str, Any],
    *,
    compare: bool = True,
    restore_id: str | None = None,
    detach_cleanup: bool = False,
) -> dict[str, Any]:
    """Execute the schema_restore job in process; return restore_id, status, restored, phases, artifacts."""
    from restore_assets.jobs.schema_restore import schema_restore
    from restore_assets.jobs.tags import RESTORE_ID_TAG

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
    with dagster_instance() as instance:
        result = schema_restore.execute_in_process(
            run_config=run_config,
            resources={"backend": _resource(backend_config)},
            raise_on_error=False,
            tags={RESTORE_ID_TAG: rid},
            instance=instance,
        )
    try:
        rec = services.audit.get(rid)
    except KeyError:
        rec = None
    if rec is None or rec["status"] == "rejected" and not result.success:
        cause = rec["cause"] if rec else _first_failure(result)
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
        "dagster_run_id": result.run_id,
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


@contextlib.contextmanager
def dagster_instance() -> Iterator[Any]:
    """The persistent Dagster instance of $DAGSTER_HOME when it is set (its runs show in the UI and
    its sensors see them), else an ephemeral one."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


def _refusal(services: Any, request: dict[str, Any], restore_id: str) -> str | None:
    """The reason a request is refused (recorded as rejected), checked before launching the job.

    The job's validate op checks again (the source may change in between); checking here first keeps
    Dagster's step-failure output away from a user who only mistyped a name.
    """
    from restore_assets.phases import check_request

    try:
        check_request(services, request, restore_id)
    except InvalidRequest as exc:
        return str(exc)
    return None


def _first_failure(result: Any) -> str:
    for event in result.all_events:
        if event.is_failure and event.step_failure_data is not None:
            return (
                event.step_failure_data.error.message.strip()
                if event.step_failure_data.error
                else "failed"
            )
    return "failed"


def plan_schema_restore(request: dict[str, Any], backend_config: dict[str, Any]) -> dict[str, Any]:
    """Validate a request and describe what a restore would create, creating nothing."""
    from restore_assets.request import RestoreRequest, plan_restore

    services = build_services(backend_config)
    req = RestoreRequest.parse(request)
    plan = plan_restore(req, services.fleet)
    describe = getattr(services.fleet, "plan_resources", None)
    resources = describe(plan) if describe else []
    return {"plan": plan.to_dict(), "would_create": resources}


__all__ = ["run_schema_restore", "plan_schema_restore", "InvalidRequest"]
