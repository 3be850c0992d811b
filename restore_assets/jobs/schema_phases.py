"""The ops of the `schema_restore` job after the request: one thin op per phase of the core.

Each op runs one phase function through `core/runner.run_phase` (skipped after an upstream failure);
a failing phase fails its op and `clean_up_after_failed_phase` removes what the run created; the
always-run `cleanup_resources` and `finish_restore` close the audit record; after the answer,
`release_temporary_resources` removes the temporary server.
"""

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from restore_assets.backends.release import launch_detached
from restore_assets.core import runner
from restore_assets.core.progress import CopyWatcher, ticker
from restore_assets.core.runner import PhaseResult, run_phase
from restore_assets.core.schema_restore import phases
from restore_assets.core.schema_restore.comparison import compare
from restore_assets.core.schema_restore.release import cleanup_or_defer, release_temporary
from restore_assets.core.schema_restore.services import Services
from restore_assets.jobs.report_asset import log_reports
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.runs import check_owner
from restore_assets.jobs.thin_ops import report_result, results_of, thin_op


def op_services(backend: RestoreBackend, context: dg.OpExecutionContext) -> Services:
    """The backend's Services for an op (remote task runners launched through Dagster Pipes)."""
    services = backend.services()
    if any(hasattr(c, "launcher") for c in (services.ddl, services.mover)):
        # remote task runners (the AWS backend's ECS task) launch through Dagster Pipes in an op
        from restore_assets.jobs.aws_resources import attach_pipes

        attach_pipes((services.ddl, services.mover), context)
    return services


def _ctx(run: dict) -> tuple[str, phases.RestorePlan]:
    return run["restore_id"], phases.RestorePlan.from_dict(run["plan"])


def _phase(
    context: dg.OpExecutionContext,
    backend: RestoreBackend,
    run: dict,
    phase: str,
    body: Callable[[Services, str, phases.RestorePlan], Any],
    upstream: list[PhaseResult] | tuple[PhaseResult, ...] = (),
    metadata: Callable[[Any], dict[str, Any]] | None = None,
) -> PhaseResult:
    """Run one phase of the core for this op (skipped after an upstream failure), log it, report it."""
    services = op_services(backend, context)
    rid, plan = _ctx(run)
    check_owner(context, services.audit.get(rid))
    result = run_phase(
        services.audit, rid, phase, lambda: body(services, rid, plan), upstream, metadata
    )
    if not result.ok and not result.skipped and phase not in phases.WARNING_PHASES:
        # this op is the failing one; `clean_up_after_failed_phase` removes what the run created
        context.log.error(f"phase {phase} failed: {result.error}")
        raise dg.Failure(
            description=f"phase {phase} failed: {result.error}",
            metadata={
                "restore_id": rid,
                FAILED_PHASE: phase,
                "cause": result.error or "",
                "seconds": result.seconds,
            },
            allow_retries=False,
        )
    return report_result(context, result, "phase")


FAILED_PHASE = "failed_phase"


@dg.failure_hook(required_resource_keys={"backend"})
def clean_up_after_failed_phase(context: dg.HookContext) -> None:
    """After a phase op failed (the ops after it never run): remove what the restore created and
    record its failure. Refusals and ownership checks carry no failed phase and clean nothing."""
    exc = context.op_exception
    meta = exc.metadata if isinstance(exc, dg.Failure) else {}
    if FAILED_PHASE not in meta:
        return
    rid = _text(meta["restore_id"])
    phase = _text(meta[FAILED_PHASE])
    services = context.resources.backend.services()
    if services.audit.get(rid)["status"] != "running":
        return  # another failed step of this run already cleaned up and closed the record
    out = cleanup_or_defer(services, rid, failed=True)
    context.log.info(f"restore {rid}: after {phase} failed, removed {out['removed']}")
    errors = "; ".join(out["errors"]) or None
    results = [
        PhaseResult(phase, ok=False, error=_text(meta["cause"])),
        PhaseResult("cleanup", ok=not errors, error=errors, value=out),
    ]
    phases.finish(services, rid, results, {"restored": {}, "artifacts": {}, "report": None})


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def phase_op(
    phase: str, metadata: Callable[[Any], dict[str, Any]] | None = None
) -> Callable[[Callable[..., Any]], dg.OpDefinition]:
    """Decorate `body(services, restore id, plan, *upstream)`: the op running it as one phase."""

    def decorate(body: Callable[..., Any]) -> dg.OpDefinition:
        def run_body(
            context: dg.OpExecutionContext, backend: RestoreBackend, run: dict, inputs: dict
        ) -> PhaseResult:
            return _phase(
                context,
                backend,
                run,
                phase,
                lambda s, rid, plan: body(s, rid, plan, **inputs),
                results_of(inputs),
                metadata,
            )

        return thin_op(body, run_body)

    return decorate


