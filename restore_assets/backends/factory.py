"""The one place a backend is chosen from configuration, for the schema and the server restore.

The backend mapping (backend.yaml plus the CLI's or the Dagster resource's settings) names the
backend (`backend: local` by default, or `aws`); its package's entries build what a run uses:
`build_services` (a schema restore's Services), `server_restore_services` (a server restore's),
`audit_log` (the log both write). A typo in the mapping is refused, naming the nearest key.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger("restore_assets.backends.factory")
BACKENDS = ("local", "aws")  # a package restore_assets.backends.<name> each

DEFAULT_ROOT_ENV = "RESTORE_ASSETS_ROOT"


def default_root() -> str:
    """The local fleet root: $RESTORE_ASSETS_ROOT, else .restore-assets in the current directory."""
    return os.environ.get(DEFAULT_ROOT_ENV) or str(Path(".restore-assets").resolve())


# the keys of the backend configuration mapping: backend.yaml's top level plus the settings the
# CLI and the Dagster resource set
BACKEND_KEYS = frozenset(
    {
        "backend",
        "root",
        "config_file",
        "copy_workers",
        "provision_timeout_s",
        "lock_timeout",
        "keep_artifacts",
        "html_report",
        "aws",
        "alerts",
        "instance_restore",
    }
)
INSTANCE_RESTORE_KEYS = frozenset(
    {
        "wait_timeout_s",
        "snapshot_timeout_s",
        "export_timeout_s",
        "post_restore_snapshot",
        "final_backup",
    }
)
# the sections nested one level deeper (read by the server restore's export and the alerts)
NESTED_KEYS = {
    ("aws", "snapshot_export"): frozenset({"s3_bucket", "s3_prefix", "iam_role_arn", "kms_key_id"}),
    ("alerts", "smtp"): frozenset(
        {"host", "port", "from", "to", "starttls", "username", "password_env"}
    ),
    ("alerts", "ses"): frozenset({"from", "to", "region_name"}),
}


def check_backend_keys(config: Mapping[str, Any]) -> None:
    """Refuse unknown keys of the backend configuration, each named with the nearest valid key."""
    from restore_assets.backends.aws.config import section_keys
    from restore_assets.core.alerts import KNOWN_KEYS as ALERTS_KEYS
    from restore_assets.core.keys import refuse_unknown_keys

    refuse_unknown_keys("the backend configuration", config, BACKEND_KEYS)
    for section, known in (
        ("aws", section_keys()),
        ("instance_restore", INSTANCE_RESTORE_KEYS),
        ("alerts", ALERTS_KEYS),
    ):
        if isinstance(config.get(section), Mapping):
            refuse_unknown_keys(
                f"the {section}: section of the backend configuration", config[section], known
            )
    for (section, sub), known in NESTED_KEYS.items():
        value = config.get(section)
        if isinstance(value, Mapping) and isinstance(value.get(sub), Mapping):
            refuse_unknown_keys(
                f"the {section}.{sub}: section of the backend configuration", value[sub], known
            )


def backend_package(config: Mapping[str, Any]) -> ModuleType:
    """The backend package a mapping names: its `services`, `server_restore_backend`, `audit_log`."""
    name = config.get("backend", "local")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: use 'local' or 'aws'")
    return importlib.import_module(f"restore_assets.backends.{name}")


def build_services(config: Mapping[str, Any]) -> Any:
    """The Services of a schema restore on the configured backend ('local' by default, or 'aws')."""
    check_backend_keys(config)
    return backend_package(config).services(config)


def audit_log(config: Mapping[str, Any]) -> Any:
    """The audit log of the configured backend (on AWS without aws.audit_table: the local one)."""
    audit = backend_package(config).audit_log(config)
    if audit is None:
        log.warning("no aws.audit_table configured: runs are recorded in the local SQLite log")
        return backend_package({"backend": "local"}).audit_log(config)
    return audit


def server_restore_backend(config: Mapping[str, Any]) -> Any:
    """The server restore backend (InstanceBackend) of the configured backend."""
    check_backend_keys(config)
    return backend_package(config).server_restore_backend(config)


def server_restore_services(
    config: Mapping[str, Any],
    *,
    backend: Any = None,
    audit: Any = None,
    notifier: Any = None,
) -> Any:
    """The InstanceServices of a server restore (backend, audit log, notifier, time limits)."""
    from restore_assets.backends.aws.alerts import notifier_from_settings
    from restore_assets.core.server_restore.steps import InstanceServices

    opts = config.get("instance_restore") or {}
    return InstanceServices(
        backend=backend or server_restore_backend(config),
        audit=audit or audit_log(config),
        notifier=notifier if notifier is not None else notifier_from_settings(config),
        wait_timeout=float(opts.get("wait_timeout_s", 3600)),
        snapshot_timeout=float(opts.get("snapshot_timeout_s", 3600)),
        export_timeout=float(opts.get("export_timeout_s", 6 * 3600)),
    )
