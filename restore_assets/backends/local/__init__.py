"""The local backend: PostgreSQL clusters on this machine (fleet, WAL archive, base backups).

Its entries, called by `backends/factory` (the one place a backend is chosen) when the backend
mapping says `backend: local` (the default): `services(config)` for a schema restore,
`server_restore_backend(config)` for a server restore, `audit_log(config)` for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def root_of(config: Mapping[str, Any]) -> Path:
    """The fleet root of a backend mapping (`root:`, else the default root)."""
    from restore_assets.backends.factory import default_root

    return Path(config.get("root") or default_root())


def audit_log(config: Mapping[str, Any]) -> Any:
    """The SQLite audit log under the fleet root (`<root>/audit.sqlite`)."""
    from restore_assets.backends.local.audit import SqliteAuditLog

    return SqliteAuditLog(root_of(config) / "audit.sqlite")


def services(config: Mapping[str, Any]) -> Any:
    """The Services of a schema restore on the local fleet, from the backend mapping."""
    from restore_assets.backends.local.artifacts import LocalArtifacts
    from restore_assets.backends.local.fleet import LocalFleet
    from restore_assets.backends.local.manifest import Manifest
    from restore_assets.backends.local.tasks import CopyMover, LocalDdlTask
    from restore_assets.core.schema_restore.services import Services

    root = root_of(config)
    audit = audit_log(config)
    workers = int(config.get("copy_workers", 4))
    return Services(
        fleet=LocalFleet(root),
        audit=audit,
        artifacts=LocalArtifacts(root / "artifacts", manifest=Manifest(root)),
        ddl=LocalDdlTask(lock_timeout=str(config.get("lock_timeout", "5s")), workers=workers),
        mover=CopyMover(workers=workers),
        provision_timeout=float(config.get("provision_timeout_s", 900)),
        keep_artifacts=bool(config.get("keep_artifacts", True)),
        render_report=report_renderer(root / "artifacts", audit)
        if config.get("html_report", True)
        else None,
    )


def server_restore_backend(config: Mapping[str, Any]) -> Any:
    """The server restore backend of the local fleet (restore in place on the same port)."""
    from restore_assets.backends.local.fleet import LocalFleet
    from restore_assets.backends.local.server_restore import LocalInstanceBackend

    opts = config.get("instance_restore") or {}
    return LocalInstanceBackend(
        LocalFleet(root_of(config)),
        post_restore_snapshot=bool(opts.get("post_restore_snapshot", True)),
        # a copy of the set-aside data directory before it is removed (the final snapshot)
        final_backup=bool(opts.get("final_backup", True)),
    )


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
