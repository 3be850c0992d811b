"""The schema restore, phase by phase, over backend protocols (no Dagster here: ops call these)."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from psycopg import sql

from restore_assets.backends.protocols import ArtifactStore, Fleet, Notifier, TempDatabase
from restore_assets.core.audit import (
    AuditConflict,
    AuditLog,
    NotOwner,
    check_restore_id,
    owner_gone,
)
from restore_assets.core.errors import InvalidRequest, RestoreError
from restore_assets.core.request import RestorePlan, RestoreRequest, plan_restore
from restore_assets.core.schema_restore.drop_restored import schema_is_ours

log = logging.getLogger("restore_assets")

SCHEMA_RESOURCE = "restored-schema"
ARTIFACT_RESOURCE = "artifacts"
PHASES = (
    "validate",
    "topology",
    "provision",
    "ddl",
    "pre",
    "copy",
    "post",
    "compare",
    "cleanup",
    "finish",
)


class DdlTask(Protocol):
    """Extracts the DDL of schemas from a server and applies statements to one (subprocess or ECS)."""

    def extract(self, dsn: str, schemas: list[str], suffix: str) -> Any:
        """A DdlBundle (pre, post, full, warnings) of the schemas, renamed to `<schema>_<suffix>`."""
        ...

    def apply(
        self,
        dsn: str,
        statements: list[str],
        allowed_schemas: set[str],
        on_start: Callable[[int], None],
    ) -> None:
        """Guard and apply statements in one transaction; on_start gets the transaction's xid."""
        ...

    def apply_post(
        self, dsn: str, statements: list[str], allowed_schemas: set[str]
    ) -> dict[str, int]:
        """Guard and apply the post statements (per-table builds may run in parallel)."""
        ...


class Mover(Protocol):
    """Copies the rows of one schema from the temporary server into the restored schema."""

    def copy(
        self,
        source_dsn: str,
        target_dsn: str,
        schema: str,
        target_schema: str,
        tables: list[str] | None,
        progress: Callable[[Any], None] | None,
    ) -> Any:
        """Copy every (or the listed) table; return a CopyReport."""
        ...


@dataclass
class Services:
    """The backend implementations one restore runs on, chosen in one place (definitions/CLI)."""

    fleet: Fleet
    audit: AuditLog
    artifacts: ArtifactStore
    ddl: DdlTask
    mover: Mover
    notifier: Notifier | None = None
    provision_timeout: float = 900
    keep_artifacts: bool = True
    render_report: Callable[[str, str, dict[str, Any]], str] | None = (
        None  # -> HTML report path/URI
    )


