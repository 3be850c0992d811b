"""Row recovery over the services: scope from a restore's audit record, plan, apply (audited), undo."""

from __future__ import annotations

import getpass
import json
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core.audit import new_restore_id
from restore_assets.core.compare.catalog import schema_oid
from restore_assets.core.compare.details import cut_value
from restore_assets.core.compare.engine import begin_read_only
from restore_assets.core.compare.model import CompareError
from restore_assets.core.recover.apply import apply_plan
from restore_assets.core.recover.plan import (
    Options,
    RecoveryPlan,
    RecoveryRefused,
    plan_recovery,
)
from restore_assets.core.recover.sql import from_, in_keys, match, sides_for
from restore_assets.core.recover.undo import undo_recovery

KIND = "row_recovery"
UNDO_KIND = "row_recovery_undo"
UNDO_RESOURCE = "recovery-undo-schema"
SCHEMA_RESOURCE = "restored-schema"  # as the schema restore records its copies


def recovery_scope(services: Any, restore_id: str) -> tuple[str, dict[str, str]]:
    """(database, {live schema: restored schema}) of a succeeded restore, its copies still there."""
    try:
        record = services.audit.get(restore_id)
    except KeyError:
        raise CompareError(
            f"unknown restore id {restore_id!r}: see `restore-assets history`"
        ) from None
    if record.get("kind") != "schema_restore" or record.get("status") != "succeeded":
        raise CompareError(
            f"restore {restore_id} is a {record.get('kind')} run with status"
            f" {record.get('status')}: rows are recovered from a succeeded schema restore only"
        )
    database = record["inputs"]["database"]
    pairs = dict((record.get("result") or {}).get("restored") or {})
    oids = {
        r["details"].get("schema"): r["details"].get("oid")
        for r in record["resources"]
        if r["kind"] == SCHEMA_RESOURCE and r["details"].get("oid") and not r.get("deleted_at")
    }
    if not pairs:
        raise CompareError(f"restore {restore_id} records no restored schema")
    dsn = services.fleet.production_dsn(database)
    with psycopg.connect(dsn) as conn:
        for restored in pairs.values():
            found = schema_oid(conn, restored)
            if found is None or found != oids.get(restored):
                raise CompareError(
                    f"the restored copy {database}.{restored} of restore {restore_id} is gone or"
                    f" is not the schema that restore created (recorded oid {oids.get(restored)},"
                    f" found {found}): nothing to recover from"
                )
    return database, pairs


