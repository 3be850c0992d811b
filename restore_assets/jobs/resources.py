"""Dagster resources: the backend a run uses, from configuration (the local fleet by default)."""

from __future__ import annotations

from typing import Any

import dagster as dg
import yaml

from restore_assets.backends.factory import build_services, check_backend_keys, default_root
from restore_assets.core.schema_restore.services import Services


class RestoreBackend(dg.ConfigurableResource):
    """Which backend runs the restore, and its settings (local fleet root, or a YAML file for AWS)."""

    backend: str = "local"
    root: str = ""
    config_file: str = ""
    copy_workers: int = 4
    provision_timeout_s: float = 900
    lock_timeout: str = "5s"
    keep_artifacts: bool = True

    def settings(self) -> dict[str, Any]:
        """The backend configuration mapping: the YAML file's content overridden by set fields."""
        cfg: dict[str, Any] = {}
        if self.config_file:
            with open(self.config_file) as fh:
                cfg = yaml.safe_load(fh) or {}
        check_backend_keys(cfg)  # a typo in the YAML is refused, naming the nearest key
        cfg.setdefault("backend", self.backend)
        cfg.update(
            {
                "root": self.root or cfg.get("root") or default_root(),
                "copy_workers": self.copy_workers,
                "provision_timeout_s": self.provision_timeout_s,
                "lock_timeout": self.lock_timeout,
                "keep_artifacts": self.keep_artifacts,
            }
        )
        return cfg

    def services(self) -> Services:
        """The Services (fleet, audit, artifacts, DDL task, mover) of the configured backend."""
        return build_services(self.settings())