@dataclass
class PhaseResult:
    """What a phase produced, or the error that stopped it (carried forward to cleanup)."""

    phase: str
    ok: bool
    value: Any = None
    error: str | None = None
    skipped: bool = False
    started_at: str = ""
    seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the value)."""
        d = asdict(self)
        d.pop("value")
        return d


def first_failure(results: list[PhaseResult]) -> PhaseResult | None:
    """The first failed (not merely skipped) phase among results."""
    for r in results:
        if not r.ok and not r.skipped:
            return r
    for r in results:
        if not r.ok:
            return r
    return None


def phase_hook(restore_id: str | None, phase: str, when: str) -> None:
    """Called before (`when="before"`) and after (`"after"`) every phase and step; does nothing.

    The test suite's fault injection replaces this function (tests/faults.py) to fail or pause a
    chosen phase. No configuration, launchpad field or environment variable can set it.
    """


def run_phase(
    services: Services,
    restore_id: str | None,
    phase: str,
    fn: Callable[[], Any],
    upstream: list[PhaseResult] | tuple[PhaseResult, ...] = (),
    metadata: Callable[[Any], dict[str, Any]] | None = None,
) -> PhaseResult:
    """Run one phase unless an upstream one failed; record it in the audit log; never raise."""
    started = datetime.now(UTC).isoformat()
    failed = first_failure(list(upstream))
    if failed is not None:
        return PhaseResult(phase, ok=False, skipped=True, error=failed.error, started_at=started)
    t0 = time.monotonic()
    try:
        phase_hook(restore_id, phase, "before")
        value = fn()
        phase_hook(restore_id, phase, "after")
        meta = metadata(value) if metadata else {}
        result = PhaseResult(phase, True, value, started_at=started, metadata=meta)
    except Exception as exc:  # noqa: BLE001 - the error is carried to cleanup and re-raised by finish
        cause = f"{phase}: {type(exc).__name__}: {exc}"
        log.error("phase %s failed: %s", phase, exc)
        log.debug("%s", traceback.format_exc())
        result = PhaseResult(phase, False, error=cause, started_at=started)
    result.seconds = round(time.monotonic() - t0, 3)
    if restore_id:
        services.audit.phase(
            restore_id,
            phase,
            "succeeded" if result.ok else "failed",
            started_at=started,
            error=result.error,
            metadata={**result.metadata, "seconds": result.seconds},
        )
    return result


# ---------------------------------------------------------------------------- phase 1
def validate(
    services: Services,
    raw: dict[str, Any],
    restore_id: str | None = None,
    owner: dict[str, Any] | None = None,
) -> tuple[str, RestorePlan]:
    """Check the request before anything is created; record it, owned by owner (rejected when refused).

    The record claims `database.target_schema` of every target: a second request for the same
    target is refused while this one runs, and again (schema exists) once it has finished.
    """
    plan = check_request(services, raw, restore_id)
    database = plan.request.database
    claims = [f"{database}.{t}" for t in sorted(plan.targets.values())]
    try:
        rid = services.audit.open(
            "schema_restore", plan.request.to_dict(), restore_id, owner=owner, claims=claims
        )
    except AuditConflict as exc:  # the id is another run's, or a target is being restored
        rid = services.audit.reject("schema_restore", plan.request.to_dict(), str(exc), restore_id)
        raise InvalidRequest(f"{exc} (restore {rid} rejected)") from None
    # a restore of the same target may have finished between the check and the claim
    present = existing_schemas(services.fleet, database, list(plan.targets.values()))
    if present:
        cause = (
            f"target schema(s) already exist: {', '.join(present)} — drop them or choose another"
            " --suffix"
        )
        services.audit.close(rid, "rejected", cause)
        raise InvalidRequest(f"{cause} (restore {rid} rejected)")
    services.audit.update(rid, restore_point=plan.restore_point.isoformat())
    return rid, plan


def existing_schemas(fleet: Fleet, database: str, schemas: list[str]) -> list[str]:
    """Which of these schemas exist in a production database."""
    with psycopg.connect(fleet.production_dsn(database), connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s) ORDER BY 1",
            (schemas,),
        ).fetchall()
    return [r[0] for r in rows]


def check_request(
    services: Services, raw: dict[str, Any], restore_id: str | None = None
) -> RestorePlan:
    """Parse and check a request against the source, creating nothing; a refusal is recorded and raised."""
    if restore_id is not None:
        check_restore_id(restore_id)  # never recorded: such an id names nothing
        try:
            services.audit.get(restore_id)
        except KeyError:
            pass
        else:  # the id is another run's: the refusal goes under a fresh id, its record stays
            cause = f"restore id {restore_id} already exists in the audit log: choose another"
            rid = services.audit.reject("schema_restore", _safe_inputs(raw), cause, restore_id)
            raise InvalidRequest(f"{cause} (refusal recorded as {rid})")
    try:
        return plan_restore(RestoreRequest.parse(raw), services.fleet)
    except RestoreError as exc:
        # bad input, or a source that cannot be checked (archive failing, server down): nothing created
        rid = services.audit.reject("schema_restore", _safe_inputs(raw), str(exc), restore_id)
        raise InvalidRequest(f"{exc} (restore {rid} rejected)") from None


def _safe_inputs(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, str | int | float | bool | list | type(None)) else str(v))
        for k, v in raw.items()
    }


# ---------------------------------------------------------------------------- phases 2-3
def topology(services: Services, restore_id: str) -> dict[str, Any]:
    """Topology, engine version and restore window of the source; start its slow resources early."""
    src = services.fleet.describe()

    def record(kind: str, identifier: str, details: dict[str, Any]) -> None:
        services.audit.resource(restore_id, kind, identifier, details)

    # e.g. the DMS replication instance on AWS: the slowest resource, ready by the time data moves
    services.fleet.prepare(restore_id, record)
    return {
        "identifier": src.identifier,
        "topology": src.topology,
        "engine_version": src.engine_version,
    }


def provision(services: Services, restore_id: str, plan: RestorePlan) -> TempDatabase:
    """Create the temporary server at the restore point (recorded before it is created)."""

    def record(kind: str, identifier: str, details: dict[str, Any]) -> None:
        services.audit.resource(restore_id, kind, identifier, details)

    # only the target database's files (pgBackRest --db-include, or a selective copy of a plain
    # snapshot), unless the request asks for a full copy
    only = (
        {"databases": [plan.request.database]}
        if getattr(services.fleet, "selective_databases", False) and not plan.request.full_provision
        else {}
    )
    return services.fleet.provision(
        restore_id, plan.request.target, record, timeout=services.provision_timeout, **only
    )


def bound(services: Services, component: Any, restore_id: str | None, stage: str) -> Any:
    """The component bound to one restore when it supports `bind_restore`, else itself.

    Remote backends (the ECS task, DMS) name, tag and record what they create after the restore
    id and stage; local components have no `bind_restore` and are returned unchanged.
    """
    bind = getattr(component, "bind_restore", None)
    if bind is None or not restore_id:
        return component

    def record(kind: str, identifier: str, details: dict[str, Any]) -> None:
        services.audit.resource(restore_id, kind, identifier, details)

    return bind(restore_id, record, stage)


# ---------------------------------------------------------------------------- phase 4
def extract_ddl(services: Services, restore_id: str, plan: RestorePlan, temp: TempDatabase) -> Any:
    """Dump, split and rename the schemas' DDL from the temporary server; store pre, post and full."""
    from restore_assets.core.ddl.tables import restrict_to_tables

    dsn = services.fleet.temp_dsn(temp, plan.request.database)
    ddl = bound(services, services.ddl, restore_id, "extract")
    bundle = ddl.extract(dsn, list(plan.request.schemas), plan.suffix)
    if plan.tables is not None:
        bundle = restrict_to_tables(
            bundle, {plan.targets[s]: set(t) for s, t in plan.tables.items()}
        )
    if plan.request.tablespace_map:  # restored objects move to the mapped tablespaces
        from restore_assets.core.ddl.tablespaces import map_tablespaces

        bundle = map_tablespaces(bundle, dict(plan.request.tablespace_map))
    services.audit.resource(restore_id, ARTIFACT_RESOURCE, restore_id, {})
    uris = {
        "pre.sql": services.artifacts.put(restore_id, "pre.sql", bundle.pre_sql),
        "post.sql": services.artifacts.put(restore_id, "post.sql", bundle.post_sql),
        "full.sql": services.artifacts.put(restore_id, "full.sql", bundle.full_sql),
    }
    return {"bundle": bundle, "artifacts": uris}


