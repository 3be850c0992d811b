"""`restore-assets drill`: one restore drill from the command line (what the restore_drill job runs)."""

from __future__ import annotations

import argparse
from typing import Any

from restore_assets.cli.common import add_command, add_target, backend_config, emit


def cmd_drill(args: argparse.Namespace) -> int:
    """Restore to the latest point under a drill name, check, measure RTO/RPO, drop the copies."""
    from restore_assets.backends.factory import build_services
    from restore_assets.core.schema_restore.drill import run_drill
    from restore_assets.jobs.launch import run_schema_restore

    config = backend_config(args)

    def restore(request: dict[str, Any], restore_id: str) -> dict[str, Any]:
        return run_schema_restore(request, config, compare=False, restore_id=restore_id)

    result = run_drill(
        build_services(config),
        restore,
        args.database,
        args.schema,
        name=args.name,
        max_rto_seconds=args.max_rto,
        max_rpo_seconds=args.max_rpo,
    )

    def text(d: dict[str, Any]) -> str:
        rpo = "unknown" if d["rpo_seconds"] is None else f"{d['rpo_seconds']:.1f}s"
        lines = [
            f"drill {d['drill']} ({d['restore_id']}): {'ok' if d['ok'] else 'FAILED'}",
            f"  RTO {d['rto_seconds']:.1f}s, RPO {rpo}, restore point {d['restore_point']}",
            "  phases: " + ", ".join(f"{p} {s:.1f}s" for p, s in d["phases"].items()),
        ]
        if d.get("cause"):
            lines.append(f"  cause: {d['cause']}")
        lines += [f"  threshold: {b}" for b in d["breaches"]]
        lines += [f"  {s}: {p}" for s, ps in d["problems"].items() for p in ps]
        lines.append(f"  dropped: {', '.join(d['dropped']) or 'nothing'}")
        return "\n".join(lines)

    emit(args, result.to_dict(), text)
    return 0 if result.ok else 1


def register(sub: Any) -> None:
    """Add the drill command to the CLI."""
    p = add_command(
        sub,
        "drill",
        "restore drill: restore to the latest point, check, measure RTO/RPO, drop",
        cmd_drill,
    )
    add_target(p)
    p.add_argument("--name", default="drill", help="the copies are <schema>_<name>_<timestamp>")
    p.add_argument("--max-rto", type=float, help="fail (exit 1, alert) above this RTO in seconds")
    p.add_argument("--max-rpo", type=float, help="fail (exit 1, alert) above this RPO in seconds")
