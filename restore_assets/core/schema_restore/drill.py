"""Restore drills: restore chosen schemas to the latest point under a drill name, check the copy,
measure RTO and RPO, alert past thresholds, and drop only the drill's own schemas."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core.schema_restore.cleanup import drop_restored_schema
from restore_assets.core.schema_restore.services import SCHEMA_RESOURCE, Services

TABLES = """
SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1
"""
SEQUENCES = """
SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'S' ORDER BY 1
"""


@dataclass
class SchemaState:
    """Tables with their row counts and sequences with their last values, at one moment."""

    rows: dict[str, int] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)


def schema_state(conn: psycopg.Connection, schema: str) -> SchemaState:
    """Row counts of every table and last values of every sequence of a schema (one snapshot)."""
    state = SchemaState()
    for (table,) in conn.execute(TABLES, (schema,)).fetchall():
        q = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        state.rows[table] = int(conn.execute(q).fetchone()[0])  # type: ignore[index]
    for (seq,) in conn.execute(SEQUENCES, (schema,)).fetchall():
        q = sql.SQL("SELECT last_value FROM {}").format(sql.Identifier(schema, seq))
        state.sequences[seq] = int(conn.execute(q).fetchone()[0])  # type: ignore[index]
    return state


def differences(live: SchemaState, restored: SchemaState) -> list[str]:
    """What the restored copy gets wrong against live at the restore point (empty: it is right)."""
    out = [f"table {t} missing" for t in sorted(set(live.rows) - set(restored.rows))]
    out += [f"table {t} not in live" for t in sorted(set(restored.rows) - set(live.rows))]
    out += [
        f"table {t}: {restored.rows[t]} rows, live had {n}"
        for t, n in sorted(live.rows.items())
        if t in restored.rows and restored.rows[t] != n
    ]
    out += [
        f"sequence {s}: {restored.sequences.get(s)}, live had {v}"
        for s, v in sorted(live.sequences.items())
        if restored.sequences.get(s) != v
    ]
    return out


@dataclass
class DrillResult:
    """The outcome of one drill: what was restored, how long it took, how fresh it was, what failed."""

    drill: str
    database: str
    schemas: list[str]
    restore_id: str | None = None
    status: str = "failed"  # succeeded | failed
    restore_point: str | None = None
    rto_seconds: float | None = None  # request to answer, wall time
    rpo_seconds: float | None = None  # now - latest restorable point, before the drill
    phases: dict[str, float] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)  # schema -> differences
    breaches: list[str] = field(default_factory=list)  # thresholds passed
    dropped: list[str] = field(default_factory=list)
    cause: str | None = None

    @property
    def ok(self) -> bool:
        """The drill restored a correct copy within its thresholds."""
        return self.status == "succeeded" and not self.breaches and not any(self.problems.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "ok": self.ok}


def run_drill(
    services: Services,
    restore: Callable[[dict[str, Any], str], dict[str, Any]],
    database: str,
    schemas: list[str],
    *,
    name: str = "drill",
    max_rto_seconds: float | None = None,
    max_rpo_seconds: float | None = None,
) -> DrillResult:
    """Run one drill; `restore(request, restore_id)` runs the schema restore (the runner)."""
    from restore_assets.core.audit import new_restore_id

    result = DrillResult(drill=name, database=database, schemas=list(schemas))
    now = datetime.now(UTC)
    window = services.fleet.describe().window
    latest = window.latest or window.earliest  # nothing archived since a snapshot: the snapshot
    if latest is not None:
        result.rpo_seconds = round(max(0.0, (now - latest).total_seconds()), 3)
    dsn = services.fleet.production_dsn(database)
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        # the live state and the restore point come from one snapshot: the copy must equal it
        point = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        live = {s: schema_state(conn, s) for s in schemas}
    time.sleep(0.01)
    stamp = point.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    request = {
        "database": database,
        "schemas": list(schemas),
        "restore_time": point.isoformat(),
        "suffix": f"{name}_{stamp}",
    }
    rid = new_restore_id()
    result.restore_id = rid
    t0 = time.monotonic()
    out = restore(request, rid)
    result.rto_seconds = round(time.monotonic() - t0, 3)
    result.status = "succeeded" if out["status"] == "succeeded" else "failed"
    result.cause = out.get("cause") if result.status != "succeeded" else None
    result.restore_point = out.get("restore_point") or point.isoformat()
    result.phases = {
        p: float(v["seconds"])
        for p, v in (out.get("phases") or {}).items()
        if isinstance(v, dict) and isinstance(v.get("seconds"), int | float)
    }
    restored: dict[str, str] = out.get("restored") or {}
    if result.status == "succeeded":
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            for schema, target in restored.items():
                result.problems[schema] = differences(live[schema], schema_state(conn, target))
    if max_rto_seconds is not None and (result.rto_seconds or 0) > max_rto_seconds:
        result.breaches.append(f"RTO {result.rto_seconds:.1f}s over {max_rto_seconds:.0f}s")
    if max_rpo_seconds is not None and (
        result.rpo_seconds is None or result.rpo_seconds > max_rpo_seconds
    ):
        rpo = "unknown" if result.rpo_seconds is None else f"{result.rpo_seconds:.1f}s"
        result.breaches.append(f"RPO {rpo} over {max_rpo_seconds:.0f}s")
    result.dropped = drop_drill_schemas(services, rid)
    if not result.ok and services.notifier is not None:
        services.notifier.send(
            {
                "kind": "restore_drill",
                "status": "failed" if result.status != "succeeded" else "breached",
                "restore_id": rid,
                "identifier": database,
                "cause": "; ".join(
                    [result.cause or ""]
                    + result.breaches
                    + [f"{s}: {', '.join(p)}" for s, p in result.problems.items() if p]
                ).strip("; "),
            }
        )
    return result


def drop_drill_schemas(services: Services, restore_id: str) -> list[str]:
    """Drop the schemas this drill's restore created, proven by the oid/xid it recorded; nothing else."""
    dropped: list[str] = []
    for res in services.audit.resources(restore_id):
        if res["kind"] != SCHEMA_RESOURCE or res.get("deleted_at"):
            continue
        if drop_restored_schema(services.fleet, res["details"]):
            dropped.append(res["identifier"])
        services.audit.resource_deleted(restore_id, res["kind"], res["identifier"])
    return dropped
