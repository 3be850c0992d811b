"""Schedules, both STOPPED by default: snapshots, and a weekly refresh of a staging copy.

- `snapshot_schedule` runs the snapshot job on `RESTORE_ASSETS_SNAPSHOT_CRON` (default daily 03:00
  UTC) for `RESTORE_ASSETS_SNAPSHOT_IDENTIFIER` (AWS; default aws.source_identifier), exporting to S3
  when `RESTORE_ASSETS_SNAPSHOT_EXPORT=true`.
- `staging_refresh_schedule` runs the staging_refresh job on `RESTORE_ASSETS_STAGING_CRON` (default
  Sundays 04:00 UTC): the schemas `RESTORE_ASSETS_STAGING_SCHEMAS` (comma-separated) of database
  `RESTORE_ASSETS_STAGING_DATABASE` restored to the latest restorable point as `<schema>_staging`,
  after dropping the previous staging copy (only one a previous restore created: checked against the
  audit log and the schema's oid).
"""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
import psycopg

from restore_assets import phases
from restore_assets.jobs.instance_restore import KIND_TAG
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.snapshot import snapshot

SNAPSHOT_CRON_ENV = "RESTORE_ASSETS_SNAPSHOT_CRON"
SNAPSHOT_IDENTIFIER_ENV = "RESTORE_ASSETS_SNAPSHOT_IDENTIFIER"
SNAPSHOT_EXPORT_ENV = "RESTORE_ASSETS_SNAPSHOT_EXPORT"
STAGING_CRON_ENV = "RESTORE_ASSETS_STAGING_CRON"
STAGING_DATABASE_ENV = "RESTORE_ASSETS_STAGING_DATABASE"
STAGING_SCHEMAS_ENV = "RESTORE_ASSETS_STAGING_SCHEMAS"
TIMEZONE_ENV = "RESTORE_ASSETS_SCHEDULE_TIMEZONE"
DEFAULT_SNAPSHOT_CRON = "0 3 * * *"
DEFAULT_STAGING_CRON = "0 4 * * 0"
STAGING_SUFFIX = "staging"


def checked_cron(value: str, variable: str) -> str:
    """A cron expression Dagster accepts; a clear error naming the variable otherwise."""
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(value):
        raise ValueError(f"{variable}={value!r} is not a valid cron expression (e.g. '0 3 * * *')")
    return value


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------- snapshots
def snapshot_run_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The snapshot job's config from the environment (identifier, export)."""
    env = os.environ if env is None else env
    cfg: dict[str, Any] = {"export_s3": _truthy(env.get(SNAPSHOT_EXPORT_ENV))}
    if env.get(SNAPSHOT_IDENTIFIER_ENV):
        cfg["identifier"] = env[SNAPSHOT_IDENTIFIER_ENV]
    return cfg


def make_snapshot_schedule(
    cron: str | None = None, env: Mapping[str, str] | None = None
) -> dg.ScheduleDefinition:
    """The snapshot schedule (STOPPED by default) on a cron from the argument or the environment."""
    env = os.environ if env is None else env
    cron = checked_cron(
        cron or env.get(SNAPSHOT_CRON_ENV) or DEFAULT_SNAPSHOT_CRON, SNAPSHOT_CRON_ENV
    )

    @dg.schedule(
        name="snapshot_schedule",
        cron_schedule=cron,
        job=snapshot,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        execution_timezone=env.get(TIMEZONE_ENV) or "UTC",
    )
    def snapshot_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        """Take a snapshot on a schedule (identifier and export from the environment)."""
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        return dg.RunRequest(
            run_key=f"snapshot-{stamp}",
            run_config=snapshot_run_config(env),
            tags={"restore-assets/scheduled": "true"},
        )

    return snapshot_schedule


# ---------------------------------------------------------------------------- staging refresh
class StagingConfig(dg.Config):
    """What the staging copy holds: schemas of one database, restored as <schema>_<suffix>."""

    database: str
    schemas: list[str]
    suffix: str = STAGING_SUFFIX
    compare: bool = False


def previous_staging(services: phases.Services, database: str, target: str) -> dict | None:
    """The audit resource of the restore that created `database.target`, if a restore did."""
    ident = f"{database}.{target}"
    for run in services.audit.history(limit=500):
        if run["kind"] != "schema_restore" or run["status"] != "succeeded":
            continue
        for res in services.audit.resources(run["restore_id"]):
            if res["kind"] == phases.SCHEMA_RESOURCE and res["identifier"] == ident:
                return {**res, "restore_id": run["restore_id"]}
    return None


