"""boto3 clients of the AWS backend, built from the configuration (region, profile, endpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from restore_assets.backends.aws.config import AwsConfig

SERVICES = ("rds", "dms", "ecs", "s3", "dynamodb", "secretsmanager")
NOT_FOUND_CODES = frozenset(
    {
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "DBClusterNotFoundFault",
        "DBClusterNotFound",
        "DBSnapshotNotFound",
        "DBClusterSnapshotNotFoundFault",
        "ResourceNotFoundFault",
        "ResourceNotFoundException",
        "NoSuchKey",
        "NoSuchBucket",
        "404",
        "NotFound",
    }
)


@dataclass
class AwsClients:
    """One boto3 client per service the backend uses."""

    rds: Any
    dms: Any
    ecs: Any
    s3: Any
    dynamodb: Any
    secretsmanager: Any

    def get(self, service: str) -> Any:
        """The client of one service by its boto3 name."""
        return getattr(self, service)


def make_clients(cfg: AwsConfig, max_attempts: int = 5) -> AwsClients:
    """boto3 clients from the configuration's region, profile and endpoint URL."""
    session = boto3.session.Session(profile_name=cfg.profile_name, region_name=cfg.region_name)
    config = Config(retries={"max_attempts": max_attempts, "mode": "standard"})
    made = {
        name: session.client(name, endpoint_url=cfg.endpoint_url, config=config)
        for name in SERVICES
    }
    return AwsClients(**made)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_not_found(exc: BaseException) -> bool:
    """True when a ClientError says the resource does not exist (a delete's success case)."""
    code = error_code(exc)
    return code in NOT_FOUND_CODES or code.endswith("NotFound") or code.endswith("NotFoundFault")
