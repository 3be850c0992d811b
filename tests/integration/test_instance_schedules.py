"""Schedules: snapshot and staging refresh, STOPPED by default; the staging refresh end to end."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from restore_assets.jobs.schedules import (
    SCHEDULES,
    SNAPSHOT_CRON_ENV,
    SNAPSHOT_EXPORT_ENV,
    SNAPSHOT_IDENTIFIER_ENV,
    STAGING_CRON_ENV,
    STAGING_DATABASE_ENV,
    STAGING_SCHEMAS_ENV,
    make_snapshot_schedule,
    make_staging_schedule,
    staging_refresh,
)
from restore_assets.jobs.snapshot import snapshot

WHEN = datetime(2026, 1, 4, 4, 0, tzinfo=UTC)


def test_schedules_are_off_by_default() -> None:
    assert {s.name: s.default_status for s in SCHEDULES} == {
        "snapshot_schedule": dg.DefaultScheduleStatus.STOPPED,
        "staging_refresh_schedule": dg.DefaultScheduleStatus.STOPPED,
    }


def test_snapshot_schedule_from_the_environment() -> None:
    env = {
        SNAPSHOT_CRON_ENV: "15 2 * * *",
        SNAPSHOT_IDENTIFIER_ENV: "prod-db",
        SNAPSHOT_EXPORT_ENV: "true",
    }
    schedule = make_snapshot_schedule(env=env)
    assert schedule.cron_schedule == "15 2 * * *"
    [request] = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=WHEN)
    ).run_requests
    assert request.run_config == {"identifier": "prod-db", "export_s3": True}
    assert request.tags["restore-assets/scheduled"] == "true"
    assert dg.validate_run_config(snapshot, request.run_config)
    assert make_snapshot_schedule(env={}).cron_schedule == "0 3 * * *"


def test_staging_schedule_skips_until_configured() -> None:
    skipped = make_staging_schedule(env={}).evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=WHEN)
    )
    assert skipped.run_requests == [] and STAGING_SCHEMAS_ENV in (skipped.skip_message or "")
    env = {
        STAGING_CRON_ENV: "0 5 * * 6",
        STAGING_DATABASE_ENV: "app",
        STAGING_SCHEMAS_ENV: "customer_a, customer_b",
    }
    schedule = make_staging_schedule(env=env)
    assert schedule.cron_schedule == "0 5 * * 6"
    [request] = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=WHEN)
    ).run_requests
    config = request.run_config["ops"]["refresh_staging"]["config"]
    assert config == {"database": "app", "schemas": ["customer_a", "customer_b"]}
    assert dg.validate_run_config(staging_refresh, request.run_config)