@phase_op("topology", metadata=dict)
def detect_topology(s: Services, rid: str, _plan: phases.RestorePlan) -> Any:
    """Phase 1b: topology, engine version and restore window of the source."""
    return phases.topology(s, rid)


@phase_op("provision", metadata=lambda temp: temp.to_dict())
def provision_temp_database(
    s: Services, rid: str, plan: phases.RestorePlan, topology: PhaseResult
) -> Any:
    """Phase 2: the temporary server at the restore point."""
    return phases.provision(s, rid, plan)


def _ddl_metadata(v: dict[str, Any]) -> dict[str, Any]:
    bundle = v["bundle"]
    return {
        "artifacts": v["artifacts"],
        "pre_statements": len(bundle.pre),
        "post_statements": len(bundle.post),
        "warnings": list(bundle.warnings),
    }


@phase_op("ddl", metadata=_ddl_metadata)
def extract_ddl(s: Services, rid: str, plan: phases.RestorePlan, temp: PhaseResult) -> Any:
    """Phase 3: dump, split and rename the DDL; store pre, post and full as artifacts."""
    return phases.extract_ddl(s, rid, plan, temp.value)


@phase_op("pre", metadata=dict)
def apply_pre_ddl(s: Services, rid: str, plan: phases.RestorePlan, ddl: PhaseResult) -> Any:
    """Phase 3b: create the restored schemas' tables and keys in production (one transaction)."""
    return phases.apply_pre(s, rid, plan, ddl.value["bundle"])


@dg.op(out=dg.DynamicOut(dict))
def fan_out_schemas(
    context: dg.OpExecutionContext, run: dict, temp: PhaseResult, pre: PhaseResult, ddl: PhaseResult
) -> Iterator[dg.DynamicOutput]:
    """Phase 4 fan-out: one copy per schema."""
    for schema in run["plan"]["request"]["schemas"]:
        key = re.sub(r"[^A-Za-z0-9_]", "_", schema)
        yield dg.DynamicOutput(
            {"schema": schema, "run": run, "temp": temp, "pre": pre, "ddl": ddl},
            mapping_key=key,
        )


@dg.op(out=dg.Out(PhaseResult))
def copy_schema_data(
    context: dg.OpExecutionContext, task: dict, backend: RestoreBackend
) -> PhaseResult:
    """Phase 4: copy one schema's rows from the temporary server (parallel COPY or DMS)."""
    run, schema = task["run"], task["schema"]
    temp: PhaseResult = task["temp"]

    def progress(t: Any) -> None:
        context.log.info(
            f"copied {t.schema}.{t.table} -> {t.target_schema}: {t.rows} rows, {t.bytes} bytes in {t.seconds:.2f}s"
        )

    def meta(report: Any) -> dict[str, Any]:
        return {
            "schema": schema,
            "rows": sum(t.rows for t in report.tables),
            "bytes": sum(t.bytes for t in report.tables),
            "tables": {
                t.table: {"rows": t.rows, "bytes": t.bytes, "seconds": round(t.seconds, 3)}
                for t in report.tables
            },
        }

    stop = log_copy_progress(context, backend, run, schema)
    try:
        return _phase(
            context,
            backend,
            run,
            f"copy:{schema}",
            lambda s, _rid, plan: phases.copy_schema(
                s,
                plan,
                temp.value,
                schema,
                progress,
                post=phases.pipeline_post(s, task["ddl"].value["bundle"]),
            ),
            [temp, task["pre"]],
            metadata=meta,
        )
    finally:
        stop()


COPY_PROGRESS_SECONDS = 5.0


def log_copy_progress(
    context: dg.OpExecutionContext, backend: RestoreBackend, run: dict, schema: str
) -> Callable[[], None]:
    """Log the copy's rows, bytes and ETA every few seconds until the returned function is called."""
    _rid, plan = _ctx(run)
    target = plan.targets[schema]
    dsn = backend.services().fleet.production_dsn(plan.request.database)
    watcher = CopyWatcher(dsn, {schema: target})
    return ticker(
        COPY_PROGRESS_SECONDS,
        watcher.sample,
        lambda p: context.log.info(f"copy {schema} -> {target}: {p.summary()}"),
    )


@phase_op("post", metadata=dict)
def apply_post_ddl(
    s: Services, rid: str, plan: phases.RestorePlan, ddl: PhaseResult, copies: list[PhaseResult]
) -> Any:
    """Phase 5: constraints, indexes, triggers, views, policies, sequences; refresh; ANALYZE."""
    return phases.apply_post(s, plan, ddl.value["bundle"], rid, [c.value for c in copies if c.ok])


