"""boto3 clients of the AWS backend, built from the configuration (region, profile, endpoint)."""

from __future__ import annotations

import threading
from collections.abc import Callable
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


class AwsClients:
    """One boto3 client per service the backend uses, each created on first use."""

    def __init__(self, factory: Callable[[str], Any] | None = None, **clients: Any) -> None:
        unknown = set(clients) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown AWS services {sorted(unknown)}")
        self._factory = factory
        self._clients: dict[str, Any] = dict(clients)

    def get(self, service: str) -> Any:
        """The client of one service by its boto3 name."""
        if service not in SERVICES:
            raise AttributeError(service)
        if service not in self._clients:
            if self._factory is None:
                raise AttributeError(f"no {service} client")
            self._clients[service] = self._factory(service)
        return self._clients[service]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in SERVICES:
            raise AttributeError(name)
        if name in self._clients:
            return self._clients[name]
        return _LazyClient(self, name)


class _LazyClient:
    """Stands for a client not created yet; creates it on first use (an op needs one or two)."""

    def __init__(self, owner: AwsClients, service: str) -> None:
        self._owner = owner
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._owner.get(self._service), name)


_session_lock = threading.Lock()
_sessions: dict[tuple[str | None, str | None], boto3.session.Session] = {}


def shared_session(profile_name: str | None, region_name: str | None) -> boto3.session.Session:
    """One boto3 session per (profile, region) and process: service models are parsed once."""
    key = (profile_name, region_name)
    with _session_lock:
        if key not in _sessions:
            _sessions[key] = boto3.session.Session(
                profile_name=profile_name, region_name=region_name
            )
        return _sessions[key]


def retry_config(max_attempts: int = 5) -> Config:
    """The botocore retry configuration of the backend's clients (standard mode)."""
    return Config(retries={"max_attempts": max_attempts, "mode": "standard"})


def aws_client(
    service: str,
    *,
    profile_name: str | None = None,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    config: Config | None = None,
    **kwargs: Any,
) -> Any:
    """A boto3 client of one service from the process's shared session (the one session path)."""
    session = shared_session(profile_name, region_name)
    with _session_lock:  # boto3 sessions are not thread-safe; their clients are
        return session.client(service, endpoint_url=endpoint_url, config=config, **kwargs)


def make_clients(
    cfg: AwsConfig, max_attempts: int = 5, wrap: Callable[[str, Any], Any] | None = None
) -> AwsClients:
    """boto3 clients from the configuration's region, profile and endpoint URL (made lazily)."""
    config = retry_config(max_attempts)

    def factory(service: str) -> Any:
        client = aws_client(
            service,
            profile_name=cfg.profile_name,
            region_name=cfg.region_name,
            endpoint_url=cfg.endpoint_url,
            config=config,
        )
        return wrap(service, client) if wrap is not None else client

    return AwsClients(factory)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_not_found(exc: BaseException) -> bool:
    """True when a ClientError says the resource does not exist (a delete's success case)."""
    code = error_code(exc)
    return code in NOT_FOUND_CODES or code.endswith("NotFound") or code.endswith("NotFoundFault")