# ---------------------------------------------------------------------------- phases 5 and 7
def apply_pre(
    services: Services, restore_id: str, plan: RestorePlan, bundle: Any
) -> dict[str, Any]:
    """Create the restored schemas' objects (pre DDL) in production, in one guarded transaction."""
    dsn = services.fleet.production_dsn(plan.request.database)

    def on_start(xid: int) -> None:
        for schema in plan.targets.values():
            services.audit.resource(
                restore_id,
                SCHEMA_RESOURCE,
                f"{plan.request.database}.{schema}",
                {"database": plan.request.database, "schema": schema, "xid": xid},
            )

    pre = deferred_pre(services, bundle)[0]
    bound(services, services.ddl, restore_id, "pre").apply(
        dsn, pre, set(plan.targets.values()), on_start
    )
    with psycopg.connect(dsn) as conn:
        oids = dict(
            conn.execute(
                "SELECT nspname, oid::int FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)",
                (list(plan.targets.values()),),
            ).fetchall()
        )
    for schema in plan.targets.values():
        services.audit.resource(
            restore_id,
            SCHEMA_RESOURCE,
            f"{plan.request.database}.{schema}",
            {"database": plan.request.database, "schema": schema, "oid": oids.get(schema)},
        )
    return {"statements": len(pre), "schemas": sorted(oids)}


def deferred_pre(services: Services, bundle: Any) -> tuple[list[str], list[str]]:
    """Pre as applied, and the primary keys deferred from it (with their settings) to be built
    right after each table's copy: deferred only with a mover that builds tables as it copies."""
    if not getattr(services.mover, "pipelines_post", False):
        return list(bundle.pre), []
    from restore_assets.core.ddl.parallel import defer_primary_keys

    return defer_primary_keys(bundle.pre)


