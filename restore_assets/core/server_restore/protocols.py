"""The protocol an instance-level backend implements (the local fleet, or RDS through boto3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from restore_assets.core.server_restore.model import Described

Record = Callable[[str, str, dict[str, Any]], None]
"""Callback (kind, identifier, details) that records a resource in the audit log before it is used."""


@dataclass(frozen=True)
class InPlaceRestore:
    """What a backend restores in place: the original, the snapshot, the run's names, the recorder."""

    source: Described  # the original server, as validate described it
    snapshot: dict[str, Any]  # the one just taken, or the one the request named
    names: dict[str, Any]  # every name the run uses (checked before any call)
    record: Record  # records the restored target before it is relied on


class InstanceBackend(Protocol):
    """Snapshot, rename, restore in place, delete and roll back one database server."""

    name: str

    def resolve_identifier(self, identifier: str | None) -> str:
        """The server a run acts on: the given identifier or the configured default."""
        ...

    def check_names(self, identifier: str, suffix: str) -> dict[str, Any]:
        """Static checks of every name the run will use (before any call); return them."""
        ...

    def describe(self, identifier: str) -> Described:
        """The server and the configuration a restore must preserve (read-only calls)."""
        ...

    def check_snapshot(self, source: Described, snapshot_id: str) -> dict[str, Any]:
        """Refuse an unknown or unusable snapshot; describe it (read-only calls)."""
        ...

    def check_free(self, source: Described, names: dict[str, Any]) -> list[str]:
        """Refuse names already taken; return warnings (read-only calls)."""
        ...

    def create_snapshot(
        self, source: Described, snapshot_identifier: str | None, record: Record, timeout: float
    ) -> dict[str, Any]:
        """Take a snapshot and wait until it is available (within timeout seconds)."""
        ...

    def export_snapshot(self, snapshot: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Export a snapshot to S3 and follow the export to completion or failure."""
        ...

    def set_aside(self, source: Described, names: dict[str, Any], record: Record) -> dict[str, Any]:
        """Move the original out of the way (rename it) and wait until it is done."""
        ...

    def restore(self, job: InPlaceRestore) -> dict[str, Any]:
        """Restore the snapshot under the original's name with the original's configuration."""
        ...

    def wait_restored(
        self, source: Described, names: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Wait until the restored server (and every member) is available; verify it."""
        ...

    def delete_old(
        self, source: Described, names: dict[str, Any], keep_old: bool, skip_final_snapshot: bool
    ) -> dict[str, Any]:
        """Remove the renamed original (final snapshot first unless skipped), or keep it."""
        ...

    def rollback(
        self, source: Described, names: dict[str, Any], resources: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Delete a half-restored target and put the original back under its name (idempotent)."""
        ...
