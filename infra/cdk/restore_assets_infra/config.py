"""Settings of the CDK app, read from CDK context (`-c key=value` or `App(context=...)`).

Every key has a default so that `python app.py` synthesizes with no context at all. Values given
on the command line arrive as strings ("true", "30"); values given by tests may be real booleans
and numbers; both are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from constructs import Node

CDK_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = CDK_DIR.parent.parent

DATABASE_CHOICES = ("None", "SingleAz", "MultiAz", "AuroraProvisioned", "AuroraServerless")
MOVER_CHOICES = ("dms", "copy")

# Tag the AWS backend puts on every resource it creates; IAM conditions key on it.
RESTORE_ID_TAG = "restore-assets:restore-id"
# Name prefix of the temporary secrets the backend creates in Secrets Manager.
TEMP_SECRET_PREFIX = "restore-assets/"


class ConfigError(ValueError):
    """A context value is missing or malformed; the message says which and how to fix it."""


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"context {key}={value!r}: expected true or false")


def _as_int(key: str, value: Any, minimum: int = 0) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"context {key}={value!r}: expected an integer") from None
    if number < minimum:
        raise ConfigError(f"context {key}={value!r}: must be >= {minimum}")
    return number


def _as_opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


@dataclass(frozen=True)
class Settings:
    """Validated settings of one synthesis; see README.md for what each key does."""

    stack_name: str = "RestoreAssets"
    selected_database: str = "None"
    # Existing production database (selectedDatabase=None).
    source_identifier: str | None = None
    source_secret_arn: str | None = None
    source_security_group_id: str | None = None
    source_kms_key_arn: str | None = None
    # Demo database (selectedDatabase != None).
    deletion_protection: bool = True
    db_instance_class: str | None = None
    load_demo_data: bool = True
    pg8000_layer_dir: Path = CDK_DIR / "build" / "pg8000-layer"
    # Network.
    vpc_cidr: str = "10.42.0.0/16"
    flow_logs: bool = True
    # Restore capability.
    create_dms_roles: bool = True
    image_uri: str | None = None
    docker_context: Path = REPO_ROOT
    docker_file: str = "docker/Dockerfile"
    artifact_prefix: str = "restores/"
    artifact_retention_days: int = 30
    log_retention_days: int = 30
    temp_instance_class: str = "db.r6g.large"
    dms_instance_class: str = "dms.r5.large"
    mover: str = "dms"
    temp_identifier_prefix: str = "restore-assets-"
    enable_instance_restore: bool = False
    # Dagster.
    deploy_dagster: bool = False
    dagster_image_uri: str | None = None
    dagster_role_principals: list[str] = field(default_factory=list)

    @property
    def has_demo_database(self) -> bool:
        """True when the stack creates its own demo database."""
        return self.selected_database != "None"

    @property
    def is_aurora(self) -> bool:
        """True for the Aurora variants of the demo database."""
        return self.selected_database.startswith("Aurora")

    @classmethod
    def from_node(cls, node: Node) -> Settings:
        """Read and validate every setting from the construct tree's context."""
        return cls.from_mapping({key: node.try_get_context(key) for key in CONTEXT_KEYS})

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> Settings:
        """Validate a mapping of context key -> value (missing or None means default)."""
        values: dict[str, Any] = {}
        for key, attr in CONTEXT_KEYS.items():
            value = raw.get(key)
            if value is None or value == "":
                continue
            values[attr] = value

        default = cls()
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            key = next(k for k, a in CONTEXT_KEYS.items() if a == f.name)
            current = getattr(default, f.name)
            if isinstance(current, bool):
                kwargs[f.name] = _as_bool(key, value)
            elif isinstance(current, int):
                kwargs[f.name] = _as_int(key, value, minimum=1)
            elif isinstance(current, Path):
                path = Path(str(value)).expanduser()
                kwargs[f.name] = path if path.is_absolute() else (CDK_DIR / path).resolve()
            elif isinstance(current, list):
                kwargs[f.name] = _as_list(value)
            else:
                kwargs[f.name] = _as_opt_str(value)
        settings = cls(**kwargs)
        settings._validate()
        return settings

    def _validate(self) -> None:
        by_lower = {c.lower(): c for c in DATABASE_CHOICES}
        chosen = by_lower.get(self.selected_database.lower())
        if chosen is None:
            raise ConfigError(
                f"context selectedDatabase={self.selected_database!r}: expected one of "
                + ", ".join(DATABASE_CHOICES)
            )
        object.__setattr__(self, "selected_database", chosen)
        if self.mover not in MOVER_CHOICES:
            raise ConfigError(f"context mover={self.mover!r}: expected one of {MOVER_CHOICES}")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,100}", self.stack_name):
            raise ConfigError(f"context stackName={self.stack_name!r}: letters, digits, '-'")
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", self.temp_identifier_prefix):
            raise ConfigError(
                f"context tempIdentifierPrefix={self.temp_identifier_prefix!r}: lowercase letters,"
                " digits and '-', starting with a letter, at most 31 characters"
            )
        if not self.artifact_prefix.endswith("/") or self.artifact_prefix.startswith("/"):
            raise ConfigError(
                f"context artifactPrefix={self.artifact_prefix!r}: must end with '/' and not"
                " start with '/'"
            )
        if self.has_demo_database and self.source_identifier:
            raise ConfigError(
                "context sourceIdentifier is only for selectedDatabase=None (an existing"
                f" database); selectedDatabase={self.selected_database} creates its own"
            )
        if self.source_secret_arn and not self.source_secret_arn.startswith("arn:"):
            raise ConfigError(
                f"context sourceSecretArn={self.source_secret_arn!r}: expected the full ARN"
            )
        if self.source_security_group_id and not self.source_security_group_id.startswith("sg-"):
            raise ConfigError(
                f"context sourceSecurityGroupId={self.source_security_group_id!r}: expected sg-..."
            )


# context key -> Settings attribute
CONTEXT_KEYS: dict[str, str] = {
    "stackName": "stack_name",
    "selectedDatabase": "selected_database",
    "sourceIdentifier": "source_identifier",
    "sourceSecretArn": "source_secret_arn",
    "sourceSecurityGroupId": "source_security_group_id",
    "sourceKmsKeyArn": "source_kms_key_arn",
    "deletionProtection": "deletion_protection",
    "dbInstanceClass": "db_instance_class",
    "loadDemoData": "load_demo_data",
    "pg8000LayerDir": "pg8000_layer_dir",
    "vpcCidr": "vpc_cidr",
    "flowLogs": "flow_logs",
    "createDmsRoles": "create_dms_roles",
    "imageUri": "image_uri",
    "dockerContext": "docker_context",
    "dockerFile": "docker_file",
    "artifactPrefix": "artifact_prefix",
    "artifactRetentionDays": "artifact_retention_days",
    "logRetentionDays": "log_retention_days",
    "tempInstanceClass": "temp_instance_class",
    "dmsInstanceClass": "dms_instance_class",
    "mover": "mover",
    "tempIdentifierPrefix": "temp_identifier_prefix",
    "enableInstanceRestore": "enable_instance_restore",
    "deployDagster": "deploy_dagster",
    "dagsterImageUri": "dagster_image_uri",
    "dagsterRolePrincipals": "dagster_role_principals",
}
