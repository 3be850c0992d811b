"""What a schema restore runs on: the DDL task and mover protocols, the Services container, the
kinds of resources it records, and the binding of remote components to one restore."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from restore_assets.backends.protocols import ArtifactStore, Fleet, Notifier
from restore_assets.core.audit import AuditLog

SCHEMA_RESOURCE = "restored-schema"
ARTIFACT_RESOURCE = "artifacts"
PHASES = (
    "validate",
    "topology",
    "provision",
    "ddl",
    "pre",
    "copy",
    "post",
    "compare",
    "cleanup",
    "finish",
)


@dataclass(frozen=True)
class DdlBatch:
    """Statements to run on one database, each guarded to stay inside the allowed schemas."""

    dsn: str
    statements: list[str]
    allowed_schemas: set[str]


class DdlTask(Protocol):
    """Extracts the DDL of schemas from a server and applies statements to one (subprocess or ECS)."""

    def extract(self, dsn: str, schemas: list[str], suffix: str) -> Any:
        """A DdlBundle (pre, post, full, warnings) of the schemas, renamed to `<schema>_<suffix>`."""
        ...

    def apply(self, batch: DdlBatch, on_start: Callable[[int], None]) -> None:
        """Guard and apply statements in one transaction; on_start gets the transaction's xid."""
        ...

    def apply_post(self, batch: DdlBatch) -> dict[str, int]:
        """Guard and apply the post statements (per-table builds may run in parallel)."""
        ...


@dataclass(frozen=True)
class SchemaCopy:
    """What a mover copies: one schema of the temporary server into its restored schema."""

    source_dsn: str  # the temporary server's database
    target_dsn: str  # the production database
    schema: str
    target_schema: str
    tables: list[str] | None = None  # None: every table


class Mover(Protocol):
    """Copies the rows of one schema from the temporary server into the restored schema."""

    def copy(self, job: SchemaCopy, progress: Callable[[Any], None] | None) -> Any:
        """Copy every (or the listed) table; return a CopyReport."""
        ...


@dataclass
class Services:
    """The backend implementations one restore runs on, chosen in one place (definitions/CLI)."""

    fleet: Fleet
    audit: AuditLog
    artifacts: ArtifactStore
    ddl: DdlTask
    mover: Mover
    notifier: Notifier | None = None
    provision_timeout: float = 900
    keep_artifacts: bool = True
    render_report: Callable[[str, str, dict[str, Any]], str] | None = (
        None  # -> HTML report path/URI
    )


def recorder(services: Services, restore_id: str) -> Callable[[str, str, dict[str, Any]], None]:
    """A callback that records a resource of this restore in the audit log (before it is created)."""

    def record(kind: str, identifier: str, details: dict[str, Any]) -> None:
        services.audit.resource(restore_id, kind, identifier, details)

    return record


def bound(services: Services, component: Any, restore_id: str | None, stage: str) -> Any:
    """The component bound to one restore when it supports `bind_restore`, else itself.

    Remote backends (the ECS task, DMS) name, tag and record what they create after the restore
    id and stage; local components have no `bind_restore` and are returned unchanged.
    """
    bind = getattr(component, "bind_restore", None)
    if bind is None or not restore_id:
        return component
    return bind(restore_id, recorder(services, restore_id), stage)