def drop_previous(
    services: phases.Services, database: str, schemas: list[str], suffix: str
) -> list[str]:
    """Drop the `<schema>_<suffix>` copies a previous restore made; refuse any other schema."""
    targets = [f"{s}_{suffix}" for s in schemas]  # the schema restore's naming rule
    with psycopg.connect(services.fleet.production_dsn(database), connect_timeout=10) as conn:
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)", (targets,)
            )
        }
    dropped = []
    for target in targets:
        if target not in existing:
            continue
        prev = previous_staging(services, database, target)
        if prev is None or not phases.drop_restored_schema(services.fleet, prev["details"]):
            raise dg.Failure(
                description=f"schema {database}.{target} exists but no restore recorded creating it:"
                " drop it yourself or choose another staging suffix",
                allow_retries=False,
            )
        services.audit.resource_deleted(prev["restore_id"], prev["kind"], prev["identifier"])
        dropped.append(target)
    return dropped


def latest_point(services: phases.Services) -> str:
    """The latest restorable point of the fleet, ISO 8601 (the local fleet archives its WAL first)."""
    switch = getattr(services.fleet, "switch_wal", None)
    if callable(switch):
        switch()
    latest = services.fleet.describe().window.latest
    if latest is None:
        raise dg.Failure(description="no restorable point yet: take a snapshot first")
    return latest.isoformat()


@dg.op(out=dg.Out(dict))
def drop_previous_staging(
    context: dg.OpExecutionContext, config: StagingConfig, backend: RestoreBackend
) -> dict:
    """Drop the previous staging copies (only those a restore created) and fix the restore point."""
    services = backend.services()
    dropped = drop_previous(services, config.database, config.schemas, config.suffix)
    point = latest_point(services)
    context.log.info(f"dropped {dropped or 'nothing'}; restoring to {point}")
    context.add_output_metadata({"dropped": dg.MetadataValue.json(dropped), "restore_time": point})
    return {**config.model_dump(), "dropped": dropped, "restore_time": point}


@dg.op(out=dg.Out(dict))
def restore_staging(
    context: dg.OpExecutionContext, prepared: dict, backend: RestoreBackend
) -> dict:
    """Run the schema restore of the staging schemas as <schema>_<suffix> (in this run's process)."""
    from restore_assets.runner import run_schema_restore

    settings = backend.settings()
    request = {
        "database": prepared["database"],
        "schemas": prepared["schemas"],
        "restore_time": prepared["restore_time"],
        "suffix": prepared["suffix"],
    }
    backend_config = {
        "backend": settings.get("backend", "local"),
        "root": settings.get("root"),
        "config_file": backend.config_file,
        "copy_workers": backend.copy_workers,
    }
    out = run_schema_restore(request, backend_config, compare=prepared["compare"])
    context.add_output_metadata(
        {
            "restore_id": out["restore_id"],
            "status": out["status"],
            "restored": dg.MetadataValue.json(out.get("restored") or {}),
        }
    )
    if out["status"] != "succeeded":
        raise dg.Failure(
            description=f"staging restore {out['restore_id']} {out['status']}: {out.get('cause')}",
            allow_retries=False,
        )
    context.log.info(f"staging copy refreshed: {out['restored']}")
    return out


@dg.job(tags={KIND_TAG: "staging_refresh"})
def staging_refresh() -> None:
    """Refresh the staging copy: drop the previous `<schema>_staging`, restore to the latest point."""
    restore_staging(drop_previous_staging())


def staging_run_config(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The staging_refresh config from the environment; None when no schema is configured."""
    env = os.environ if env is None else env
    schemas = [s.strip() for s in (env.get(STAGING_SCHEMAS_ENV) or "").split(",") if s.strip()]
    database = (env.get(STAGING_DATABASE_ENV) or "").strip()
    if not schemas or not database:
        return None
    return {
        "ops": {"drop_previous_staging": {"config": {"database": database, "schemas": schemas}}}
    }


def make_staging_schedule(
    cron: str | None = None, env: Mapping[str, str] | None = None
) -> dg.ScheduleDefinition:
    """The weekly staging refresh schedule (STOPPED by default)."""
    env = os.environ if env is None else env
    cron = checked_cron(cron or env.get(STAGING_CRON_ENV) or DEFAULT_STAGING_CRON, STAGING_CRON_ENV)

    @dg.schedule(
        name="staging_refresh_schedule",
        cron_schedule=cron,
        job=staging_refresh,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        execution_timezone=env.get(TIMEZONE_ENV) or "UTC",
    )
    def staging_refresh_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason:
        """Refresh the staging copy of the configured schemas."""
        cfg = staging_run_config(env)
        if cfg is None:
            return dg.SkipReason(
                f"set {STAGING_DATABASE_ENV} and {STAGING_SCHEMAS_ENV} to refresh a staging copy"
            )
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        return dg.RunRequest(
            run_key=f"staging-{stamp}", run_config=cfg, tags={"restore-assets/scheduled": "true"}
        )

    return staging_refresh_schedule


snapshot_schedule = make_snapshot_schedule()
staging_refresh_schedule = make_staging_schedule()
SCHEDULES = [snapshot_schedule, staging_refresh_schedule]
