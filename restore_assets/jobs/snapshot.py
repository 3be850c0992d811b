"""The snapshot job: take a snapshot of the instance or cluster (task create_snapshot_only).

A user-given identifier or a default one, waiting until the snapshot is available within a time
limit; optionally exported to S3 and followed to completion or failure. Locally a snapshot is a base
backup of the fleet's production cluster.
"""

from typing import Any

import dagster as dg

from restore_assets.core.audit import new_restore_id
from restore_assets.core.runner import PhaseResult
from restore_assets.core.server_restore import steps
from restore_assets.core.server_restore.model import InstanceRequest
from restore_assets.jobs.instance_restore import (
    export_snapshot_step,
    finish_op_body,
    outcome,
    request_of,
    take_snapshot_step,
    validate_op_body,
)
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.strict import INFO_CONSOLE, launchpad_form, strict_config_mapping
from restore_assets.jobs.tags import KIND_TAG


class SnapshotConfig(
    launchpad_form(
        InstanceRequest,
        exclude={"snapshot_id", "restore_time", "suffix", "keep_old", "skip_final_snapshot"},
        defaults={"task": "create_snapshot_only"},
    )
):
    """Which server to snapshot, the snapshot's name, and whether to export it to S3 (fields of
    the core InstanceRequest, which checks them in the first op)."""

    restore_id: str | None = None


@strict_config_mapping(SnapshotConfig)
def snapshot_request_as_run_config(val: dict[str, Any]) -> dict[str, Any]:
    """Map the top-level request typed in the launchpad to the validate op's config."""
    return {"ops": {"validate_snapshot_request": {"config": val}}, "loggers": INFO_CONSOLE}


@dg.op(out=dg.Out(dict))
def validate_snapshot_request(
    context: dg.OpExecutionContext, config: SnapshotConfig, backend: RestoreBackend
) -> dict:
    """Check the server, the snapshot name and the export settings; open the audit record."""
    raw = request_of(config, {"restore_id"})
    if not raw.get("export_s3"):
        raw.pop("export_s3", None)
    return validate_op_body(context, raw, backend, steps.KIND_SNAPSHOT, config.restore_id)


@dg.op(out=dg.Out(dict))
def finish_snapshot(
    context: dg.OpExecutionContext,
    run: dict,
    snap: PhaseResult,
    exported: PhaseResult,
    backend: RestoreBackend,
) -> dict:
    """Write the final audit status; the run fails if the snapshot or its export failed."""
    return finish_op_body(context, run, [snap, exported], backend, steps.KIND_SNAPSHOT)


@dg.job(config=snapshot_request_as_run_config, tags={KIND_TAG: "snapshot"})
def snapshot() -> None:
    """Take a snapshot of the instance or cluster (optionally exported to S3)."""
    run = validate_snapshot_request()
    snap = take_snapshot_step(run)
    exported = export_snapshot_step(run, snap)
    finish_snapshot(run, snap, exported)


def run_snapshot_job(
    request: dict[str, Any],
    backend_config: dict[str, Any],
    *,
    restore_id: str | None = None,
) -> dict[str, Any]:
    """Execute the snapshot job in process; return the run's summary from the audit log."""
    rid = restore_id or new_restore_id("s")
    run_config = {**request, "restore_id": rid}
    return outcome(snapshot, run_config, backend_config, rid)