def plan(
    services: Any, restore_id: str, options: Options, schemas: list[str] | None = None
) -> RecoveryPlan:
    """The recovery plan of a restore's schemas (all of them, or the named live schemas)."""
    database, pairs = recovery_scope(services, restore_id)
    if schemas:
        unknown = [s for s in schemas if s not in pairs]
        if unknown:
            raise CompareError(f"restore {restore_id} did not restore {', '.join(unknown)}")
        pairs = {s: pairs[s] for s in schemas}
    recovery_id = new_restore_id("rec")
    suffix = recovery_id.split("-", 1)[1].replace("-", "").lower()
    return plan_recovery(
        services.fleet.production_dsn(database),
        pairs,
        options,
        recovery_id=recovery_id,
        restore_id=restore_id,
        undo_suffix=suffix,
    )


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def apply(services: Any, recovery: RecoveryPlan) -> dict[str, Any]:
    """Apply a plan as one transaction; audit who, when, counts; keep its plan and SQL as artifacts."""
    if recovery.refused:
        raise RecoveryRefused(f"the plan is refused: {recovery.refused}")
    rid = recovery.recovery_id
    started = datetime.now(UTC).isoformat()
    t0 = time.monotonic()
    services.audit.open(
        KIND,
        {
            "restore_id": recovery.restore_id,
            "database": recovery.database,
            "schemas": [s.live_schema for s in recovery.schemas],
            "options": recovery.to_dict()["options"],
            "user": _who(),
        },
        rid,
    )
    artifacts = {
        "recovery-plan.json": services.artifacts.put(
            rid, "recovery-plan.json", json.dumps(recovery.to_dict(), indent=2, default=str)
        ),
        "recovery-plan.sql": services.artifacts.put(rid, "recovery-plan.sql", recovery.sql),
    }
    dsn = services.fleet.production_dsn(recovery.database)

    def on_start(xid: int) -> None:
        for s in recovery.schemas:
            if s.order:
                services.audit.resource(
                    rid,
                    UNDO_RESOURCE,
                    f"{recovery.database}.{s.undo_schema}",
                    {"database": recovery.database, "schema": s.undo_schema, "xid": xid},
                )

    try:
        result = apply_plan(dsn, recovery, on_start=on_start)
    except CompareError as exc:
        for s in recovery.schemas:  # the transaction rolled back: the undo schema never existed
            services.audit.resource_deleted(
                rid, UNDO_RESOURCE, f"{recovery.database}.{s.undo_schema}"
            )
        services.audit.phase(rid, "apply", "failed", started_at=started, error=str(exc))
        services.audit.close(rid, "failed", str(exc))
        raise
    for schema, oid in result["undo_schemas"].items():
        services.audit.resource(
            rid,
            UNDO_RESOURCE,
            f"{recovery.database}.{schema}",
            {"database": recovery.database, "schema": schema, "oid": oid},
        )
    artifacts["recovery-applied.sql"] = services.artifacts.put(
        rid, "recovery-applied.sql", "\n".join(result["sql"]) + "\n"
    )
    artifacts["recovery-applied.json"] = services.artifacts.put(
        rid, "recovery-applied.json", json.dumps(recovery.to_dict(), indent=2, default=str)
    )
    summary = {
        "recovery_id": rid,
        "restore_id": recovery.restore_id,
        "database": recovery.database,
        "user": _who(),
        "applied_at": datetime.now(UTC).isoformat(),
        "seconds": round(time.monotonic() - t0, 3),
        "tables": result["tables"],
        "moved_since_plan": result["moved_since_plan"],
        "undo_schemas": result["undo_schemas"],
        "artifacts": artifacts,
    }
    services.audit.phase(
        rid, "apply", "succeeded", started_at=started, metadata={"tables": result["tables"]}
    )
    services.audit.update(rid, result=summary)
    services.audit.close(rid, "succeeded")
    return summary


def undo(services: Any, recovery_id: str, *, triggers: bool = False) -> dict[str, Any]:
    """Put back the rows a recovery changed (refused if live moved since, or already undone)."""
    try:
        record = services.audit.get(recovery_id)
    except KeyError:
        raise CompareError(
            f"unknown recovery id {recovery_id!r}: see `restore-assets history`"
        ) from None
    if record.get("kind") != KIND or record.get("status") != "succeeded":
        raise CompareError(
            f"{recovery_id} is a {record.get('kind')} run with status {record.get('status')}:"
            " only a succeeded recovery can be undone"
        )
    recovery = RecoveryPlan.from_dict(
        json.loads(services.artifacts.get(recovery_id, "recovery-applied.json"))
    )
    oids = {
        r["details"]["schema"]: r["details"].get("oid")
        for r in record["resources"]
        if r["kind"] == UNDO_RESOURCE and r["details"].get("oid") and not r.get("deleted_at")
    }
    uid = services.audit.open(
        UNDO_KIND,
        {"recovery_id": recovery_id, "triggers": triggers, "user": _who()},
        new_restore_id("undo"),
    )
    started = datetime.now(UTC).isoformat()
    dsn = services.fleet.production_dsn(recovery.database)
    try:
        out = undo_recovery(dsn, recovery, oids, triggers=triggers)
    except CompareError as exc:
        services.audit.phase(uid, "undo", "failed", started_at=started, error=str(exc))
        services.audit.close(uid, "failed", str(exc))
        raise
    out = {"undo_id": uid, "recovery_id": recovery_id, "user": _who(), **out}
    services.audit.phase(uid, "undo", "succeeded", started_at=started, metadata=out)
    services.audit.update(uid, result=out)
    services.audit.close(uid, "succeeded")
    return out


