"""Dagster Definitions: the single entry point (jobs, resources per backend, sensors, schedules)."""

from __future__ import annotations

import os

import dagster as dg

from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.schema_restore import (
    cleanup,
    cleanup_after_failure,
    cleanup_after_termination,
    schema_restore,
)


def backend_from_env() -> RestoreBackend:
    """The backend resource from the environment: RESTORE_ASSETS_BACKEND, _ROOT, _CONFIG (YAML)."""
    return RestoreBackend(
        backend=os.environ.get("RESTORE_ASSETS_BACKEND", "local"),
        root=os.environ.get("RESTORE_ASSETS_ROOT", ""),
        config_file=os.environ.get("RESTORE_ASSETS_CONFIG", ""),
        copy_workers=int(os.environ.get("RESTORE_ASSETS_COPY_WORKERS", "4")),
    )


defs = dg.Definitions(
    jobs=[schema_restore, cleanup],
    sensors=[cleanup_after_failure, cleanup_after_termination],
    resources={"backend": backend_from_env()},
)