def pipeline_post(services: Services, bundle: Any) -> list[str]:
    """The statements to build after the data: the deferred primary keys, then post."""
    return [*deferred_pre(services, bundle)[1], *bundle.post]


def apply_post(
    services: Services,
    plan: RestorePlan,
    bundle: Any,
    restore_id: str | None = None,
    copies: list[Any] | tuple[Any, ...] = (),
) -> dict[str, Any]:
    """Constraints, indexes, triggers, views, policies, grants and sequence values; then ANALYZE.

    What the copies (CopyReports) already built and analyzed table by table is not run again.
    """
    from restore_assets.core.ddl.parallel import is_setting

    dsn = services.fleet.production_dsn(plan.request.database)
    task = bound(services, services.ddl, restore_id, "post")
    allowed = set(plan.targets.values())
    built = {s for r in copies for s in getattr(r, "post_applied", [])}
    # settings stay: the remaining statements need the ones in force for them in dump order
    statements = [s for s in pipeline_post(services, bundle) if s not in built or is_setting(s)]
    waves = task.apply_post(dsn, statements, allowed)
    vacuumed = {
        (t.target_schema, t.table)
        for r in copies
        for t in getattr(r, "tables", [])
        if t.table in set(getattr(r, "analyzed", []))
    }
    analyzed = analyze_schemas(
        dsn,
        list(plan.targets.values()),
        workers=getattr(services.mover, "workers", 4),
        skip=vacuumed,
    )
    return {
        "statements": len(bundle.post),
        "built_while_copying": len(bundle.post) - len(statements),
        "waves": waves,
        "analyzed": analyzed + len(vacuumed),
        "warnings": list(bundle.warnings),
    }


def analyze_schemas(
    dsn: str, schemas: list[str], workers: int = 4, skip: set[tuple[str, str]] | None = None
) -> int:
    """ANALYZE every table and materialized view of the schemas (but `skip`), on up to `workers`
    connections; the number analyzed."""
    from concurrent.futures import ThreadPoolExecutor

    with psycopg.connect(dsn, autocommit=True) as conn:
        rels = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'm')"
            " ORDER BY pg_catalog.pg_relation_size(c.oid) DESC",
            (schemas,),
        ).fetchall()
    rels = [r for r in rels if (r[0], r[1]) not in (skip or set())]
    if not rels:
        return 0

    def analyze(batch: list[tuple[str, str]]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema, rel in batch:
                conn.execute(
                    sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(rel))
                )

    n = max(1, min(workers, len(rels)))
    batches = [rels[i::n] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="analyze") as pool:
        for f in [pool.submit(analyze, b) for b in batches if b]:
            f.result()
    return len(rels)


# ---------------------------------------------------------------------------- phase 6
def copy_schema(
    services: Services,
    plan: RestorePlan,
    temp: TempDatabase,
    schema: str,
    progress: Callable[[Any], None] | None = None,
    post: list[str] | None = None,
) -> Any:
    """Copy one schema's rows from the temporary server into its restored copy.

    Given the restore's post statements and a mover that pipelines them (the local COPY mover),
    each table's indexes and keys are built as soon as its copy ends; all of post is guarded first.
    """
    source = services.fleet.temp_dsn(temp, plan.request.database)
    target = services.fleet.production_dsn(plan.request.database)
    tables = plan.tables.get(schema) if plan.tables is not None else None
    mover = bound(services, services.mover, temp.restore_id, "copy")
    if post is not None and getattr(mover, "pipelines_post", False):
        from restore_assets.core.ddl.parallel import per_table_builds
        from restore_assets.core.mover.mover import TablePost

        groups, prefix = per_table_builds(post, set(plan.targets.values()), plan.targets[schema])
        lock_timeout = str(getattr(services.ddl, "lock_timeout", "5s"))
        table_post = TablePost(groups, prefix, lock_timeout=lock_timeout)
        return mover.copy(
            source, target, schema, plan.targets[schema], tables, progress, post=table_post
        )
    return mover.copy(source, target, schema, plan.targets[schema], tables, progress)


