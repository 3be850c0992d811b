"""Schedules, both STOPPED by default: snapshots, and a weekly refresh of a staging copy.

- `snapshot_schedule` runs the snapshot job on `RESTORE_ASSETS_SNAPSHOT_CRON` (default daily 03:00
  UTC) for `RESTORE_ASSETS_SNAPSHOT_IDENTIFIER` (AWS; default aws.source_identifier), exporting to S3
  when `RESTORE_ASSETS_SNAPSHOT_EXPORT=true`.
- `staging_refresh_schedule` runs the staging_refresh job on `RESTORE_ASSETS_STAGING_CRON` (default
  Sundays 04:00 UTC): the schemas `RESTORE_ASSETS_STAGING_SCHEMAS` (comma-separated) of database
  `RESTORE_ASSETS_STAGING_DATABASE` restored to the latest restorable point under a new name, swapped
  in as `<schema>_staging` in one transaction; the previous copy is dropped only when nothing outside
  it depends on it (restore_assets.core.schema_restore.staging: the logic, without Dagster).
"""

import os
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from restore_assets.core.errors import RestoreError
from restore_assets.core.schema_restore import staging
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.snapshot import snapshot
from restore_assets.jobs.tags import KIND_TAG

SNAPSHOT_CRON_ENV = "RESTORE_ASSETS_SNAPSHOT_CRON"
SNAPSHOT_IDENTIFIER_ENV = "RESTORE_ASSETS_SNAPSHOT_IDENTIFIER"
SNAPSHOT_EXPORT_ENV = "RESTORE_ASSETS_SNAPSHOT_EXPORT"
STAGING_CRON_ENV = "RESTORE_ASSETS_STAGING_CRON"
STAGING_DATABASE_ENV = "RESTORE_ASSETS_STAGING_DATABASE"
STAGING_SCHEMAS_ENV = "RESTORE_ASSETS_STAGING_SCHEMAS"
TIMEZONE_ENV = "RESTORE_ASSETS_SCHEDULE_TIMEZONE"
DEFAULT_SNAPSHOT_CRON = "0 3 * * *"
DEFAULT_STAGING_CRON = "0 4 * * 0"
STAGING_SUFFIX = staging.STAGING_SUFFIX


def checked_cron(value: str, variable: str) -> str:
    """A cron expression Dagster accepts; a clear error naming the variable otherwise."""
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(value):
        raise ValueError(f"{variable}={value!r} is not a valid cron expression (e.g. '0 3 * * *')")
    return value


def stopped_schedule(
    name: str,
    key: str,
    job: dg.JobDefinition,
    cron: str | None,
    env: Mapping[str, str] | None,
    cron_env: str,
    default_cron: str,
    run_config: Callable[[Mapping[str, str]], dict[str, Any] | None],
    skip: str = "",
    tags: Callable[[dict[str, Any]], dict[str, str]] | None = None,
) -> dg.ScheduleDefinition:
    """A STOPPED schedule of job: each tick runs run_config(env) keyed `<key>-<time>`, or skips."""
    # cron: the argument, cron_env or the default; time zone: TIMEZONE_ENV (default UTC); a tick
    # whose run_config(env) is None is skipped with `skip`; tags(config) adds tags to the run
    env = os.environ if env is None else env
    cron = checked_cron(cron or env.get(cron_env) or default_cron, cron_env)

    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        execution_timezone=env.get(TIMEZONE_ENV) or "UTC",
    )
    def tick(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        config = run_config(env)
        if config is None:
            return dg.SkipReason(skip)
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        return dg.RunRequest(
            run_key=f"{key}-{stamp}",
            run_config=config,
            tags={"restore-assets/scheduled": "true", **(tags(config) if tags else {})},
        )

    return tick


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
    return stopped_schedule(
        "snapshot_schedule",
        "snapshot",
        snapshot,
        cron,
        env,
        SNAPSHOT_CRON_ENV,
        DEFAULT_SNAPSHOT_CRON,
        snapshot_run_config,
    )


# ---------------------------------------------------------------------------- staging refresh
class StagingConfig(dg.Config):
    """What the staging copy holds: schemas of one database, restored as <schema>_<suffix>."""

    database: str
    schemas: list[str]
    suffix: str = STAGING_SUFFIX
    compare: bool = False


@dg.op(out=dg.Out(dict))
def refresh_staging(
    context: dg.OpExecutionContext, config: StagingConfig, backend: RestoreBackend
) -> dict:
    """Restore the schemas under new names, swap them in, drop the previous copies nothing uses."""
    from restore_assets.jobs.launch import run_schema_restore

    settings = backend.settings()
    backend_config = {
        "backend": settings.get("backend", "local"),
        "root": settings.get("root"),
        "config_file": backend.config_file,
        "copy_workers": backend.copy_workers,
    }

    def restore(request: dict[str, Any]) -> dict[str, Any]:
        compare = bool(request.pop("compare", False))
        out = run_schema_restore(request, backend_config, compare=compare)
        context.log.info(f"staging restore {out['restore_id']}: {out['status']}")
        return out

    try:
        result = staging.refresh_staging(
            backend.services(),
            config.database,
            config.schemas,
            restore,
            suffix=config.suffix,
            compare=config.compare,
        )
    except RestoreError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    for warning in result.warnings:
        context.log.warning(warning)
    summary = result.to_dict()
    context.add_output_metadata(
        {
            "restore_id": result.restore_id,
            "restore_time": result.restore_time,
            "dropped": dg.MetadataValue.json(result.dropped),
            "kept": dg.MetadataValue.json(summary["kept"]),
        }
    )
    context.log.info(f"staging copy refreshed: {result.staging}; dropped {result.dropped}")
    return summary


@dg.job(tags={KIND_TAG: "staging_refresh"})
def staging_refresh() -> None:
    """Refresh the staging copy: restore under a new name, swap, drop the previous copy if unused."""
    refresh_staging()


def env_target(
    env: Mapping[str, str], database_var: str, schemas_var: str
) -> dict[str, Any] | None:
    """{database, schemas} named by two environment variables; None unless both are set."""
    schemas = [s.strip() for s in (env.get(schemas_var) or "").split(",") if s.strip()]
    database = (env.get(database_var) or "").strip()
    if not schemas or not database:
        return None
    return {"database": database, "schemas": schemas}


def staging_run_config(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The staging_refresh config from the environment; None when no schema is configured."""
    env = os.environ if env is None else env
    config = env_target(env, STAGING_DATABASE_ENV, STAGING_SCHEMAS_ENV)
    if config is None:
        return None
    return {"ops": {"refresh_staging": {"config": config}}}


def make_staging_schedule(
    cron: str | None = None, env: Mapping[str, str] | None = None
) -> dg.ScheduleDefinition:
    """The weekly staging refresh schedule (STOPPED by default)."""
    return stopped_schedule(
        "staging_refresh_schedule",
        "staging",
        staging_refresh,
        cron,
        env,
        STAGING_CRON_ENV,
        DEFAULT_STAGING_CRON,
        staging_run_config,
        f"set {STAGING_DATABASE_ENV} and {STAGING_SCHEMAS_ENV} to refresh a staging copy",
    )


snapshot_schedule = make_snapshot_schedule()
staging_refresh_schedule = make_staging_schedule()
SCHEDULES = [snapshot_schedule, staging_refresh_schedule]
