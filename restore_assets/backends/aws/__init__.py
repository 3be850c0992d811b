"""The AWS backend: RDS/Aurora fleet, historical secrets, the pg tools task on ECS, DMS, S3 and DynamoDB.

`aws_services(config)` builds the Services of a run from the backend mapping (what
`build_services` receives): boto3 clients straight from the `aws:` section's region, profile and
endpoint URL. No module of this package imports Dagster except `resources`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
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
    """Within the block, aws_services() applies these seams (used by the moto tests only)."""
    global _overrides
    previous, _overrides = _overrides, overrides
    try:
        yield overrides
    finally:
        _overrides = previous


def with_file(config: dict[str, Any]) -> dict[str, Any]:
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


def aws_services(config: dict[str, Any]) -> Any:
    """The Services of the AWS backend from a configuration mapping (`backend: aws` + `aws:`)."""
    from restore_assets.backends.aws.artifacts import S3Artifacts
    from restore_assets.backends.aws.audit import DynamoAuditLog
    from restore_assets.backends.aws.clients import make_clients
    from restore_assets.backends.aws.dms import DmsManager, DmsMover
    from restore_assets.backends.aws.ecs import EcsCopyMover, EcsDdlTask, EcsTaskLauncher
    from restore_assets.backends.aws.fleet import AwsFleet
    from restore_assets.backends.aws.secrets import SecretStore
    from restore_assets.core.schema_restore.phases import Services

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


__all__ = ["AwsConfig", "Overrides", "aws_services", "overridden"]