# ---------------------------------------------------------------------------- phase 8
def cleanup(services: Services, restore_id: str, failed: bool) -> dict[str, Any]:
    """Remove what the run created: always the temporary server; the restored schemas only on failure."""
    removed: list[str] = []
    kept: list[str] = []
    errors: list[str] = []
    for res in services.audit.resources(restore_id):
        kind, ident, details = res["kind"], res["identifier"], res["details"]
        try:
            if kind == SCHEMA_RESOURCE:
                if not failed:
                    kept.append(ident)
                    continue
                if drop_restored_schema(services.fleet, details):
                    removed.append(ident)
                services.audit.resource_deleted(restore_id, kind, ident)
            elif kind == ARTIFACT_RESOURCE:
                if services.keep_artifacts:
                    kept.append(f"artifacts:{ident}")
                    continue
                services.artifacts.purge(restore_id)
                services.audit.resource_deleted(restore_id, kind, ident)
                removed.append(f"artifacts:{ident}")
            else:
                services.fleet.delete_resource(kind, ident, details)
                services.audit.resource_deleted(restore_id, kind, ident)
                removed.append(f"{kind}:{ident}")
        except Exception as exc:  # noqa: BLE001 - one failing delete must not stop the others
            errors.append(f"{kind}:{ident}: {exc}")
            log.error("cleanup of %s %s failed: %s", kind, ident, exc)
    return {"removed": removed, "kept": kept, "errors": errors}


def drop_restored_schema(fleet: Fleet, details: dict[str, Any]) -> bool:
    """Drop a restored schema only if it is the one this run created (same oid or creating xid)."""
    database, schema = details["database"], details["schema"]
    try:
        conn = psycopg.connect(fleet.production_dsn(database), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc):
            return False
        raise
    with conn:
        row = conn.execute(
            "SELECT oid::int, xmin::text::bigint FROM pg_catalog.pg_namespace WHERE nspname = %s",
            (schema,),
        ).fetchone()
        if row is None:
            return False
        if not schema_is_ours(details, *row):
            log.warning(
                "schema %s.%s was not created by this restore: left in place", database, schema
            )
            return False
        conn.execute("SET lock_timeout = '30s'")
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        return True


# ---------------------------------------------------------------------------- phase 8b
# phases whose failure is only a warning: the restored data is complete by then and stays
WARNING_PHASES = ("compare",)


def restore_failure(results: list[PhaseResult]) -> PhaseResult | None:
    """The first failure that fails the restore (a failed comparison or report does not)."""
    return first_failure([r for r in results if r.phase not in WARNING_PHASES])


def report_warnings(restore_id: str, results: list[PhaseResult]) -> list[str]:
    """Warnings for failed report phases, each with its cause and how to render the report again."""
    return [
        f"warning: the restored schemas are complete but the report failed ({r.error});"
        f" render it again with `restore-assets report --restore-id {restore_id}`"
        for r in results
        if r.phase in WARNING_PHASES and not r.ok and not r.skipped
    ]


def compare(services: Services, restore_id: str, plan: RestorePlan) -> dict[str, Any]:
    """Compare each restored schema with its live schema; store the JSON (and HTML) reports."""
    return compare_targets(services, restore_id, plan.request.database, plan.targets)


TABLE_COUNTS = ("rows_restored", "rows_live", "only_in_restored", "only_in_live", "changed")


def compare_targets(
    services: Services, restore_id: str, database: str, targets: dict[str, str]
) -> dict[str, Any]:
    """Compare live schema -> restored schema pairs; store the JSON (and HTML) report of each."""
    from restore_assets.core.compare import compare_schemas

    dsn = services.fleet.production_dsn(database)
    reports: dict[str, dict[str, Any]] = {}
    headline: dict[str, int] = {}
    for schema, target in targets.items():
        result = compare_schemas(dsn, schema, target)
        data = result.to_dict()
        head = {k: v for k, v in result.summary.items() if k != "seconds"}
        for k, v in head.items():
            headline[k] = headline.get(k, 0) + v
        report = {
            "json": services.artifacts.put(restore_id, f"compare-{schema}.json", result.to_json()),
            "headline": head,
            "tables": {  # counts only (no sample rows): what the Dagster asset shows per table
                name: {k: t[k] for k in TABLE_COUNTS} for name, t in data["tables"].items()
            },
        }
        if services.render_report is not None:
            report["html"] = services.render_report(restore_id, schema, data)
        reports[schema] = report
    return {"reports": reports, "headline": headline}


REPORT_PHASE = "report"


