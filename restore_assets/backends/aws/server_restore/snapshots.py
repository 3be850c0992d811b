"""Snapshots of a server restore: check the one to restore, take one, export one to S3."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from restore_assets.backends.aws.server_restore.config import drop_none
from restore_assets.backends.aws.server_restore.rds import Rds
from restore_assets.backends.aws.waits import WaitTimedOut, poll_until
from restore_assets.core.errors import FleetError, InvalidRequest
from restore_assets.core.server_restore.model import Described, default_snapshot_identifier
from restore_assets.core.server_restore.protocols import Record

SNAPSHOT_KIND = "rds-snapshot"
CREATED_BY_TAG = {"Key": "restore-assets:created-by", "Value": "restore-assets"}
EXPORT_KEYS = ("s3_bucket", "iam_role_arn", "kms_key_id")
EXPORT_ENDED = ("FAILED", "CANCELED", "CANCELLED")


def check_snapshot(rds: Rds, source: Described, snapshot_id: str) -> dict[str, Any]:
    """An available snapshot of the right kind and engine; warnings for another source or key."""
    info = rds.snapshot(source.topology, snapshot_id)
    kind = "cluster snapshot" if source.topology == "cluster" else "DB snapshot"
    if info is None:
        raise InvalidRequest(f"unknown {kind} {snapshot_id!r}")
    if info["status"] != "available":
        raise InvalidRequest(f"{kind} {snapshot_id} is {info['status']}, not available")
    if info.get("engine") and info["engine"] != source.config.get("Engine"):
        raise InvalidRequest(
            f"{kind} {snapshot_id} is of engine {info['engine']}, {source.identifier} runs"
            f" {source.config.get('Engine')}"
        )
    warnings = []
    if info.get("source") and info["source"] != source.identifier:
        warnings.append(
            f"snapshot {snapshot_id} was taken of {info['source']}, not {source.identifier}"
        )
    if (
        source.topology == "instance"
        and source.config.get("KmsKeyId")
        and info.get("kms_key_id") not in (None, source.config.get("KmsKeyId"))
    ):
        warnings.append(
            f"snapshot {snapshot_id} is encrypted with {info['kms_key_id']}: an instance restored"
            " from a DB snapshot keeps the snapshot's key (copy the snapshot with the original's"
            " key to keep it)"
        )
    if info.get("engine_version") and info["engine_version"] != source.config.get("EngineVersion"):
        warnings.append(
            f"snapshot {snapshot_id} is of engine version {info['engine_version']}, the original"
            f" runs {source.config.get('EngineVersion')}: the restored server runs the snapshot's"
            " version (its parameter groups must fit it)"
        )
    info["warnings"] = warnings
    return info


def create_snapshot(
    rds: Rds, source: Described, snapshot_identifier: str | None, record: Record, timeout: float
) -> dict[str, Any]:
    """Create a DB (or cluster) snapshot (recorded first) and wait until it is available."""
    snap_id = snapshot_identifier or default_snapshot_identifier(source.identifier)
    record(SNAPSHOT_KIND, snap_id, {"source": source.identifier, "topology": source.topology})
    if source.topology == "cluster":
        rds.client.create_db_cluster_snapshot(
            DBClusterSnapshotIdentifier=snap_id,
            DBClusterIdentifier=source.identifier,
            Tags=[CREATED_BY_TAG],
        )
    else:
        rds.client.create_db_snapshot(
            DBSnapshotIdentifier=snap_id,
            DBInstanceIdentifier=source.identifier,
            Tags=[CREATED_BY_TAG],
        )
    rds.wait_snapshot(source.topology, snap_id, timeout=timeout)
    info = rds.snapshot(source.topology, snap_id) or {"id": snap_id}
    info["warnings"] = []
    return info


def export_settings(export: Mapping[str, Any]) -> Mapping[str, Any]:
    """The aws.snapshot_export settings, refused when a required one is missing."""
    missing = [k for k in EXPORT_KEYS if not export.get(k)]
    if missing:
        raise InvalidRequest(
            "export to S3 needs aws.snapshot_export."
            + ", aws.snapshot_export.".join(missing)
            + " in the configuration"
        )
    return export


def export_snapshot(
    rds: Rds, export: Mapping[str, Any], snapshot: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """StartExportTask to S3 (KMS key and role from configuration); follow it to its end (RDS has
    no waiter for export tasks: a bounded poll)."""
    cfg = export_settings(export)
    task_id = f"{snapshot['id']}-export"[:60].rstrip("-")
    rds.client.start_export_task(
        **drop_none(
            {
                "ExportTaskIdentifier": task_id,
                "SourceArn": snapshot["arn"],
                "S3BucketName": cfg["s3_bucket"],
                "IamRoleArn": cfg["iam_role_arn"],
                "KmsKeyId": cfg["kms_key_id"],
                "S3Prefix": cfg.get("s3_prefix"),
            }
        )
    )

    def probe() -> dict[str, Any]:
        tasks = rds.client.describe_export_tasks(ExportTaskIdentifier=task_id)["ExportTasks"]
        return tasks[0] if tasks else {}

    def done(task: dict[str, Any]) -> bool:
        state = str(task.get("Status", "missing")).upper()
        if state in EXPORT_ENDED:
            raise FleetError(
                f"export {task_id} ended {state}: {task.get('FailureCause') or 'no cause given'}"
            )
        return state == "COMPLETE"

    try:
        last = poll_until(probe, done, timeout=timeout, delay=rds.poll, sleep=rds.sleep)
    except WaitTimedOut as exc:
        state = str(exc.last.get("Status", "missing")).lower()
        raise FleetError(
            f"export {task_id} to s3://{cfg['s3_bucket']}: not done within {timeout:.0f}s"
            f" (last state {state!r}): the export goes on in AWS; follow it with"
            f" `aws rds describe-export-tasks --export-task-identifier {task_id}`"
        ) from None
    return {
        "export_task": task_id,
        "status": "complete",
        "s3": f"s3://{cfg['s3_bucket']}/{cfg.get('s3_prefix', '')}".rstrip("/"),
        "percent": last.get("PercentProgress"),
    }
