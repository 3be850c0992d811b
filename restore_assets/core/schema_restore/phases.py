"""The schema restore, phase by phase, over backend protocols (no Dagster here: ops call these).

Each phase runs through the one runner (core/runner.py); what the phases run on is in services.py,
the compare phase and the report in comparison.py, the removal of what a run created in cleanup.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.backends.protocols import Fleet, TempDatabase
from restore_assets.core.audit import AuditConflict, check_restore_id
from restore_assets.core.errors import InvalidRequest, RestoreError
from restore_assets.core.request import RestorePlan, RestoreRequest, plan_restore
from restore_assets.core.runner import PhaseResult, close_run, first_failure, timings
from restore_assets.core.schema_restore.services import (
    ARTIFACT_RESOURCE,
    SCHEMA_RESOURCE,
    DdlBatch,
    SchemaCopy,
    Services,
    bound,
    recorder,
)

log = logging.getLogger("restore_assets")


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
    # e.g. the DMS replication instance on AWS: the slowest resource, ready by the time data moves
    services.fleet.prepare(restore_id, recorder(services, restore_id))
    return {
        "identifier": src.identifier,
        "topology": src.topology,
        "engine_version": src.engine_version,
    }


def provision(services: Services, restore_id: str, plan: RestorePlan) -> TempDatabase:
    """Create the temporary server at the restore point (recorded before it is created)."""

    # only the target database's files (pgBackRest --db-include, or a selective copy of a plain
    # snapshot), unless the request asks for a full copy
    only: dict[str, list[str]] = (
        {"databases": [plan.request.database]}
        if getattr(services.fleet, "selective_databases", False) and not plan.request.full_provision
        else {}
    )
    if only and getattr(services.fleet, "selective_schemas", False):
        only["schemas"] = sorted(plan.targets)  # other schemas' relations left out too
    return services.fleet.provision(
        restore_id,
        plan.request.target,
        recorder(services, restore_id),
        timeout=services.provision_timeout,
        **only,
    )


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
        DdlBatch(dsn, pre, set(plan.targets.values())), on_start
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
    waves = task.apply_post(DdlBatch(dsn, statements, allowed))
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
    job = SchemaCopy(source, target, schema, plan.targets[schema], tables)
    mover = bound(services, services.mover, temp.restore_id, "copy")
    if post is not None and getattr(mover, "pipelines_post", False):
        from restore_assets.core.ddl.parallel import per_table_builds
        from restore_assets.core.mover.mover import TablePost

        groups, prefix = per_table_builds(post, set(plan.targets.values()), plan.targets[schema])
        lock_timeout = str(getattr(services.ddl, "lock_timeout", "5s"))
        table_post = TablePost(groups, prefix, lock_timeout=lock_timeout)
        return mover.copy(job, progress, post=table_post)
    return mover.copy(job, progress)


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
        "phases": timings(results),
        **extra,
    }
    event = {"kind": "schema_restore", "status": status, "restore_id": restore_id, "cause": cause}
    close_run(services.audit, restore_id, summary, services.notifier, event)
    return summary
