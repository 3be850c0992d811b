"""The AWS backend's configuration: the `aws:` mapping of backend.yaml, validated before any call."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from restore_assets.core.errors import InvalidRequest
from restore_assets.core.keys import refuse_unknown_keys

RESTORE_ID_TAG = "restore-assets:restore-id"
TEMP_SECRET_PREFIX = "restore-assets/"
MOVERS = ("dms", "copy")
RETENTIONS = ("keep", "delete")
SSE_MODES = ("AES256", "aws:kms")
LOB_MODES = ("limited", "full")

REQUIRED = (
    "source_identifier",
    "secret_arn",
    "restore_subnet_group",
    "restore_security_group_ids",
    "ecs_cluster",
    "ecs_task_definition",
    "ecs_subnets",
    "ecs_security_group_ids",
    "artifact_bucket",
    "audit_table",
)
DMS_REQUIRED = ("dms_subnet_group", "dms_security_group_ids", "dms_secrets_role_arn")
AWS_OTHER_KEYS = frozenset({"snapshot_export"})  # the instance restore's settings


@dataclass(frozen=True)
class AwsConfig:
    """Every setting of the AWS backend (see the README's "On AWS" section for each key)."""

    source_identifier: str
    secret_arn: str
    restore_subnet_group: str
    restore_security_group_ids: tuple[str, ...]
    ecs_cluster: str
    ecs_task_definition: str
    ecs_subnets: tuple[str, ...]
    ecs_security_group_ids: tuple[str, ...]
    artifact_bucket: str
    audit_table: str
    region_name: str | None = None
    endpoint_url: str | None = None
    profile_name: str | None = None
    temp_instance_class: str = "db.r6g.large"
    parameter_group: str | None = None
    cluster_parameter_group: str | None = None
    dms_subnet_group: str | None = None
    dms_security_group_ids: tuple[str, ...] = ()
    dms_instance_class: str = "dms.r5.large"
    dms_secrets_role_arn: str | None = None
    dms_allocated_storage_gb: int = 50
    dms_lob_mode: str = "limited"
    ecs_container_name: str = "restore-tools"
    artifact_prefix: str = "restores/"
    artifact_sse: str = "AES256"
    artifact_kms_key_id: str | None = None
    mover: str = "dms"
    waiter_timeout_s: float = 3600
    waiter_delay_s: float = 30
    artifact_retention: str = "keep"
    temp_identifier_prefix: str = "restore-assets-"
    lock_timeout: str = "5s"
    copy_workers: int = 4

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> AwsConfig:
        """Validate the backend mapping (`backend: aws` plus an `aws:` section); say what is wrong."""
        raw = config.get("aws")
        if not isinstance(raw, Mapping):
            raise InvalidRequest(
                "backend 'aws' needs an 'aws:' mapping in the configuration (see README, On AWS)"
            )
        known = {f.name for f in fields(cls)}
        refuse_unknown_keys("the aws: section of the backend configuration", raw, section_keys())
        values = {
            key: value
            for key, value in raw.items()
            if key in known and value is not None and value != ""
        }
        missing = [k for k in REQUIRED if not values.get(k)]
        mover = str(values.get("mover", "dms"))
        if mover == "dms":
            missing += [k for k in DMS_REQUIRED if not values.get(k)]
        if missing:
            raise InvalidRequest(
                "aws configuration is missing " + ", ".join(missing) + ": the CDK stack's"
                " outputs (backend.yaml) give every one of them"
            )
        for key in (
            "restore_security_group_ids",
            "ecs_subnets",
            "ecs_security_group_ids",
            "dms_security_group_ids",
        ):
            if key in values:
                v = values[key]
                values[key] = tuple([v] if isinstance(v, str) else [str(x) for x in v])
        for key in ("waiter_timeout_s", "waiter_delay_s"):
            if key in values:
                values[key] = float(values[key])
        for key in ("copy_workers", "dms_allocated_storage_gb"):
            if key in values:
                values[key] = int(values[key])
        # settings shared with the local backend may sit at the top level of the mapping
        if "lock_timeout" not in values and config.get("lock_timeout"):
            values["lock_timeout"] = str(config["lock_timeout"])
        if "copy_workers" not in values and config.get("copy_workers"):
            values["copy_workers"] = int(config["copy_workers"])
        cfg = cls(**values)
        cfg._validate()
        return cfg

    def _validate(self) -> None:
        def choice(key: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, key) not in allowed:
                raise InvalidRequest(
                    f"aws.{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}"
                )

        choice("mover", MOVERS)
        choice("artifact_retention", RETENTIONS)
        choice("artifact_sse", SSE_MODES)
        choice("dms_lob_mode", LOB_MODES)
        if self.waiter_timeout_s <= 0 or self.waiter_delay_s <= 0:
            raise InvalidRequest("aws.waiter_timeout_s and aws.waiter_delay_s must be positive")
        if not self.artifact_prefix.endswith("/") or self.artifact_prefix.startswith("/"):
            raise InvalidRequest(
                f"aws.artifact_prefix={self.artifact_prefix!r}: must end with '/' and not start with '/'"
            )
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", self.temp_identifier_prefix):
            raise InvalidRequest(
                f"aws.temp_identifier_prefix={self.temp_identifier_prefix!r}: lowercase letters,"
                " digits and '-', starting with a letter, at most 31 characters"
            )
        if not self.secret_arn.startswith("arn:"):
            raise InvalidRequest(f"aws.secret_arn={self.secret_arn!r}: expected the full ARN")

    def waiter_config(self, timeout_s: float | None = None) -> dict[str, int]:
        """WaiterConfig (Delay, MaxAttempts) that gives up after timeout_s (default waiter_timeout_s)."""
        return waiter_config(timeout_s or self.waiter_timeout_s, self.waiter_delay_s)

    def temp_identifier(self, restore_id: str, role: str = "") -> str:
        """A valid RDS/DMS identifier for one temporary resource of a restore."""
        return resource_identifier(self.temp_identifier_prefix, restore_id, role)


def section_keys() -> frozenset[str]:
    """Every valid key of the `aws:` section (AwsConfig's fields and the instance restore's)."""
    return frozenset(f.name for f in fields(AwsConfig)) | AWS_OTHER_KEYS


def waiter_config(timeout_s: float, delay_s: float = 30) -> dict[str, int]:
    """Delay/MaxAttempts so that a boto3 waiter gives up after about timeout_s seconds."""
    delay = max(1, int(min(delay_s, timeout_s)))
    return {"Delay": delay, "MaxAttempts": max(1, math.ceil(timeout_s / delay))}


def resource_identifier(prefix: str, restore_id: str, role: str = "") -> str:
    """prefix + restore id (+ role), lower-cased, letters/digits/single hyphens, at most 63 chars."""
    body = re.sub(
        r"[^a-z0-9]+", "-", f"{restore_id}-{role}".lower() if role else restore_id.lower()
    )
    ident = re.sub(r"-+", "-", f"{prefix}{body}").strip("-")
    if len(ident) > 63:
        import hashlib

        digest = hashlib.sha256(f"{restore_id}/{role}".encode()).hexdigest()[:8]
        ident = ident[: 63 - 9].rstrip("-") + "-" + digest
    if not ident[0].isalpha():
        ident = "r" + ident[:62]
    return ident


def tags(restore_id: str, style: str = "Key") -> list[dict[str, str]]:
    """The restore-id tag in the shape a service wants (Key/Value, or key/value for ECS)."""
    if style == "key":
        return [{"key": RESTORE_ID_TAG, "value": restore_id}]
    return [{"Key": RESTORE_ID_TAG, "Value": restore_id}]


def temp_secret_name(restore_id: str) -> str:
    """Name of the temporary secret holding the historical credentials of a restore."""
    return f"{TEMP_SECRET_PREFIX}{restore_id}/temp-db"
