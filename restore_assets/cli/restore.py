"""`restore-assets restore`, `cleanup`, `drop-restored`, `history` and `report`: schema restores."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from restore_assets.cli.common import (
    add_command,
    add_target,
    backend_config,
    backend_services,
    emit,
    finish,
    flag,
    known_restore,
    restore_id_arg,
)
from restore_assets.core.errors import RestoreError


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The restore request mapping from CLI arguments."""
    req: dict[str, Any] = {"database": args.database, "schemas": args.schema}
    if args.restore_time:
        req["restore_time"] = args.restore_time
    if args.snapshot_id:
        req["snapshot_id"] = args.snapshot_id
    if args.tables:
        req["tables"] = [t for item in args.tables for t in item.split(",") if t]
    if args.no_dependencies:
        req["include_dependencies"] = False
    if args.suffix:
        req["suffix"] = args.suffix
    if getattr(args, "tablespace_map", None):
        req["tablespace_map"] = args.tablespace_map
    if getattr(args, "full_provision", False):
        req["full_provision"] = True
    return req


def cmd_restore(args: argparse.Namespace) -> int:
    """Run the schema_restore job in process and print its outcome."""
    from restore_assets.jobs.launch import run_schema_restore

    if args.plan:
        from restore_assets.jobs.launch import plan_schema_restore

        out = plan_schema_restore(request_from_args(args), backend_config(args))
        emit(args, out, lambda d: json.dumps(d, indent=2))
        return 0
    from restore_assets.cli.progress import restore_progress
    from restore_assets.core.audit import new_restore_id

    request, rid = request_from_args(args), args.restore_id or new_restore_id()
    with restore_progress(backend_config(args), request, rid, sys.stderr, not args.json):
        out = run_schema_restore(
            request,
            backend_config(args),
            compare=not args.no_compare,
            restore_id=rid,
            detach_cleanup=not args.wait_cleanup,
        )

    def text(d: dict[str, Any]) -> str:
        lines = [f"restore {d['restore_id']}: {d['status']}"]
        if d.get("cause"):
            lines.append(f"cause: {d['cause']}")
        lines += [f"  {s} -> {t}" for s, t in (d.get("restored") or {}).items()]
        if d.get("rto_s") is not None and d["status"] == "succeeded":
            # the temporary server is removed after this answer (see `history`)
            lines.append(f"usable after {d['rto_s']:.1f}s (RTO)")
        if d.get("report"):
            lines.append(f"report: {d['report']}")
        return "\n".join(lines)

    return finish(args, out, text)


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Remove what a restore id left behind (temporary instance, partial schemas)."""
    from restore_assets.core.schema_restore.cleanup import cleanup_restore

    services = backend_services(args)
    with known_restore(args.restore_id):
        out = cleanup_restore(services, args.restore_id)
    emit(
        args,
        {"restore_id": args.restore_id, **out},
        lambda d: f"removed {d['removed']}; kept {d['kept']}",
    )
    return 1 if out["errors"] else 0


def cmd_drop_restored(args: argparse.Namespace) -> int:
    """Drop the restored schemas of a finished restore (explicit, audited, refused while needed)."""
    from restore_assets.core.schema_restore.drop_restored import drop_restored

    if not args.yes_drop_restored:
        raise RestoreError(
            f"drop-restored deletes the restored schemas of {args.restore_id} and everything in"
            " them: add --yes-drop-restored to confirm"
        )
    services = backend_services(args)
    with known_restore(args.restore_id):
        out = drop_restored(services, args.restore_id)
    emit(
        args,
        out,
        lambda d: (
            f"dropped {d['dropped'] or 'nothing'}"
            + (f"; already gone {d['already_gone']}" if d["already_gone"] else "")
        ),
    )
    return 0


def cmd_history(args: argparse.Namespace) -> None:
    """Recent restores from the audit log (one with --restore-id)."""

    audit = backend_services(args).audit
    if args.restore_id:
        with known_restore(args.restore_id, hint=""):
            rec = audit.get(args.restore_id)
        emit(args, rec, lambda d: json.dumps(d, indent=2, default=str))
        return
    rows = audit.history(args.limit)

    def text(rs: list[dict[str, Any]]) -> str:
        out = []
        for r in rs:
            dur = f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "-"
            what = f"{r['inputs'].get('database')}:{','.join(r['inputs'].get('schemas') or [])}"
            out.append(
                f"{r['restore_id']}  {r['status']:<9} {dur:>8}  {what}  {r.get('cause') or ''}"
            )
        return "\n".join(out) or "no restores yet"

    emit(args, rows, text)


def cmd_report(args: argparse.Namespace) -> None:
    """Compare and render the report of a succeeded restore again; print the report paths."""
    from restore_assets.core.schema_restore.comparison import report_again

    services = backend_services(args)
    with known_restore(args.restore_id):
        out = report_again(services, args.restore_id)

    def text(d: dict[str, Any]) -> str:
        return "\n".join(r.get("html") or r["json"] for r in d["reports"].values())

    emit(args, out, text)


def register(sub: Any) -> None:
    """Add the schema restore commands to the `restore-assets` parser."""
    p = add_command(
        sub, "restore", "restore schemas to a point in time or snapshot, side by side", cmd_restore
    )
    add_target(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--restore-time", help="ISO 8601 with a time zone, e.g. 2026-01-02T03:04:05Z")
    g.add_argument("--snapshot-id")
    p.add_argument(
        "--tables", action="append", help="table-level restore: names (comma-separated or repeated)"
    )
    flag(p, "--no-dependencies", "with --tables: not the tables they reference")
    flag(
        p,
        "--full-provision",
        "copy the whole snapshot into the temporary server (default: only the restored"
        " database's files when the snapshot allows it)",
    )
    p.add_argument(
        "--suffix",
        help="restored schema is <schema>_<suffix> (default: restore point YYYYMMDDHHMMSS)",
    )
    p.add_argument(
        "--tablespace-map",
        action="append",
        metavar="OLD=NEW",
        help="create restored objects of tablespace OLD in NEW (repeatable; default: as in source)",
    )
    p.add_argument(
        "--restore-id", type=restore_id_arg, help="use this restore id (default: generated)"
    )
    p.add_argument("--workers", type=int, help="parallel COPY workers per schema")
    flag(p, "--no-compare", "skip the comparison report")
    flag(
        p,
        "--wait-cleanup",
        "remove the temporary server before returning (default: after the answer, in the background)",
    )
    flag(p, "--plan", "print what would be created, create nothing")

    p = add_command(sub, "cleanup", "remove what a restore id left behind", cmd_cleanup)
    p.add_argument("--restore-id", required=True, type=restore_id_arg)

    p = add_command(
        sub,
        "drop-restored",
        "drop the restored schemas of a finished restore (audited)",
        cmd_drop_restored,
    )
    p.add_argument("--restore-id", required=True, type=restore_id_arg)
    flag(
        p, "--yes-drop-restored", "confirm: the restored schemas and everything in them are dropped"
    )

    p = add_command(sub, "history", "recent restores from the audit log", cmd_history)
    p.add_argument("--restore-id", type=restore_id_arg)
    p.add_argument("--limit", type=int, default=50)

    p = add_command(
        sub, "report", "compare and render the report of a succeeded restore again", cmd_report
    )
    p.add_argument("--restore-id", required=True, type=restore_id_arg)
