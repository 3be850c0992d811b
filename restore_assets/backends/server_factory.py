"""Instance-level restore in place and snapshots (core: no Dagster), on the local fleet or RDS."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from restore_assets.core.server_restore.model import Described, InstancePlan, InstanceRequest
from restore_assets.core.server_restore.protocols import InstanceBackend
from restore_assets.core.server_restore.steps import (
    KIND_RESTORE,
    KIND_SNAPSHOT,
    STEPS,
    InstanceServices,
    plan_instance_restore,
    run_instance_restore,
    take_snapshot,
)

log = logging.getLogger("restore_assets.backends.server_factory")

__all__ = [
    "KIND_RESTORE",
    "KIND_SNAPSHOT",
    "STEPS",
    "Described",
    "InstanceBackend",
    "InstancePlan",
    "InstanceRequest",
    "InstanceServices",
    "instance_backend",
    "instance_services",
    "plan_instance_restore",
    "run_instance_restore",
    "take_snapshot",
]


def _client(aws: Mapping[str, Any], service: str, **kwargs: Any) -> Any:
    """A boto3 client from the `aws:` settings, through the AWS backend's one session path."""
    from restore_assets.backends.aws.clients import aws_client

    return aws_client(
        service,
        profile_name=aws.get("profile_name"),
        region_name=aws.get("region_name"),
        endpoint_url=aws.get("endpoint_url"),
        **kwargs,
    )


def rds_client(aws: Mapping[str, Any]) -> Any:
    """A boto3 RDS client from the `aws:` settings (region_name, profile_name, endpoint_url)."""
    from restore_assets.backends.aws.clients import retry_config

    return _client(aws, "rds", config=retry_config(5))


def instance_backend(settings: Mapping[str, Any], rds: Any = None) -> InstanceBackend:
    """The instance backend of a configuration mapping ('local' by default, or 'aws')."""
    backend = settings.get("backend", "local")
    if backend == "local":
        from restore_assets.backends.factory import default_root
        from restore_assets.backends.local.fleet import LocalFleet
        from restore_assets.backends.local.server_restore import LocalInstanceBackend

        opts = settings.get("instance_restore") or {}
        return LocalInstanceBackend(
            LocalFleet(Path(settings.get("root") or default_root())),
            post_restore_snapshot=bool(opts.get("post_restore_snapshot", True)),
            # a copy of the set-aside data directory before it is removed (the final snapshot)
            final_backup=bool(opts.get("final_backup", True)),
        )
    if backend == "aws":
        from restore_assets.backends.aws.server_restore import AwsInstanceBackend

        aws = settings.get("aws") or {}
        return AwsInstanceBackend(
            rds if rds is not None else rds_client(aws),
            default_identifier=aws.get("source_identifier"),
            export=aws.get("snapshot_export") or {},
            timeout=float(aws.get("waiter_timeout_s", 3600)),
            poll=float(aws.get("waiter_delay_s", 30)),
        )
    raise ValueError(f"unknown backend {backend!r}: use 'local' or 'aws'")


def _audit(settings: Mapping[str, Any]) -> Any:
    """The audit log the schema restores use: DynamoDB (aws.audit_table) on AWS, else SQLite."""
    from restore_assets.backends.factory import default_root
    from restore_assets.core.audit import SqliteAuditLog

    aws = settings.get("aws") or {}
    if settings.get("backend", "local") == "aws":
        if aws.get("audit_table"):
            from restore_assets.backends.aws.audit import DynamoAuditLog

            return DynamoAuditLog(_client(aws, "dynamodb"), str(aws["audit_table"]))
        log.warning(
            "no aws.audit_table configured: instance runs are recorded in the local SQLite log"
        )
    return SqliteAuditLog(Path(settings.get("root") or default_root()) / "audit.sqlite")


def instance_services(
    settings: Mapping[str, Any],
    *,
    backend: InstanceBackend | None = None,
    audit: Any = None,
    notifier: Any = None,
) -> InstanceServices:
    """InstanceServices (backend, audit log, notifier, time limits) from a configuration mapping."""
    from restore_assets.backends.aws.alerts import notifier_from_settings

    opts = settings.get("instance_restore") or {}
    return InstanceServices(
        backend=backend or instance_backend(settings),
        audit=audit or _audit(settings),
        notifier=notifier if notifier is not None else notifier_from_settings(settings),
        wait_timeout=float(opts.get("wait_timeout_s", 3600)),
        snapshot_timeout=float(opts.get("snapshot_timeout_s", 3600)),
        export_timeout=float(opts.get("export_timeout_s", 6 * 3600)),
    )
