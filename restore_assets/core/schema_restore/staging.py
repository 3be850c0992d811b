"""Staging refresh: replace `<schema>_staging` copies without ever losing the previous one first.

1. Check every existing `<schema>_<suffix>` is a copy a restore recorded (its oid), before anything.
2. Restore the schemas to the latest point as `<schema>_<suffix>_new_<token>` (a normal restore: its
   own cleanup removes a partial copy when it fails; the previous staging copy is never touched).
3. Swap names in one transaction: the previous copy becomes `<schema>_<suffix>_old_<token>`, the new
   one `<schema>_<suffix>`, after checking each oid is the recorded one.
4. Drop each previous copy only when nothing outside it depends on it (pg_depend, the RESTRICT
   rule); otherwise keep it under its `_old_` name and list the dependents.

A failure before the swap leaves the previous copy in place and drops the new copy (proven ours
by its recorded oid, and only when nothing outside depends on it).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core import runner
from restore_assets.core.ddl.names import target_name
from restore_assets.core.errors import InvalidRequest, RestoreError
from restore_assets.core.schema_restore.services import SCHEMA_RESOURCE

log = logging.getLogger("restore_assets.core.schema_restore.staging")

STAGING_SUFFIX = "staging"
LOCK_TIMEOUT = "30s"

Restore = Callable[[dict[str, Any]], dict[str, Any]]
"""Runs one schema restore (request -> the runner's summary: restore_id, status, cause, ...)."""


class StagingError(RestoreError):
    """The staging refresh stopped; the previous staging copies are in place."""


@dataclass
class Copy:
    """One staging copy the tool recorded: where it is now and which restore made it."""

    schema: str
    oid: int
    restore_id: str
    identifier: str  # the audit resource identifier of the restore that created it


@dataclass
class StagingResult:
    """What a refresh did: the restore, the swapped names, the previous copies dropped or kept."""

    restore_id: str
    restore_time: str
    staging: dict[str, str] = field(default_factory=dict)  # schema -> <schema>_<suffix>
    dropped: list[str] = field(default_factory=list)
    kept: dict[str, list[str]] = field(default_factory=dict)  # old copy -> its dependents
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "restore_id": self.restore_id,
            "restore_time": self.restore_time,
            "staging": dict(self.staging),
            "dropped": list(self.dropped),
            "kept": {k: list(v) for k, v in self.kept.items()},
            "warnings": list(self.warnings),
        }


def latest_point(services: Any) -> str:
    """The latest restorable point of the fleet, ISO 8601 (the local fleet archives its WAL first)."""
    switch = getattr(services.fleet, "switch_wal", None)
    if callable(switch):
        switch()
    latest = services.fleet.describe().window.latest
    if latest is None:
        raise StagingError("no restorable point yet: take a snapshot first")
    return latest.isoformat()


def _oids(conn: psycopg.Connection, names: list[str]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT nspname, oid::int FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)", (names,)
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def recorded_copy(services: Any, database: str, schema: str, oid: int) -> Copy | None:
    """The staging copy of this oid a succeeded restore recorded (not marked deleted), if any."""
    for run in services.audit.history(limit=500):
        if run["kind"] != "schema_restore" or run["status"] != "succeeded":
            continue
        for res in services.audit.resources(run["restore_id"]):
            details = res.get("details") or {}
            if (
                res["kind"] == SCHEMA_RESOURCE
                and details.get("database") == database
                and details.get("oid") is not None
                and int(details["oid"]) == oid
            ):
                return Copy(schema, oid, run["restore_id"], res["identifier"])
    return None


def outside_dependents(conn: psycopg.Connection, schema: str) -> list[str]:
    """Objects outside the schema that depend on something inside it (views, foreign keys...)."""
    from restore_assets.core.schema_restore.drop_restored import outside_dependents as dependents

    return dependents(conn, [schema])


def _drop_if_free(
    conn: psycopg.Connection, services: Any, copy: Copy, result: StagingResult | None
) -> bool:
    """Drop one copy proven ours (same oid) when nothing outside depends on it; else keep it."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        now = _oids(conn, [copy.schema]).get(copy.schema)
        if now != copy.oid:
            message = f"{copy.schema} is no longer the copy restore {copy.restore_id} made: kept"
            log.warning("%s", message)
            if result is not None:
                result.warnings.append(message)
            return False
        deps = outside_dependents(conn, copy.schema)
        if deps:
            message = (
                f"kept the previous staging copy as {copy.schema}: {len(deps)} object(s) outside"
                f" it depend on it ({'; '.join(deps)}). Point them at the new copy, then drop it"
                f" with `restore-assets drop-restored --restore-id {copy.restore_id}` or by hand"
            )
            log.warning("%s", message)
            if result is not None:
                result.kept[copy.schema] = deps
                result.warnings.append(message)
            return False
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(copy.schema)))
    services.audit.resource_deleted(copy.restore_id, SCHEMA_RESOURCE, copy.identifier)
    return True


def check_previous(services: Any, database: str, finals: list[str]) -> dict[str, Copy]:
    """The existing staging copies, each proven a restore's by its oid; refuse any other schema."""
    with psycopg.connect(services.fleet.production_dsn(database), connect_timeout=10) as conn:
        existing = _oids(conn, finals)
    previous: dict[str, Copy] = {}
    for name, oid in existing.items():
        copy = recorded_copy(services, database, name, oid)
        if copy is None:
            raise StagingError(
                f"schema {database}.{name} exists but no restore recorded creating it (oid {oid}):"
                " the staging refresh never replaces it; drop or rename it yourself, or choose"
                " another staging suffix"
            )
        previous[name] = copy
    return previous


