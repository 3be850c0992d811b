"""The recover_rows job: plan the recovery of rows from a restore (metadata), apply only if asked.

Launchpad config is the operator's choice (restore id, tables, deleted/changed rows, columns, the
conflict policy); the plan step records the per-table counts and the SQL as metadata; the apply
step writes only with `apply: true` and otherwise says so. The ops call the core
(`restore_assets.core.recover.run`).
"""

from typing import Any, Literal

import dagster as dg

from restore_assets.core.errors import RestoreError
from restore_assets.core.recover.plan import Options, RecoveryPlan
from restore_assets.core.recover.run import apply, plan
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.strict import StrictConfig, strict_config_mapping
from restore_assets.jobs.tags import KIND_TAG

OnConflict = Literal["skip", "overwrite", "fail"]
SQL_PREVIEW = 20_000  # characters of the plan's SQL shown as metadata (the artifact has all of it)


class PlanConfig(StrictConfig):
    """The plan step's part of the choice: what to recover, from which restore."""

    restore_id: str
    tables: list[str] = []
    deleted: bool = False
    changed: bool = False
    columns: list[str] = []
    on_conflict: OnConflict = "fail"
    triggers: bool = True


class RecoverRowsConfig(PlanConfig):
    """The launchpad's choice: what to recover, from which restore, and whether to apply."""

    apply: bool = False


class ApplyConfig(StrictConfig):
    """Apply the plan (false: the plan is only recorded)."""

    apply: bool = False


@strict_config_mapping(RecoverRowsConfig)
def recover_rows_config(val: dict[str, Any]) -> dict[str, Any]:
    """Map the launchpad's choice to the plan and apply steps."""
    choice = {k: v for k, v in val.items() if k != "apply"}
    return {
        "ops": {
            "plan_recovery": {"config": choice},
            "apply_recovery": {"config": {"apply": bool(val.get("apply", False))}},
        }
    }


@dg.op(out=dg.Out(dict))
def plan_recovery(
    context: dg.OpExecutionContext, config: PlanConfig, backend: RestoreBackend
) -> dict:
    """Compute the recovery plan; record its counts, what foreign keys added, and its SQL."""
    options = Options(
        deleted=config.deleted,
        changed=config.changed,
        columns=list(config.columns) or None,
        on_conflict=config.on_conflict,
        tables=list(config.tables) or None,
        triggers=config.triggers,
    )
    services = backend.services()
    try:
        recovery = plan(services, config.restore_id, options)
    except RestoreError as exc:  # bad input or a refusal: the reason, not a stack trace
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    data = recovery.to_dict()
    services.artifacts.put(recovery.recovery_id, "recovery-plan.sql", recovery.sql)
    summary = data["summary"]
    sql = recovery.sql if len(recovery.sql) <= SQL_PREVIEW else recovery.sql[:SQL_PREVIEW] + "\n…"
    context.add_output_metadata(
        {
            "recovery_id": recovery.recovery_id,
            "totals": dg.MetadataValue.json(summary["totals"]),
            "tables": dg.MetadataValue.json(summary["tables"]),
            "added_by_foreign_keys": dg.MetadataValue.json(
                {
                    f"{s['live_schema']}.{t}": [r for r in s["tables"][t]["reasons"] if r.get("fk")]
                    for s in data["schemas"]
                    for t in s["order"]
                }
            ),
            "refused": summary["refused"] or "",
            "sql": dg.MetadataValue.md(f"```sql\n{sql}\n```"),
        }
    )
    return data


@dg.op(out=dg.Out(dict))
def apply_recovery(
    context: dg.OpExecutionContext, config: ApplyConfig, backend: RestoreBackend, recovery: dict
) -> dict:
    """Apply the plan in one transaction when `apply: true`; otherwise only say it was not applied."""
    if not config.apply:
        context.log.info(
            f"recovery {recovery['recovery_id']} planned, not applied: launch again with apply: true"
        )
        context.add_output_metadata({"applied": False})
        return {"applied": False, "recovery_id": recovery["recovery_id"]}
    try:
        out = apply(backend.services(), RecoveryPlan.from_dict(recovery))
    except RestoreError as exc:  # refused or rolled back: nothing was written
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.add_output_metadata(
        {
            "applied": True,
            "recovery_id": out["recovery_id"],
            "tables": dg.MetadataValue.json(out["tables"]),
            "undo": f"restore-assets recover --undo {out['recovery_id']}",
        }
    )
    return {"applied": True, **out}


@dg.job(config=recover_rows_config, tags={KIND_TAG: "recover_rows"})
def recover_rows() -> None:
    """Recover deleted or changed rows from a schema restore into the live schema."""
    apply_recovery(plan_recovery())