def samples(
    services: Any, recovery: RecoveryPlan, *, limit: int = 5, width: int = 120
) -> dict[str, dict[str, Any]]:
    """The first rows of each table's inserts (in full) and updates (restored | live), values cut."""
    out: dict[str, dict[str, Any]] = {}
    with psycopg.connect(services.fleet.production_dsn(recovery.database)) as conn:
        begin_read_only(conn)
        for s in recovery.schemas:
            if not s.order:
                continue
            sides = sides_for(conn, s)
            for name in s.order:
                tp, side = s.tables[name], sides[name]
                order = sql.SQL(", ").join(sql.Identifier("r", k) for k in tp.key)

                def as_text(alias: str, columns: list[str]) -> sql.Composable:
                    # values as PostgreSQL prints them (numeric scale, timestamps), not as JSON
                    return sql.SQL("pg_catalog.jsonb_build_object({})").format(
                        sql.SQL(", ").join(
                            sql.SQL("{}, ({})::text").format(
                                sql.Literal(c), sql.Identifier(alias, c)
                            )
                            for c in columns
                        )
                    )

                rcols = [c.name for c in side.rt.columns][:50]  # jsonb_build_object: 100 args
                inserted = conn.execute(
                    sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
                        as_text("r", rcols),
                        from_(s.restored_schema, side.rt, "r"),
                        in_keys("r", tp.inserts[:limit], tp.key, tp.restored_key_types),
                        order,
                    )
                ).fetchall()
                shown = (tp.key + tp.update_columns)[:50]
                updated = conn.execute(
                    sql.SQL("SELECT {}, {} FROM {} JOIN {} ON {} WHERE {} ORDER BY {}").format(
                        as_text("r", shown),
                        as_text("l", shown),
                        from_(s.restored_schema, side.rt, "r"),
                        from_(s.live_schema, side.lt, "l"),
                        match("r", tp.key, "l", tp.key, side.same(tp.key)),
                        in_keys("r", tp.updates[:limit], tp.key, tp.restored_key_types),
                        order,
                    )
                ).fetchall()
                out[f"{s.live_schema}.{name}"] = {
                    "inserts_total": len(tp.inserts),
                    "inserts": [
                        {k: cut_value(v, width) for k, v in r.items()} for (r,) in inserted
                    ],
                    "updates_total": len(tp.updates),
                    "updates": [
                        {
                            "key": {k: r[k] for k in tp.key},
                            "columns": {
                                c: [cut_value(r.get(c), width), cut_value(lv.get(c), width)]
                                for c in tp.update_columns
                                if r.get(c) != lv.get(c)
                            },
                        }
                        for r, lv in updated
                    ],
                }
    return out


def drop_undo(services: Any, recovery_id: str) -> dict[str, Any]:
    """Drop a recovery's undo schemas, each only if it is the one the recovery created (oid/xid)."""
    from restore_assets.core.schema_restore.drop_restored import (
        outside_dependents,
        schema_identity,
        schema_is_ours,
    )

    try:
        record = services.audit.get(recovery_id)
    except KeyError:
        raise CompareError(f"unknown recovery id {recovery_id!r}") from None
    if record.get("kind") != KIND:
        raise CompareError(f"{recovery_id} is a {record.get('kind')} run, not a recovery")
    started = datetime.now(UTC).isoformat()
    dropped: list[str] = []
    gone: list[str] = []
    by_identifier: dict[str, dict[str, Any]] = {}
    for r in services.audit.resources(recovery_id):  # newest first: the record with the oid
        if r["kind"] == UNDO_RESOURCE:
            by_identifier.setdefault(r["identifier"], r["details"])
    for ident, details in by_identifier.items():
        database, schema = details["database"], details["schema"]
        with psycopg.connect(services.fleet.production_dsn(database), connect_timeout=10) as conn:
            conn.execute("SET LOCAL lock_timeout = '30s'")
            row = schema_identity(conn, schema)
            if row is None:
                gone.append(ident)
                continue
            if not schema_is_ours(details, *row):
                error = (
                    f"schema {ident} is not the undo schema recovery {recovery_id} created (its oid"
                    " and creating transaction differ): left in place"
                )
                services.audit.phase(
                    recovery_id, "drop_undo", "refused", started_at=started, error=error
                )
                raise CompareError(error)
            outside = outside_dependents(conn, [schema])
            if outside:
                error = f"{ident} cannot be dropped: {'; '.join(outside)} depend on it"
                services.audit.phase(
                    recovery_id, "drop_undo", "refused", started_at=started, error=error
                )
                raise CompareError(error + ". Drop or change those first.")
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            dropped.append(ident)
    for ident in dropped + gone:
        services.audit.resource_deleted(recovery_id, UNDO_RESOURCE, ident)
    out = {"recovery_id": recovery_id, "dropped": dropped, "already_gone": gone}
    services.audit.phase(recovery_id, "drop_undo", "succeeded", started_at=started, metadata=out)
    return out
