"""Dagster Definitions: the single entry point (jobs, resources per backend, sensors, schedules)."""

from __future__ import annotations

import os

import dagster as dg

from restore_assets.jobs.alerts import ALERT_SENSORS
from restore_assets.jobs.drill import restore_drill, restore_drill_asset, restore_drill_schedule
from restore_assets.jobs.instance_restore import (
    instance_recover,
    instance_restore,
    recover_after_instance_failure,
    recover_after_instance_termination,
)
from restore_assets.jobs.recover_rows import recover_rows
from restore_assets.jobs.report_asset import comparison_report
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.schedules import SCHEDULES, staging_refresh
from restore_assets.jobs.schema_restore import (
    cleanup,
    cleanup_after_failure,
    cleanup_after_termination,
    schema_restore,
)
from restore_assets.jobs.snapshot import snapshot


def backend_from_env() -> RestoreBackend:
    """The backend resource from the environment: RESTORE_ASSETS_BACKEND, _ROOT, _CONFIG (YAML)."""
    return RestoreBackend(
        backend=os.environ.get("RESTORE_ASSETS_BACKEND", "local"),
        root=os.environ.get("RESTORE_ASSETS_ROOT", ""),
        config_file=os.environ.get("RESTORE_ASSETS_CONFIG", ""),
        copy_workers=int(os.environ.get("RESTORE_ASSETS_COPY_WORKERS", "4")),
    )


def resources_from_env() -> dict[str, object]:
    """The backend resource, plus the per-service AWS resources when the backend is aws."""
    backend = backend_from_env()
    resources: dict[str, object] = {"backend": backend}
    if backend.backend == "aws" or backend.settings().get("backend") == "aws":
        from restore_assets.jobs.aws_resources import aws_resources

        resources.update(aws_resources(backend.settings()))
    return resources


defs = dg.Definitions(
    assets=[comparison_report, restore_drill_asset],
    jobs=[
        schema_restore,
        cleanup,
        instance_restore,
        instance_recover,
        snapshot,
        staging_refresh,
        recover_rows,
        restore_drill,
    ],
    sensors=[
        cleanup_after_failure,
        cleanup_after_termination,
        *ALERT_SENSORS,
        recover_after_instance_failure,
        recover_after_instance_termination,
    ],
    schedules=[*SCHEDULES, restore_drill_schedule],
    resources=resources_from_env(),
    # measured faster than one process per op for the demo restore (bench/ui_bench.py, README)
    executor=dg.in_process_executor,
)
