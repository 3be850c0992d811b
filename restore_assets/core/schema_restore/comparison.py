"""The compare phase of a schema restore (live schema against restored schema, JSON and HTML
reports), and the report rendered again later for a succeeded restore."""

from __future__ import annotations

from typing import Any

from restore_assets.core.audit import check_restore_id
from restore_assets.core.errors import InvalidRequest, RestoreError
from restore_assets.core.request import RestorePlan
from restore_assets.core.runner import run_phase
from restore_assets.core.schema_restore.phases import existing_schemas
from restore_assets.core.schema_restore.services import Services


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
    result = run_phase(
        services.audit,
        restore_id,
        REPORT_PHASE,
        lambda: compare_targets(services, restore_id, database, targets),
        metadata=lambda out: {
            "reports": {
                s: {k: v for k, v in r.items() if k != "headline"}
                for s, r in out["reports"].items()
            },
            "headline": out["headline"],
        },
    )
    if not result.ok:  # recorded as failed with its cause; nothing is dropped
        raise RestoreError(f"the report of restore {restore_id} failed: {result.error}")
    out = result.value
    return {"restore_id": restore_id, "database": database, "restored": targets, **out}
