"""The `restore_drill` job and its schedule (off by default): a restore to the latest point under a
drill name, checked against live, measured (RTO, RPO, phases) as `restore_drill` materializations."""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from restore_assets.core.schema_restore.drill import DrillResult, run_drill
from restore_assets.jobs.report_asset import TENANT_SCHEMAS, partition_key
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.schedules import env_target, stopped_schedule
from restore_assets.jobs.tags import CONCURRENCY_TAG, KIND_TAG, TARGET_TAG

DRILL_ASSET = "restore_drill"
DRILL_DATABASE_ENV = "RESTORE_ASSETS_DRILL_DATABASE"
DRILL_SCHEMAS_ENV = "RESTORE_ASSETS_DRILL_SCHEMAS"
DRILL_CRON_ENV = "RESTORE_ASSETS_DRILL_CRON"
DRILL_MAX_RTO_ENV = "RESTORE_ASSETS_DRILL_MAX_RTO_SECONDS"
DRILL_MAX_RPO_ENV = "RESTORE_ASSETS_DRILL_MAX_RPO_SECONDS"
DEFAULT_DRILL_CRON = "0 4 * * 1"  # Mondays 04:00

restore_drill_asset = dg.AssetSpec(
    DRILL_ASSET,
    partitions_def=TENANT_SCHEMAS,
    group_name="restores",
    description=(
        "Restore drills of a tenant schema (`<database>/<schema>`): RTO (wall time of the restore),"
        " RPO (how old the latest restorable point was), seconds per phase, and whether the copy"
        " matched live at the restore point. Plot `rto_seconds` / `rpo_seconds` for the trend."
    ),
)


class DrillConfig(dg.Config):
    """Which schemas to drill and the thresholds that raise an alert."""

    database: str = Field(description="The database holding the schemas, e.g. tenant_a.")
    schemas: list[str] = Field(
        description="The schemas to restore in the drill, e.g. [customer_a1]."
    )
    name: str = Field(
        default="drill",
        description="The drill name: the copies are <schema>_<name>_<YYYYMMDDHHMMSS>, then dropped.",
    )
    max_rto_seconds: float = Field(
        default=0, description="Alert when the restore takes longer (seconds; 0: no threshold)."
    )
    max_rpo_seconds: float = Field(
        default=0,
        description="Alert when the latest restorable point is older (seconds; 0: no threshold).",
    )


def backend_config_of(backend: RestoreBackend) -> dict[str, Any]:
    """The runner's backend configuration of the resource."""
    settings = backend.settings()
    return {
        "backend": settings.get("backend", "local"),
        "root": settings.get("root"),
        "config_file": backend.config_file,
        "copy_workers": backend.copy_workers,
    }


def drill_metadata(result: DrillResult, schema: str) -> dict[str, Any]:
    """The restore_drill materialization metadata of one schema."""
    meta: dict[str, Any] = {
        "ok": result.ok,
        "status": result.status,
        "drill": result.drill,
        "restore_id": result.restore_id or "",
        "restore_point": result.restore_point or "",
        "problems": dg.MetadataValue.json(result.problems.get(schema) or []),
        "breaches": dg.MetadataValue.json(result.breaches),
    }
    if result.rto_seconds is not None:
        meta["rto_seconds"] = result.rto_seconds
    if result.rpo_seconds is not None:
        meta["rpo_seconds"] = result.rpo_seconds
    for phase, seconds in result.phases.items():
        meta[f"seconds_{phase.replace(':', '_')}"] = seconds
    if result.cause:
        meta["cause"] = result.cause
    return meta


@dg.op(out=dg.Out(dict))
def run_restore_drill(
    context: dg.OpExecutionContext, config: DrillConfig, backend: RestoreBackend
) -> dict:
    """Restore the schemas to the latest point, check them, record RTO/RPO, drop the drill copies."""
    from restore_assets.jobs.launch import run_schema_restore

    def restore(request: dict[str, Any], restore_id: str) -> dict[str, Any]:
        out = run_schema_restore(
            request, backend_config_of(backend), compare=False, restore_id=restore_id
        )
        context.log.info(f"drill restore {restore_id}: {out['status']}")
        return out

    result = run_drill(
        backend.services(),
        restore,
        config.database,
        config.schemas,
        name=config.name,
        max_rto_seconds=config.max_rto_seconds or None,
        max_rpo_seconds=config.max_rpo_seconds or None,
    )
    keys = [partition_key(config.database, s) for s in config.schemas]
    context.instance.add_dynamic_partitions(TENANT_SCHEMAS.name, keys)
    for schema, key in zip(config.schemas, keys, strict=True):
        context.log_event(
            dg.AssetMaterialization(
                asset_key=DRILL_ASSET,
                partition=key,
                description=f"drill {result.drill}: {'ok' if result.ok else 'FAILED'}",
                metadata=drill_metadata(result, schema),
            )
        )
    context.log.info(f"drill dropped its copies: {result.dropped}")
    if not result.ok:
        problems = [f"{s}: {', '.join(p)}" for s, p in result.problems.items() if p]
        raise dg.Failure(
            description="restore drill failed: "
            + "; ".join([result.cause or ""] + result.breaches + problems).strip("; "),
            metadata={"restore_id": result.restore_id or ""},
            allow_retries=False,
        )
    return result.to_dict()


@dg.job(tags={KIND_TAG: "restore_drill", CONCURRENCY_TAG: "restore"})
def restore_drill() -> None:
    """Restore chosen schemas to the latest point under a drill name, check, measure, drop."""
    run_restore_drill()


def drill_run_config(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The restore_drill config from the environment; None when no schema is configured."""
    env = os.environ if env is None else env
    config = env_target(env, DRILL_DATABASE_ENV, DRILL_SCHEMAS_ENV)
    if config is None:
        return None
    for key, var in (
        ("max_rto_seconds", DRILL_MAX_RTO_ENV),
        ("max_rpo_seconds", DRILL_MAX_RPO_ENV),
    ):
        if env.get(var):
            config[key] = float(env[var])
    return {"ops": {"run_restore_drill": {"config": config}}}


def make_drill_schedule(
    cron: str | None = None, env: Mapping[str, str] | None = None
) -> dg.ScheduleDefinition:
    """The restore drill schedule (STOPPED by default) on a cron from the argument or environment."""

    def target(cfg: dict[str, Any]) -> dict[str, str]:
        drill = cfg["ops"]["run_restore_drill"]["config"]
        return {TARGET_TAG: f"{drill['database']}.{','.join(drill['schemas'])}"[:250]}

    return stopped_schedule(
        "restore_drill_schedule",
        "drill",
        restore_drill,
        cron,
        env,
        DRILL_CRON_ENV,
        DEFAULT_DRILL_CRON,
        drill_run_config,
        f"set {DRILL_DATABASE_ENV} and {DRILL_SCHEMAS_ENV} to run drills",
        target,
    )


restore_drill_schedule = make_drill_schedule()
