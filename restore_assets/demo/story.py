"""The demo story `make demo` runs: fleet, tenants, activity, an incident, a restore, the comparison."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from restore_assets.demo import activity, incident, seed
from restore_assets.demo.ownership import demo_fleet
from restore_assets.jobs.launch import run_schema_restore


def run_story(
    root: Path,
    *,
    rows: int = 200,
    activity_seconds: float = 30.0,
    log: Callable[[str], None] = print,
    pgbackrest: bool = False,
) -> dict[str, Any]:
    """Run the whole demo on the local fleet under root; return the restore outcome and a summary.

    pgbackrest: the fleet backs production up with its own pgBackRest stanza.
    """
    fleet = demo_fleet(root)
    if fleet.exists() and bool(fleet.config().pgbackrest_stanza) != pgbackrest:
        from restore_assets.core.errors import InvalidRequest

        kind = "a pgBackRest stanza" if not pgbackrest else "base backups and a cp archive"
        raise InvalidRequest(
            f"the fleet under {fleet.root} uses {kind}: use another --root for this demo"
        )
    log(f"[1/6] local fleet under {fleet.root}" + (" (pgBackRest stanza)" if pgbackrest else ""))
    log(f"      production: {fleet.up(pgbackrest=pgbackrest)}")
    if fleet.data_root != fleet.root:
        log(
            f"      PostgreSQL data in {fleet.data_root}: the server user cannot enter"
            f" {fleet.root}, which the tool leaves private"
        )
    log(
        f"[2/6] demo tenants (tenant_a: customer_a1, customer_a2; tenant_b: customer_b1, customer_b2), rows={rows}"
    )
    seed(fleet.production_dsn, rows=rows, replace=True)
    snap = fleet.snapshot()
    log(f"      snapshot {snap.id}")
    stop = threading.Event()
    counts: dict[str, Any] = {}

    def app() -> None:
        counts.update(activity(fleet.production_dsn, seconds=activity_seconds, stop=stop, seed=7))

    worker = threading.Thread(target=app, name="demo-activity", daemon=True)
    log("[3/6] application activity running in the background")
    worker.start()
    time.sleep(2.0)
    restore_point = datetime.now(UTC)
    time.sleep(1.0)
    log(
        "[4/6] incident: a batch of orders deleted and product prices corrupted in tenant_a.customer_a1"
    )
    damage = incident(fleet.production_dsn("tenant_a"), "customer_a1")
    log(f"      deleted {damage.get('deleted')}, corrupted {damage.get('updated')}")
    time.sleep(1.0)
    log(f"[5/6] restoring customer_a1 to {restore_point.isoformat()} while the activity continues")
    outcome = run_schema_restore(
        {
            "database": "tenant_a",
            "schemas": ["customer_a1"],
            "restore_time": restore_point.isoformat(),
        },
        {"backend": "local", "root": str(fleet.root)},
    )
    stop.set()
    worker.join(timeout=60)
    log(f"[6/6] restore {outcome['restore_id']}: {outcome['status']}")
    if outcome["status"] != "succeeded":
        raise SystemExit(f"demo restore failed: {outcome.get('cause')}")
    report = outcome.get("report") or {}
    head = (report.get("headline") if isinstance(report, dict) else None) or {}
    paths = (
        [r.get("html") or r.get("json") for r in (report.get("reports") or {}).values()]
        if isinstance(report, dict)
        else []
    )
    restored = outcome["restored"]["customer_a1"]
    recovery = _recovery_plan(fleet, outcome["restore_id"])
    summary = "\n".join(
        [
            f"restored tenant_a.customer_a1 as tenant_a.{restored} (restore point {outcome.get('restore_point')})",
            f"incident: deleted {damage.get('deleted')}, corrupted {damage.get('updated')}",
            "activity during the demo: "
            + ", ".join(f"{k}={v}" for k, v in counts.items() if isinstance(v, int | float)),
            "what differs (restored vs live): "
            + ", ".join(f"{k}={v}" for k, v in head.items() if k != "tables_compared"),
            "phases: " + ", ".join(f"{k} {v['seconds']}s" for k, v in outcome["phases"].items()),
            f"next: inspect tenant_a.{restored}, review the recovery plan, apply it, then drop it",
            "recovery plan (not applied): " + recovery["line"],
            f"  plan: {recovery['sql_file']}",
            f"  apply: restore-assets recover --root {fleet.root} --restore-id"
            f" {outcome['restore_id']} {RECOVERY_ARGS} --apply",
            f"comparison report: {paths[0] if paths else 'n/a'}",
        ]
    )
    return {
        **outcome,
        "incident": damage,
        "activity": counts,
        "recovery": recovery,
        "summary": summary,
    }


RECOVERY_ARGS = "--deleted --changed --columns price --on-conflict skip"


def _recovery_plan(fleet: Any, restore_id: str) -> dict[str, Any]:
    """The plan bringing back the incident's rows and prices (computed, kept, not applied)."""
    from restore_assets.backends.factory import build_services
    from restore_assets.core.recover.plan import Options
    from restore_assets.core.recover.run import plan

    services = build_services({"backend": "local", "root": str(fleet.root), "html_report": False})
    recovery = plan(
        services,
        restore_id,
        Options(deleted=True, changed=True, columns=["price"], on_conflict="skip"),
    )
    summary = recovery.summary()
    sql_file = services.artifacts.put(recovery.recovery_id, "recovery-plan.sql", recovery.sql)
    parts = [
        f"{name.split('.', 1)[1]} +{c['inserts']} inserts, {c['updates']} updates"
        + (f", {c['conflicts']} conflicts" if c["conflicts"] else "")
        for name, c in summary["tables"].items()
    ]
    return {
        "recovery_id": recovery.recovery_id,
        "tables": summary["tables"],
        "totals": summary["totals"],
        "line": "; ".join(parts) or "nothing to recover",
        "sql_file": sql_file,
    }
