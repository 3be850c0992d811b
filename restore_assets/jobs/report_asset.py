"""The `comparison_report` asset: one partition per restored tenant schema (`<database>/<schema>`).

Each successful comparison records a materialization with the headline numbers, the restored
schema, the restore point, the RTO so far, a Markdown table of the tables, the commands that bring
rows back, and a link to the HTML report served by `restore-assets serve-reports`.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from restore_assets.core.report_server import report_url

TENANT_SCHEMAS = dg.DynamicPartitionsDefinition(name="tenant_schemas")
REPORT_ASSET = "comparison_report"

comparison_report = dg.AssetSpec(
    REPORT_ASSET,
    partitions_def=TENANT_SCHEMAS,
    group_name="restores",
    description=(
        "What differs between a restored tenant schema and its live schema, one partition per"
        " `<database>/<schema>`: rows only in the restored copy (deleted since the restore point),"
        " only in live, changed; the HTML report's link; the command that recovers the rows."
    ),
)


def partition_key(database: str, schema: str) -> str:
    """The partition of one tenant schema."""
    return f"{database}/{schema}"


def tables_markdown(tables: dict[str, dict[str, int]]) -> str:
    """A Markdown table of the per-table counts of one comparison."""
    lines = [
        "| table | rows restored | rows live | only in restored | only in live | changed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in sorted(tables.items()):
        lines.append(
            f"| `{name}` | {t['rows_restored']} | {t['rows_live']} | {t['only_in_restored']}"
            f" | {t['only_in_live']} | {t['changed']} |"
        )
    return "\n".join(lines)


def recover_commands(
    root: str | None, restore_id: str, database: str, schema: str, target: str
) -> list[str]:
    """The command lines that bring rows back from the restored schema (plan first, then --apply)."""
    where = ["--root", root] if root else []
    recover = ["restore-assets", "recover", *where, "--restore-id", restore_id]
    recover += ["--schema", schema, "--deleted", "--changed"]
    copy_back = ["restore-assets", "copy-back", *where, "--database", database, "--schema"]
    copy_back += [schema, "--restored", target, "--table", "TABLE", "--all-only-in-restored"]
    return [shlex.join(recover), shlex.join(copy_back)]


def report_metadata(
    *,
    restore_id: str,
    database: str,
    schema: str,
    target: str,
    restore_point: str,
    started_at: str | None,
    report: dict[str, Any],
    root: str | None,
) -> dict[str, Any]:
    """The metadata of one comparison_report materialization."""
    commands = recover_commands(root, restore_id, database, schema, target)
    meta: dict[str, Any] = {
        "restored_schema": target,
        "live_schema": schema,
        "database": database,
        "restore_point": restore_point,
        "restore_id": restore_id,
        **{k: int(v) for k, v in report["headline"].items()},
        "tables": dg.MetadataValue.md(tables_markdown(report.get("tables") or {})),
        "recover": dg.MetadataValue.md(
            "Plan, then run again with `--apply`:\n\n"
            + "\n\n".join(f"```\n{c}\n```" for c in commands)
        ),
        "json": dg.MetadataValue.path(report["json"]),
    }
    if started_at:
        started = datetime.fromisoformat(started_at)
        meta["rto_seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    if report.get("html"):
        meta["report"] = dg.MetadataValue.url(report_url(restore_id, report["html"]))
        meta["html"] = dg.MetadataValue.path(report["html"])
    return meta


def log_reports(
    context: dg.OpExecutionContext,
    restore_id: str,
    database: str,
    targets: dict[str, str],
    restore_point: str,
    compared: dict[str, Any],
    started_at: str | None = None,
    root: str | None = None,
) -> None:
    """Record one comparison_report materialization per compared schema."""
    keys = [partition_key(database, schema) for schema in compared["reports"]]
    context.instance.add_dynamic_partitions(TENANT_SCHEMAS.name, keys)
    for schema, report in compared["reports"].items():
        target = targets[schema]
        context.log_event(
            dg.AssetMaterialization(
                asset_key=REPORT_ASSET,
                partition=partition_key(database, schema),
                description=f"{database}: {schema} restored as {target} at {restore_point}",
                metadata=report_metadata(
                    restore_id=restore_id,
                    database=database,
                    schema=schema,
                    target=target,
                    restore_point=restore_point,
                    started_at=started_at,
                    report=report,
                    root=root,
                ),
            )
        )
