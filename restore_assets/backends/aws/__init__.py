"""The AWS backend: RDS/Aurora fleet, historical secrets, the pg tools task on ECS, DMS, S3 and DynamoDB.

Its entries, called by `backends/factory` (the one place a backend is chosen) when the backend
mapping says `backend: aws`: `services(config)` for a schema restore, `server_restore_backend(config)`
for a server restore, `audit_log(config)` for both. Every boto3 client comes from
`clients.aws_client` (one shared session per profile and region). No module imports Dagster.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from restore_assets.backends.aws.config import AwsConfig


@dataclass
class Overrides:
    """Seams a caller (the tests) may set: client wrappers, the task launcher, endpoint mapping."""

    wrap_client: Callable[[str, Any], Any] | None = None
    launcher: Callable[[AwsConfig, Any], Any] | None = None
    endpoint_override: Callable[[str, int], tuple[str, int]] | None = None


_overrides: Overrides | None = None


@contextlib.contextmanager
def overridden(overrides: Overrides) -> Iterator[Overrides]:
    """Within the block, services() applies these seams (used by the moto tests only)."""
    global _overrides
    previous, _overrides = _overrides, overrides
    try:
        yield overrides
    finally:
        _overrides = previous


def with_file(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The mapping with its `aws:` section, read from `config_file` (or $RESTORE_ASSETS_CONFIG) if absent."""
    if "aws" in config:
        return config
    path = config.get("config_file") or os.environ.get("RESTORE_ASSETS_CONFIG")
    if not path:
        return config
    import yaml

    with open(path) as fh:
        loaded = yaml.safe_load(fh) or {}
    return {**loaded, **{k: v for k, v in config.items() if k != "config_file"}}


def services(config: Mapping[str, Any]) -> Any:
    """The Services of the AWS backend from a configuration mapping (`backend: aws` + `aws:`)."""
    from restore_assets.backends.aws.artifacts import S3Artifacts
    from restore_assets.backends.aws.audit import DynamoAuditLog
    from restore_assets.backends.aws.clients import make_clients
    from restore_assets.backends.aws.dms import DmsManager, DmsMover
    from restore_assets.backends.aws.ecs import EcsTaskLauncher
    from restore_assets.backends.aws.fleet import AwsFleet
    from restore_assets.backends.aws.secrets import SecretStore
    from restore_assets.backends.aws.tools_task import EcsCopyMover, EcsDdlTask
    from restore_assets.core.schema_restore.services import Services

    cfg = AwsConfig.from_mapping(with_file(config))
    ov = _overrides or Overrides()
    clients = make_clients(cfg, wrap=ov.wrap_client)
    artifacts = S3Artifacts(
        clients.s3,
        cfg.artifact_bucket,
        cfg.artifact_prefix,
        cfg.artifact_sse,
        cfg.artifact_kms_key_id,
    )
    launcher = (
        ov.launcher(cfg, clients) if ov.launcher is not None else EcsTaskLauncher(cfg, clients.ecs)
    )
    dms = DmsManager(cfg, clients.dms) if cfg.mover == "dms" else None
    fleet = AwsFleet(
        cfg,
        clients,
        SecretStore(clients.secretsmanager),
        endpoint_override=ov.endpoint_override,
        dms=dms,
    )
    mover: Any = DmsMover(dms, cfg) if dms is not None else EcsCopyMover(cfg, artifacts, launcher)
    return Services(
        fleet=fleet,
        audit=DynamoAuditLog(clients.dynamodb, cfg.audit_table),
        artifacts=artifacts,
        ddl=EcsDdlTask(cfg, artifacts, launcher),
        mover=mover,
        provision_timeout=cfg.waiter_timeout_s,
        keep_artifacts=cfg.artifact_retention == "keep",
    )


def client(aws: Mapping[str, Any], service: str, **kwargs: Any) -> Any:
    """A boto3 client from an `aws:` section (region_name, profile_name, endpoint_url)."""
    from restore_assets.backends.aws.clients import aws_client

    return aws_client(
        service,
        profile_name=aws.get("profile_name"),
        region_name=aws.get("region_name"),
        endpoint_url=aws.get("endpoint_url"),
        **kwargs,
    )


def server_restore_backend(config: Mapping[str, Any], rds: Any = None) -> Any:
    """The server restore backend on RDS / Aurora (only the `aws:` keys it reads are needed)."""
    from restore_assets.backends.aws.clients import retry_config
    from restore_assets.backends.aws.server_restore import AwsInstanceBackend

    aws = config.get("aws") or {}
    return AwsInstanceBackend(
        rds if rds is not None else client(aws, "rds", config=retry_config(5)),
        default_identifier=aws.get("source_identifier"),
        export=aws.get("snapshot_export") or {},
        timeout=float(aws.get("waiter_timeout_s", 3600)),
        poll=float(aws.get("waiter_delay_s", 30)),
    )


def audit_log(config: Mapping[str, Any]) -> Any:
    """The DynamoDB audit log of `aws.audit_table`; None when the mapping names no table."""
    from restore_assets.backends.aws.audit import DynamoAuditLog

    aws = config.get("aws") or {}
    if not aws.get("audit_table"):
        return None
    return DynamoAuditLog(client(aws, "dynamodb"), str(aws["audit_table"]))


__all__ = [
    "AwsConfig",
    "Overrides",
    "audit_log",
    "overridden",
    "server_restore_backend",
    "services",
]
