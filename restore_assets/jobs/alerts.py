"""Run status sensors that alert (Slack, email, SNS) when a restore-assets run fails, is canceled,
or succeeds (successes only when `alerts.on_success` is true). A refused request (a run tagged
`restore-assets/rejected`: nothing was created) is never alerted.

The Notifier (restore_assets.core.alerts) never raises: an alert that cannot be delivered is logged by
the sensor and changes nothing about the run it reports on. Rollbacks are alerted directly by the
instance_restore job's finish op.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from restore_assets.backends.aws.alerts import notifier_from_settings
from restore_assets.core.alerts import AlertNotifier
from restore_assets.jobs.instance_restore import instance_restore
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.runs import restore_id_of
from restore_assets.jobs.schedules import staging_refresh
from restore_assets.jobs.schema_restore import schema_restore
from restore_assets.jobs.snapshot import snapshot
from restore_assets.jobs.tags import KIND_TAG, is_rejected

MONITORED_JOBS: list[dg.JobDefinition] = [
    schema_restore,
    instance_restore,
    snapshot,
    staging_refresh,
]


def notifier_of(backend: RestoreBackend, log: Any = None) -> AlertNotifier | None:
    """The notifier of the backend's configuration; None (logged) when it cannot be read."""
    try:
        return notifier_from_settings(backend.settings())
    except Exception as exc:  # noqa: BLE001 - a sensor that alerts must never fail
        if log is not None:
            log.error(f"alerts configuration unreadable ({type(exc).__name__}): no alert sent")
        return None


def identifier_of(run: dg.DagsterRun) -> str | None:
    """The server or database a run acted on, from its config."""
    config: Mapping[str, Any] = run.run_config or {}
    candidates = [config] + [
        ((op or {}).get("config") or {}) for op in (config.get("ops") or {}).values()
    ]
    for c in candidates:
        for key in ("identifier", "database"):
            if c.get(key):
                return str(c[key])
    return None


def run_event(run: dg.DagsterRun, status: str, cause: str | None = None) -> dict[str, Any]:
    """The alert event of one Dagster run."""
    return {
        "kind": run.tags.get(KIND_TAG) or run.job_name,
        "job": run.job_name,
        "run_id": run.run_id,
        "status": status,
        "restore_id": restore_id_of(run),
        "identifier": identifier_of(run),
        "cause": cause,
    }


def failure_cause(context: dg.RunFailureSensorContext) -> str | None:
    """The first failed step's error message, else the run failure message."""
    try:
        for event in context.get_step_failure_events():
            data = event.step_failure_data
            if data is not None and data.error is not None:
                first = data.error.message.strip().splitlines()[0]
                return re.sub(r"^[A-Za-z_][\w.]*(?:Error|Failure|Exception): ", "", first)
    except Exception:  # noqa: BLE001 - the generic message below is good enough
        pass
    return context.failure_event.message if context.failure_event else None


def send(context: Any, backend: RestoreBackend, event: dict[str, Any]) -> dg.SkipReason | None:
    """Send one event; log each channel's outcome; never raise."""
    run = getattr(context, "dagster_run", None)
    if run is not None and is_rejected(run):
        return dg.SkipReason(
            f"run {run.run_id} was a refused request: nothing was created, no alert"
        )
    notifier = notifier_of(backend, context.log)
    if notifier is None:
        return dg.SkipReason("no alert channel configured (alerts: in the backend configuration)")
    outcome = notifier.send(event)
    for channel, result in outcome.items():
        (context.log.warning if result.startswith("failed") else context.log.info)(
            f"alert for run {event['run_id']} via {channel}: {result}"
        )
    return None


def make_alert_sensors(
    monitored_jobs: Sequence[dg.JobDefinition] = MONITORED_JOBS,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> list[dg.SensorDefinition]:
    """Failure, cancellation and success alert sensors over the given jobs."""
    watch: dict[str, Any] = {
        "monitored_jobs": list(monitored_jobs),
        "default_status": default_status,
        "minimum_interval_seconds": 30,
    }

    @dg.run_failure_sensor(name="alert_on_failure", **watch)
    def alert_on_failure(
        context: dg.RunFailureSensorContext, backend: RestoreBackend
    ) -> dg.SkipReason | None:
        """Alert when a restore-assets run fails."""
        return send(
            context, backend, run_event(context.dagster_run, "failed", failure_cause(context))
        )

    def status_sensor(
        name: str, status: dg.DagsterRunStatus, word: str, description: str
    ) -> dg.SensorDefinition:
        @dg.run_status_sensor(name=name, run_status=status, description=description, **watch)
        def alert(
            context: dg.RunStatusSensorContext, backend: RestoreBackend
        ) -> dg.SkipReason | None:
            return send(context, backend, run_event(context.dagster_run, word))

        return alert

    alert_on_cancel = status_sensor(
        "alert_on_cancel",
        dg.DagsterRunStatus.CANCELED,
        "canceled",
        "Alert when a restore-assets run is canceled (terminated from the UI).",
    )
    alert_on_success = status_sensor(
        "alert_on_success",
        dg.DagsterRunStatus.SUCCESS,
        "succeeded",
        "Alert when a restore-assets run succeeds (only with alerts.on_success: true).",
    )
    return [alert_on_failure, alert_on_cancel, alert_on_success]


alert_on_failure, alert_on_cancel, alert_on_success = make_alert_sensors()
ALERT_SENSORS = [alert_on_failure, alert_on_cancel, alert_on_success]