def report_again(services: Services, restore_id: str) -> dict[str, Any]:
    """Compare and render the report of a succeeded schema restore again; record it in the audit log.

    Refused (InvalidRequest) for another kind of run, a restore that did not succeed, or restored
    schemas that no longer exist. A failing render is recorded and raised; nothing is dropped.
    """
    from restore_assets.core.audit import check_restore_id

    check_restore_id(restore_id)
    rec = services.audit.get(restore_id)
    if rec["kind"] != "schema_restore":
        raise InvalidRequest(
            f"restore {restore_id} is a {rec['kind']} run: only schema restores have a report"
        )
    if rec["status"] != "succeeded":
        raise InvalidRequest(
            f"restore {restore_id} is {rec['status']}: only a succeeded restore has restored"
            " schemas to report on"
        )
    database = rec["inputs"]["database"]
    targets = dict((rec.get("result") or {}).get("restored") or {})
    gone = sorted(
        set(targets.values())
        - set(existing_schemas(services.fleet, database, list(targets.values())))
    )
    if gone:
        raise InvalidRequest(
            f"restored schema(s) {', '.join(gone)} of restore {restore_id} no longer exist in"
            f" {database}: nothing to report on"
        )
    started = datetime.now(UTC).isoformat()
    t0 = time.monotonic()
    try:
        out = compare_targets(services, restore_id, database, targets)
    except Exception as exc:
        cause = f"{REPORT_PHASE}: {type(exc).__name__}: {exc}"
        services.audit.phase(
            restore_id, REPORT_PHASE, "failed", started_at=started, error=cause, metadata={}
        )
        raise RestoreError(f"the report of restore {restore_id} failed: {exc}") from None
    services.audit.phase(
        restore_id,
        REPORT_PHASE,
        "succeeded",
        started_at=started,
        metadata={
            "reports": {
                s: {k: v for k, v in r.items() if k != "headline"}
                for s, r in out["reports"].items()
            },
            "headline": out["headline"],
            "seconds": round(time.monotonic() - t0, 3),
        },
    )
    return {"restore_id": restore_id, "database": database, "restored": targets, **out}


# ---------------------------------------------------------------------------- phase 9
def finish(
    services: Services, restore_id: str, results: list[PhaseResult], extra: dict[str, Any]
) -> dict[str, Any]:
    """Write the final status, cause, per-phase timings and result; return the run's summary.

    A failed comparison or report is a warning, not a failure: the restore stays `succeeded`, the
    restored schemas stay, and the cause is recorded (`restore-assets report` renders it again).
    """
    failed = restore_failure(results)
    status = "failed" if failed else "succeeded"
    warnings = report_warnings(restore_id, results)
    cause = failed.error if failed else ("; ".join(warnings) or None)
    summary = {
        "restore_id": restore_id,
        "status": status,
        "cause": cause,
        "warnings": warnings,
        "phases": {
            r.phase: {"ok": r.ok, "skipped": r.skipped, "seconds": r.seconds, "error": r.error}
            for r in results
        },
        **extra,
    }
    services.audit.update(restore_id, result=summary)
    services.audit.close(restore_id, status, cause)
    if services.notifier is not None:
        services.notifier.send(
            {
                "kind": "schema_restore",
                "status": status,
                "restore_id": restore_id,
                "cause": summary["cause"],
            }
        )
    return summary


def cleanup_restore(
    services: Services, restore_id: str, run_status: str | None = None
) -> dict[str, Any]:
    """The cleanup job's core: remove what a crashed, failed or terminated run left; mark it failed.

    A running record is cleaned only when its owner has ended or is provably dead (run_status: the
    Dagster status of the owner's run, when the caller can see it); otherwise NotOwner names the
    owner. The restored schemas of a succeeded (or rejected) restore are never dropped.
    """
    check_restore_id(restore_id)
    rec = services.audit.get(restore_id)
    if rec["status"] == "running":
        gone, why = owner_gone(rec.get("owner"), run_status)
        if not gone:
            raise NotOwner(
                f"restore {restore_id} is running and belongs to {why}: cleanup refused."
                " Clean up after that run has ended."
            )
    out = cleanup(services, restore_id, failed=rec["status"] in ("running", "failed"))
    if rec["status"] == "running":
        try:
            services.audit.close(
                restore_id,
                "failed",
                "run ended without finishing (crashed or terminated); cleaned up",
            )
        except AuditConflict:  # its owner closed it meanwhile: that status stands
            pass
    return out