def refresh_staging(
    services: Any,
    database: str,
    schemas: list[str],
    restore: Restore,
    suffix: str = STAGING_SUFFIX,
    compare: bool = False,
) -> StagingResult:
    """Restore the schemas as new copies, swap them in under `<schema>_<suffix>` in one
    transaction, then drop the previous copies that nothing outside depends on."""
    if not schemas:
        raise InvalidRequest("the staging refresh needs at least one schema")
    token = secrets.token_hex(3)
    finals = {s: target_name(s, suffix) for s in schemas}
    news = {s: target_name(s, f"{suffix}_new_{token}") for s in schemas}
    olds = {s: target_name(s, f"{suffix}_old_{token}") for s in schemas}
    previous = check_previous(services, database, list(finals.values()))  # before any change
    point = latest_point(services)
    out = restore(
        {
            "database": database,
            "schemas": list(schemas),
            "restore_time": point,
            "suffix": f"{suffix}_new_{token}",
            "compare": compare,
        }
    )
    rid = out.get("restore_id", "?")
    if out.get("status") != "succeeded":
        raise StagingError(
            f"staging restore {rid} {out.get('status')}: {out.get('cause')}; the previous staging"
            " copies are unchanged"
        )
    result = StagingResult(rid, point)
    created: dict[str, Copy] = {}
    try:
        with psycopg.connect(services.fleet.production_dsn(database), connect_timeout=10) as conn:
            now = _oids(conn, list(news.values()))
            for schema, new in news.items():
                ident = f"{database}.{new}"
                recorded = next(
                    (
                        r
                        for r in services.audit.resources(rid)
                        if r["kind"] == SCHEMA_RESOURCE and r["identifier"] == ident
                    ),
                    None,
                )
                oid = (recorded or {}).get("details", {}).get("oid")
                if oid is None or now.get(new) != int(oid):
                    raise StagingError(f"{database}.{new} is not the copy restore {rid} recorded")
                created[schema] = Copy(new, int(oid), rid, ident)
            runner.phase_hook(rid, "staging_swap", "before")  # no-op (tests install faults)
            swap(conn, services, database, finals, news, olds, previous, created)
    except Exception as exc:
        _discard(services, database, created)
        raise StagingError(
            f"staging refresh failed before the swap completed: {exc}; the previous staging"
            " copies are unchanged"
        ) from exc
    result.staging = dict(finals)
    with psycopg.connect(
        services.fleet.production_dsn(database), autocommit=True, connect_timeout=10
    ) as conn:
        for final, copy in previous.items():
            old = Copy(olds[_schema_of(finals, final)], copy.oid, copy.restore_id, copy.identifier)
            try:
                if _drop_if_free(conn, services, old, result):
                    result.dropped.append(final)
            except psycopg.Error as exc:
                message = f"kept the previous staging copy as {old.schema}: drop failed ({exc})"
                log.warning("%s", message)
                result.warnings.append(message)
    return result


def _schema_of(finals: dict[str, str], final: str) -> str:
    return next(s for s, f in finals.items() if f == final)


def swap(
    conn: psycopg.Connection,
    services: Any,
    database: str,
    finals: dict[str, str],
    news: dict[str, str],
    olds: dict[str, str],
    previous: dict[str, Copy],
    created: dict[str, Copy],
) -> None:
    """In one transaction: previous `<schema>_<suffix>` -> `_old_<token>`, new -> `<schema>_<suffix>`
    (each oid checked again inside the transaction); then record the new names."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        now = _oids(conn, [*finals.values(), *news.values()])
        for schema, final in finals.items():
            prev = previous.get(final)
            if now.get(final) != (prev.oid if prev else None):
                raise StagingError(f"{database}.{final} changed since the refresh checked it")
            if now.get(news[schema]) != created[schema].oid:
                raise StagingError(f"{database}.{news[schema]} changed since it was restored")
            if prev is not None:
                conn.execute(
                    sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                        sql.Identifier(final), sql.Identifier(olds[schema])
                    )
                )
            conn.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(news[schema]), sql.Identifier(final)
                )
            )
    for schema, final in finals.items():
        copy = created[schema]
        services.audit.resource(
            copy.restore_id,
            SCHEMA_RESOURCE,
            f"{database}.{final}",
            {"database": database, "schema": final, "oid": copy.oid, "renamed_from": copy.schema},
        )
        services.audit.resource_deleted(copy.restore_id, SCHEMA_RESOURCE, copy.identifier)


def _discard(services: Any, database: str, created: dict[str, Copy]) -> None:
    """After a failed swap: drop the new copies (ours by oid, nothing outside depending)."""
    if not created:
        return
    try:
        with psycopg.connect(
            services.fleet.production_dsn(database), autocommit=True, connect_timeout=10
        ) as conn:
            for copy in created.values():
                _drop_if_free(conn, services, copy, None)
    except Exception as exc:  # noqa: BLE001 - the refresh already failed; say what is left
        log.error("could not remove the new staging copies %s: %s", list(created), exc)
