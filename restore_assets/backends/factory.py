"""Backends: where a restore runs. Chosen in one place from configuration (`build_services`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def build_services(config: dict[str, Any]) -> Any:
    """The Services of one backend ('local' by default, or 'aws') from a configuration mapping."""
    from restore_assets.core.schema_restore.phases import Services

    check_backend_keys(config)
    backend = config.get("backend", "local")
    if backend == "local":
        from restore_assets.backends.local.artifacts import LocalArtifacts
        from restore_assets.backends.local.fleet import LocalFleet
        from restore_assets.backends.local.manifest import Manifest
        from restore_assets.backends.local.tasks import CopyMover, LocalDdlTask
        from restore_assets.core.audit import SqliteAuditLog

        root = Path(config.get("root") or default_root())
        audit = SqliteAuditLog(root / "audit.sqlite")
        return Services(
            fleet=LocalFleet(root),
            audit=audit,
            artifacts=LocalArtifacts(root / "artifacts", manifest=Manifest(root)),
            ddl=LocalDdlTask(
                lock_timeout=str(config.get("lock_timeout", "5s")),
                workers=int(config.get("copy_workers", 4)),
            ),
            mover=CopyMover(workers=int(config.get("copy_workers", 4))),
            provision_timeout=float(config.get("provision_timeout_s", 900)),
            keep_artifacts=bool(config.get("keep_artifacts", True)),
            render_report=report_renderer(root / "artifacts", audit)
            if config.get("html_report", True)
            else None,
        )
    if backend == "aws":
        from restore_assets.backends.aws import aws_services

        return aws_services(config)
    raise ValueError(f"unknown backend {backend!r}: use 'local' or 'aws'")


def report_renderer(artifact_dir: Path, audit: Any) -> Any:
    """A Services.render_report that writes the comparison notebook's HTML beside the run's artifacts."""

    def render(restore_id: str, schema: str, comparison: dict[str, Any]) -> str:
        from restore_assets.backends.local.artifacts import owner_only
        from restore_assets.core.notebooks import render_comparison_report

        record = audit.get(restore_id)
        with owner_only():  # the executed notebook and its HTML hold sample keys
            out = render_comparison_report(
                artifact_dir / restore_id, comparison, record, name=f"comparison-{schema}"
            )
        return str(out)

    return render
