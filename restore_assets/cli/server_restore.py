"""`restore-assets snapshot` and `restore-assets restore-instance`: the whole-server restore."""

from __future__ import annotations

import argparse
import json
from typing import Any

from restore_assets.cli.common import (
    add_backend,
    add_command,
    backend_config,
    emit,
    finish,
    flag,
    restore_id_arg,
)


def _summary_text(out: dict[str, Any]) -> str:
    lines = [f"{out.get('kind', 'run')} {out['restore_id']}: {out['status']}"]
    if out.get("snapshot_id"):
        lines.append(f"snapshot: {out['snapshot_id']}")
    if out.get("cause"):
        lines.append(f"cause: {out['cause']}")
    for step, info in (out.get("steps") or {}).items():
        if info.get("not_requested"):
            continue
        state = "ok" if info["ok"] else ("skipped" if info["skipped"] else "FAILED")
        lines.append(f"  {step:<10} {state:<8} {info.get('seconds', 0):>7.1f}s")
    return "\n".join(lines)


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Run the snapshot job in process; print the snapshot id (and the export's outcome)."""
    from restore_assets.jobs.snapshot import run_snapshot_job

    request: dict[str, Any] = {}
    if args.source:
        request["identifier"] = args.source
    if args.identifier:
        request["snapshot_identifier"] = args.identifier
    if args.export_s3:
        request["export_s3"] = True
    out = run_snapshot_job(request, backend_config(args), restore_id=args.restore_id)
    return finish(args, out, _summary_text)


def restore_request(args: argparse.Namespace) -> dict[str, Any]:
    """The instance restore request of CLI arguments."""
    req: dict[str, Any] = {"task": "create_snapshot" if args.create_snapshot else "db_restore"}
    for key in ("snapshot_id", "restore_time", "suffix", "snapshot_identifier"):
        if getattr(args, key):
            req[key] = getattr(args, key)
    if args.source:
        req["identifier"] = args.source
    if args.keep_old:
        req["keep_old"] = True
    if args.skip_final_snapshot:
        req["skip_final_snapshot"] = True
    return req


def _plan_text(plan: dict[str, Any]) -> str:
    lines = [f"{plan['task']} of {plan['identifier']} ({plan['topology']}):"]
    lines += [f"  {i}. {s}" for i, s in enumerate(plan["steps"], 1)]
    lines.append("configuration preserved:")
    lines += [
        f"  {k}: {json.dumps(v, default=str)}" for k, v in plan["preserved_configuration"].items()
    ]
    for m in plan.get("members") or []:
        lines.append(f"  member: {json.dumps(m, default=str)}")
    lines += [f"warning: {w}" for w in plan.get("warnings") or []]
    return "\n".join(lines)


def cmd_restore_instance(args: argparse.Namespace) -> int:
    """Restore the instance in place (or, with --plan, show what would happen)."""
    from restore_assets.jobs.instance_restore import (
        plan_instance_restore_job,
        run_instance_restore_job,
    )

    if args.recover:
        from restore_assets.backends.factory import server_restore_services
        from restore_assets.core.server_restore.recovery import recover_instance_restore
        from restore_assets.jobs.instance_restore import backend_resource

        services = server_restore_services(backend_resource(backend_config(args)).settings())
        try:
            out = recover_instance_restore(services, args.recover)
        except KeyError:
            from restore_assets.core.errors import InvalidRequest

            raise InvalidRequest(
                f"unknown run {args.recover!r}: see `restore-assets history`"
            ) from None
        emit(
            args,
            out,
            lambda d: (
                f"{d['restore_id']}: {d['action']}"
                + (f"\ncause: {d['cause']}" if d.get("cause") else "")
            ),
        )
        return 1 if "ROLLBACK FAILED" in (out.get("cause") or "") else 0
    request = restore_request(args)
    if args.plan:
        plan = plan_instance_restore_job(request, backend_config(args))
        emit(args, plan, _plan_text)
        return 0
    out = run_instance_restore_job(request, backend_config(args), restore_id=args.restore_id)
    return finish(args, out, _summary_text)


def _command(sub: Any, name: str, help: str, fn: Any) -> argparse.ArgumentParser:
    p = add_command(sub, name, help, fn, backend=False)
    add_backend(p, config_help="backend configuration YAML (aws:, alerts:, instance_restore:)")
    p.add_argument(
        "--source", help="RDS instance or cluster identifier (default aws.source_identifier)"
    )
    p.add_argument("--restore-id", type=restore_id_arg, help="use this run id (default: generated)")
    return p


def register(subparsers: Any) -> None:
    """Add the snapshot and restore-instance commands to the `restore-assets` parser."""
    p = _command(
        subparsers,
        "snapshot",
        "take a snapshot of the instance or cluster (locally: a base backup)",
        cmd_snapshot,
    )
    p.add_argument("--identifier", help="the snapshot's name (default <source>-YYYYMMDD-HHMMSS)")
    flag(
        p, "--export-s3", "export the snapshot to S3 (aws.snapshot_export) and wait for the export"
    )

    p = _command(
        subparsers,
        "restore-instance",
        "restore the instance or cluster in place from a snapshot, keeping its endpoint",
        cmd_restore_instance,
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--snapshot-id", help="restore from this snapshot")
    g.add_argument(
        "--restore-time",
        help="restore to this point in time (ISO 8601 with a zone; a pgBackRest fleet)",
    )
    flag(g, "--create-snapshot", "take a snapshot first, restore from it")
    g.add_argument(
        "--recover",
        metavar="RESTORE_ID",
        type=restore_id_arg,
        help="roll back (or close) a run that crashed or was terminated before finishing",
    )
    p.add_argument("--snapshot-identifier", help="with --create-snapshot: the snapshot's name")
    p.add_argument("--suffix", help="the original is renamed <id>-old-<suffix> (default: UTC time)")
    flag(p, "--plan", "show what would happen; change nothing")
    flag(p, "--keep-old", "keep the renamed original")
    flag(p, "--skip-final-snapshot", "delete the renamed original without a final snapshot")
