"""Cleanup of a schema restore: what the run recorded is removed (the temporary server always, the
restored schemas only after a failure), also by the cleanup job after a crash."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.backends.protocols import Fleet
from restore_assets.core.audit import AuditConflict, NotOwner, check_restore_id, owner_gone
from restore_assets.core.schema_restore.drop_restored import schema_is_ours
from restore_assets.core.schema_restore.services import ARTIFACT_RESOURCE, SCHEMA_RESOURCE, Services

log = logging.getLogger("restore_assets")


def cleanup(services: Services, restore_id: str, failed: bool) -> dict[str, Any]:
    """Remove what the run created: always the temporary server; the restored schemas only on failure."""
    removed: list[str] = []
    kept: list[str] = []
    errors: list[str] = []
    for res in services.audit.resources(restore_id):
        kind, ident, details = res["kind"], res["identifier"], res["details"]
        try:
            if kind == SCHEMA_RESOURCE:
                if not failed:
                    kept.append(ident)
                    continue
                if drop_restored_schema(services.fleet, details):
                    removed.append(ident)
                services.audit.resource_deleted(restore_id, kind, ident)
            elif kind == ARTIFACT_RESOURCE:
                if services.keep_artifacts:
                    kept.append(f"artifacts:{ident}")
                    continue
                services.artifacts.purge(restore_id)
                services.audit.resource_deleted(restore_id, kind, ident)
                removed.append(f"artifacts:{ident}")
            else:
                services.fleet.delete_resource(kind, ident, details)
                services.audit.resource_deleted(restore_id, kind, ident)
                removed.append(f"{kind}:{ident}")
        except Exception as exc:  # noqa: BLE001 - one failing delete must not stop the others
            errors.append(f"{kind}:{ident}: {exc}")
            log.error("cleanup of %s %s failed: %s", kind, ident, exc)
    return {"removed": removed, "kept": kept, "errors": errors}


def drop_restored_schema(fleet: Fleet, details: dict[str, Any]) -> bool:
    """Drop a restored schema only if it is the one this run created (same oid or creating xid)."""
    database, schema = details["database"], details["schema"]
    try:
        conn = psycopg.connect(fleet.production_dsn(database), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc):
            return False
        raise
    with conn:
        row = conn.execute(
            "SELECT oid::int, xmin::text::bigint FROM pg_catalog.pg_namespace WHERE nspname = %s",
            (schema,),
        ).fetchone()
        if row is None:
            return False
        if not schema_is_ours(details, *row):
            log.warning(
                "schema %s.%s was not created by this restore: left in place", database, schema
            )
            return False
        conn.execute("SET lock_timeout = '30s'")
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        return True


def cleanup_restore(
    services: Services, restore_id: str, run_status: str | None = None
) -> dict[str, Any]:
    """The cleanup job's core: remove what a crashed, failed or terminated run left; mark it failed.

    A running record is cleaned only when its owner has ended or is provably dead (run_status: the
    Dagster status of the owner's run, when the caller can see it); otherwise NotOwner names the
    owner. The restored schemas of a succeeded (or rejected) restore are never dropped.
    """
    check_restore_id(restore_id)
    rec = services.audit.get(restore_id)
    if rec["status"] == "running":
        gone, why = owner_gone(rec.get("owner"), run_status)
        if not gone:
            raise NotOwner(
                f"restore {restore_id} is running and belongs to {why}: cleanup refused."
                " Clean up after that run has ended."
            )
    out = cleanup(services, restore_id, failed=rec["status"] in ("running", "failed"))
    if rec["status"] == "running":
        try:
            services.audit.close(
                restore_id,
                "failed",
                "run ended without finishing (crashed or terminated); cleaned up",
            )
        except AuditConflict:  # its owner closed it meanwhile: that status stands
            pass
    return out
