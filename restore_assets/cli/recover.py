"""`restore-assets recover`: plan, review, apply and undo the recovery of rows from a restore."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from restore_assets.cli.common import add_command, backend_services, emit, flag, restore_id_arg
from restore_assets.core.errors import RestoreError


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def _text(d: dict[str, Any]) -> str:
    lines = [
        f"recovery {d['recovery_id']} of restore {d['restore_id']} ({d['database']})",
        f"{'table':<32}{'inserts':>9}{'updates':>9}{'conflicts':>11}{'by FK':>7}{'skipped':>9}",
    ]
    for name, c in d["summary"]["tables"].items():
        lines.append(
            f"{name:<32}{c['inserts']:>9}{c['updates']:>9}{c['conflicts']:>11}"
            f"{c['added_by_foreign_keys']:>7}{c['skipped']:>9}"
        )
    for s in d["schemas"]:
        for t in s["order"]:
            for r in s["tables"][t]["reasons"]:
                if r.get("fk"):
                    lines.append(f"  + {r['count']} {t} row(s): {r['reason']} ({r['fk']})")
        lines += [f"  note: {n}" for n in s["notes"]]
    if d.get("refused"):
        lines.append(f"refused: {d['refused']}")
    if d.get("applied"):
        a = d["applied"]
        lines.append(f"applied: {json.dumps(a['tables'])}")
        lines.append(f"undo: restore-assets recover --undo {d['recovery_id']}")
    elif d.get("plan_file"):
        lines.append(f"plan: {d['plan_file']} (SQL: {d['sql_file']}); not applied: add --apply")
    else:
        lines.append("not applied: add --apply")
    return "\n".join(lines)


def cmd_recover(args: argparse.Namespace) -> int:
    """Plan (and with --apply run) the recovery of deleted or changed rows; or --undo one."""
    from restore_assets.core.recover.plan import Options
    from restore_assets.core.recover.run import apply, plan, undo

    services = backend_services(args)
    if args.drop_undo:
        from restore_assets.core.recover.run import drop_undo

        out = drop_undo(services, args.drop_undo)
        emit(args, out, lambda d: f"dropped {', '.join(d['dropped']) or 'nothing'}")
        return 0
    if args.undo:
        out = undo(services, args.undo, triggers=args.fire_triggers_on_undo)
        emit(args, out, lambda d: f"undone {args.undo} ({d['undo_id']}): {json.dumps(d['tables'])}")
        return 0
    if not args.restore_id:
        raise RestoreError("recover needs --restore-id ID (or --undo RECOVERY_ID)")
    if args.plan_only and args.apply:
        raise RestoreError("choose --plan-only or --apply, not both")
    options = Options(
        deleted=args.deleted,
        changed=args.changed,
        columns=_split(args.columns),
        on_conflict=args.on_conflict,
        tables=_split(args.table),
        triggers=not args.no_triggers,
        lock_timeout=args.lock_timeout,
        statement_timeout=args.statement_timeout,
    )
    recovery = plan(services, args.restore_id, options, _split(args.schema))
    data = recovery.to_dict()
    if not args.apply:
        rid = recovery.recovery_id
        data["plan_file"] = services.artifacts.put(
            rid, "recovery-plan.json", json.dumps(data, indent=2, default=str)
        )
        data["sql_file"] = services.artifacts.put(rid, "recovery-plan.sql", recovery.sql)
    else:
        data["applied"] = apply(services, recovery)
        data["applied"].pop("sql", None)
    emit(args, data, _text)
    if recovery.refused:
        print(f"error: the plan is refused: {recovery.refused}", file=sys.stderr)
        return 2
    return 0


def register(sub: Any) -> None:
    """Add the `recover` sub-command."""
    ident = restore_id_arg  # a safe name, never a path (argparse exits 2 otherwise)

    p = add_command(
        sub,
        "recover",
        "recover deleted or changed rows from a restore into live (plan, then --apply)",
        cmd_recover,
    )
    p.add_argument("--restore-id", type=ident, help="the schema restore to recover rows from")
    p.add_argument("--schema", action="append", help="only these live schemas (default: all)")
    p.add_argument("--table", action="append", help="only these tables (comma-separated/repeat)")
    flag(p, "--deleted", "re-insert rows deleted since T")
    flag(p, "--changed", "set rows changed since T back")
    p.add_argument("--columns", action="append", help="with --changed: only these columns")
    p.add_argument(
        "--on-conflict",
        choices=["skip", "overwrite", "fail"],
        default="fail",
        help="a key or unique value live holds now (default: %(default)s)",
    )
    flag(p, "--plan-only", "compute the plan, write nothing")
    flag(p, "--apply", "apply the plan in one transaction")
    flag(
        p,
        "--no-triggers",
        "apply with session_replication_role=replica (superuser; no trigger nor FK check)",
    )
    p.add_argument("--lock-timeout", default="10s")
    p.add_argument("--statement-timeout", default="5min")
    p.add_argument(
        "--undo", type=ident, metavar="RECOVERY_ID", help="put back what a recovery changed"
    )
    p.add_argument(
        "--drop-undo",
        type=ident,
        metavar="RECOVERY_ID",
        help="drop the undo schema a recovery created (proven by its oid); no undo after it",
    )
    flag(
        p,
        "--fire-triggers-on-undo",
        "undo with triggers firing (default: replica role, rows exactly as before)",
    )