@dg.op(out=dg.Out(dict))
def cleanup_resources(
    context: dg.OpExecutionContext,
    run: dict,
    topology: PhaseResult,
    temp: PhaseResult,
    ddl: PhaseResult,
    pre: PhaseResult,
    copies: list[PhaseResult],
    post: PhaseResult,
    compared: PhaseResult,
    backend: RestoreBackend,
) -> dict:
    """Phase 6: always runs; removes the temporary server, and the restored schemas if the restore
    failed (a failed comparison or report is a warning: the restored schemas stay)."""
    services = op_services(backend, context)
    rid, _plan = _ctx(run)
    check_owner(context, services.audit.get(rid))
    results = [topology, temp, ddl, pre, *copies, post, compared]
    failed = phases.restore_failure(results) is not None
    hook_error = None
    try:
        runner.phase_hook(rid, "cleanup", "before")  # looked up at call time: tests replace it
    except Exception as exc:  # noqa: BLE001 - the tests' fault hook: cleanup runs as after a failure
        hook_error = f"cleanup: {type(exc).__name__}: {exc}"
    out = cleanup_or_defer(services, rid, failed=failed or hook_error is not None)
    context.log.info(f"cleanup removed {out['removed']}, kept {out['kept']}")
    if out["errors"]:
        context.log.error(f"cleanup errors: {out['errors']}")
    context.add_output_metadata(
        {
            "removed": dg.MetadataValue.json(out["removed"]),
            "kept": dg.MetadataValue.json(out["kept"]),
        }
    )
    error = "; ".join(out["errors"]) or hook_error
    cleanup_result = PhaseResult("cleanup", ok=not error, error=error, value=out)
    return {"results": results + [cleanup_result], "cleanup": out}


@dg.op(out=dg.Out(dict))
def finish_restore(
    context: dg.OpExecutionContext,
    run: dict,
    cleaned: dict,
    backend: RestoreBackend,
) -> dict:
    """Phase 7: final audit status with timings and cause; the run fails if any phase failed."""
    services = op_services(backend, context)
    rid, plan = _ctx(run)
    check_owner(context, services.audit.get(rid))
    results: list[PhaseResult] = cleaned["results"]
    compared = next(r for r in results if r.phase == "compare")
    ddl = next((r for r in results if r.phase == "ddl" and r.ok), None)
    extra = {
        "restored": plan.targets,
        "restore_point": plan.restore_point.isoformat(),
        "artifacts": ddl.value["artifacts"] if ddl else {},
        "report": compared.value if compared.ok and compared.value else None,
    }
    summary = phases.finish(services, rid, results, extra)
    for warning in summary["warnings"]:
        context.log.warning(warning)
    context.add_output_metadata({"status": summary["status"], "restore_id": rid})
    if summary["status"] != "succeeded":
        raise dg.Failure(
            description=f"restore {rid} failed: {summary['cause']}", metadata={"restore_id": rid}
        )
    return summary


@dg.op(out=dg.Out(PhaseResult))
def compare_restored(
    context: dg.OpExecutionContext, run: dict, post: PhaseResult, backend: RestoreBackend
) -> PhaseResult:
    """Phase 5b: the comparison report of each restored schema against its live schema (configurable off)."""
    if not run.get("compare", True):
        return report_result(
            context,
            PhaseResult("compare", ok=True, value=None, metadata={"disabled": True}),
            "phase",
        )
    rid, plan = _ctx(run)
    result = _phase(
        context, backend, run, "compare", compare, [post], metadata=lambda v: v["headline"]
    )
    if result.ok:
        settings = backend.settings()
        log_reports(
            context,
            rid,
            plan.request.database,
            plan.targets,
            plan.restore_point.isoformat(),
            result.value,
            started_at=backend.services().audit.get(rid).get("created_at"),
            root=settings.get("root") if settings.get("backend") == "local" else None,
        )
    return result


@dg.op(out=dg.Out(dict))
def release_temporary_resources(
    context: dg.OpExecutionContext, run: dict, answer: dict, copies: list, backend: RestoreBackend
) -> dict:
    """After the answer `succeeded`: remove the temporary server, in this run or a detached process.

    `copies` (the per-schema copies' fan-in, unused here) makes this step a direct consumer of the
    dynamic collect. Dagster resolves a step two or more hops past a collect only when the plan's
    steps come in graph order, which a re-execution's step selection does not guarantee; out of
    order, the run waits on this step at full CPU (a refused re-execution was seen to take ten
    minutes instead of seconds).
    """
    rid = run["restore_id"]
    if run.get("detach_cleanup"):
        settings = backend.settings()
        log_dir = Path(settings["root"]) / "logs" if settings.get("root") else None
        pid = launch_detached(settings, rid, log_dir)
        context.log.info(f"restore {rid}: temporary resources released by process {pid}")
        return {"detached_pid": pid}
    out = release_temporary(op_services(backend, context), rid)
    context.log.info(f"restore {rid}: released {out['removed']} in {out['seconds']}s")
    context.add_output_metadata({"removed": dg.MetadataValue.json(out["removed"])})
    if out["errors"]:
        raise dg.Failure(
            description=f"restore {rid} succeeded, but removing its temporary resources failed:"
            f" {out['errors']}; run `restore-assets cleanup --restore-id {rid}`",
            metadata={"restore_id": rid},
        )
    return out
