"""`restore-assets fleet ...` and `restore-assets demo ...`: the local PostgreSQL fleet, the demo tenants."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from restore_assets.cli.common import add_command, add_group, emit, flag


def _fleet(args: argparse.Namespace):
    from restore_assets.backends.local.fleet import LocalFleet

    return LocalFleet(args.root)


def cmd_fleet_up(args: argparse.Namespace) -> None:
    """Create (or start) the local production cluster and print its DSN."""
    fleet = _fleet(args)
    dsn = fleet.up(pgbackrest=getattr(args, "pgbackrest", False))
    data = {"root": str(fleet.root), "dsn": dsn, "data_dir": str(fleet.data_root)}
    emit(args, data, lambda d: d["dsn"] + _data_dir_note(fleet))


def _data_dir_note(fleet: Any) -> str:
    """A line saying where PostgreSQL's data went, when it is not under the root."""
    if fleet.data_root == fleet.root:
        return ""
    return (
        f"\nPostgreSQL data is in {fleet.data_root}: the server user cannot enter {fleet.root}"
        " (its home is private), and the tool never opens it up"
    )


def cmd_fleet_adopt(args: argparse.Namespace) -> None:
    """Point the fleet at an existing self-managed cluster."""
    import getpass

    from restore_assets.backends.local.dsn import mask_dsn
    from restore_assets.core.errors import FleetError, InvalidRequest

    fleet = _fleet(args)
    stanza = getattr(args, "pgbackrest_stanza", None)
    if stanza:
        if args.archive_dir or args.backup_dir:
            raise InvalidRequest(
                "--pgbackrest-stanza replaces --archive-dir/--backup-dir: give one or the other"
            )

        def adopt(password: str | None = None) -> None:
            fleet.adopt_pgbackrest(
                args.dsn,
                stanza,
                args.pgbackrest_config,
                password=password,
                backup_type=args.pgbackrest_backup_type,
            )
    else:
        if not (args.archive_dir and args.backup_dir):
            raise InvalidRequest(
                "give --archive-dir and --backup-dir, or --pgbackrest-stanza for a pgBackRest stanza"
            )

        def adopt(password: str | None = None) -> None:
            fleet.adopt(args.dsn, args.archive_dir, args.backup_dir, password=password)

    try:
        adopt()
    except FleetError as exc:
        # no password in PGPASSWORD or a pgpass file: ask for it on a terminal, never in argv
        if "password" not in str(exc):
            raise
        if not sys.stdin.isatty():
            raise FleetError(
                f"{exc}: give the password in PGPASSWORD or a pgpass file (~/.pgpass or"
                " PGPASSFILE), or run `fleet adopt` on a terminal to be asked for it"
            ) from None
        password = getpass.getpass(f"password for {mask_dsn(args.dsn)}: ")
        adopt(password=password)
    emit(
        args,
        {"root": str(fleet.root), "dsn": mask_dsn(args.dsn), "mode": "adopted"},
        lambda d: f"adopted {d['dsn']}",
    )


def cmd_fleet_status(args: argparse.Namespace) -> None:
    """Clusters, snapshots, restore window and temporary instances."""
    fleet = _fleet(args)
    if args.refresh:
        fleet.switch_wal()
    st = fleet.status()

    def text(d: dict[str, Any]) -> str:
        lines = [f"root: {d['root']} ({d['mode']})", f"production: {d['production']['dsn']}"]
        if d.get("pgbackrest"):
            lines.append(f"pgBackRest stanza: {d['pgbackrest']['stanza']}")
        if "running" in d["production"]:
            lines[-1] += " (running)" if d["production"]["running"] else " (stopped)"
        win = d["window"]
        if win["earliest"] and not win["latest"]:
            lines.append(
                f"restore window: none yet (snapshot consistent at {win['earliest']}; a point in"
                " time is restorable once a later commit is archived: `fleet status --refresh`)"
            )
        else:
            lines.append(f"restore window: {win['earliest']} .. {win['latest']}")
        lines.append(f"snapshots ({len(d['snapshots'])}):")
        lines += [
            f"  {s['id']}  {s['created_at']}  {s['size_bytes'] / 1e6:.1f} MB"
            + (
                f"  {s['kind'].removeprefix('pgbackrest-')}, consistent at {s['completed_at']}"
                if str(s.get("kind", "")).startswith("pgbackrest-")
                else ""
            )
            for s in d["snapshots"]
        ]
        lines.append(f"temporary instances ({len(d['temporary'])}):")
        lines += [
            f"  {t['restore_id']}  port {t.get('port')}  running={t.get('running')}"
            for t in d["temporary"]
        ]
        return "\n".join(lines)

    emit(args, st, text)


def cmd_fleet_snapshot(args: argparse.Namespace) -> None:
    """Take a base backup of production; print its snapshot_id."""
    snap = _fleet(args).snapshot(getattr(args, "type", None))
    emit(args, {"snapshot_id": snap.id, **snap.to_dict()}, lambda d: d["snapshot_id"])


def cmd_fleet_delete_snapshot(args: argparse.Namespace) -> None:
    """Delete one snapshot."""
    _fleet(args).delete_snapshot(args.snapshot_id)
    emit(args, {"deleted": args.snapshot_id}, lambda d: f"deleted {d['deleted']}")


def cmd_fleet_down(args: argparse.Namespace) -> None:
    """Stop production, remove temporary instances; --purge deletes the root."""
    fleet = _fleet(args)
    removed = fleet.down()
    out: dict[str, Any] = {"removed_temporary": removed, "purged": args.purge}
    if args.purge:
        out.update(fleet.purge())

    def text(d: dict[str, Any]) -> str:
        line = f"stopped; removed {d['removed_temporary']}"
        if d["purged"]:
            line += (
                f"\npurged {len(d.get('removed', []))} path(s) the tool created under {fleet.root}"
            )
        if d.get("kept"):
            line += f"\nkept {fleet.root} and what the tool did not create in it: {d['kept']}"
        return line

    emit(args, out, text)


def cmd_demo_seed(args: argparse.Namespace) -> None:
    """Create the demo tenants (tenant_a, tenant_b) on the fleet's production cluster."""
    from restore_assets.demo import seed
    from restore_assets.demo.ownership import demo_fleet

    fleet = demo_fleet(args.root)
    fleet.up()
    out = seed(
        fleet.production_dsn,
        rows=args.rows,
        replace=args.replace,
        progress=lambda m: print(m, file=sys.stderr),
    )
    emit(args, out, lambda d: json.dumps(d, indent=2))


def cmd_demo_activity(args: argparse.Namespace) -> None:
    """Run application-like inserts and updates for some seconds."""
    from restore_assets.demo import activity
    from restore_assets.demo.ownership import demo_fleet

    fleet = demo_fleet(args.root)
    out = activity(fleet.production_dsn, seconds=args.seconds)
    emit(args, out, lambda d: json.dumps(d))


def cmd_demo_run(args: argparse.Namespace) -> None:
    """The whole story: fleet, seed, activity, incident, restore to just before it, comparison."""
    from restore_assets.demo.story import run_story

    out = run_story(
        Path(args.root),
        rows=args.rows,
        log=lambda m: print(m, file=sys.stderr, flush=True),
        pgbackrest=args.pgbackrest,
    )
    emit(args, out, lambda d: d["summary"])


def _command(group: Any, name: str, help: str, fn: Any) -> argparse.ArgumentParser:
    """A fleet or demo command: the local fleet only (no --backend, --config)."""
    return add_command(group, name, help, fn, backend=False)


def register(sub: Any) -> None:
    """Add the fleet and demo command groups to the `restore-assets` parser."""
    fleet = add_group(sub, "fleet", "the local PostgreSQL fleet")
    p = _command(
        fleet, "up", "create or start the production cluster; prints its DSN", cmd_fleet_up
    )
    flag(p, "--pgbackrest", "a new fleet backs production up with its own pgBackRest stanza")
    p = _command(
        fleet,
        "adopt",
        "use an existing cluster, its WAL archive and base-backup directory",
        cmd_fleet_adopt,
    )
    p.add_argument(
        "--dsn",
        required=True,
        help="connection string without a password (PGPASSWORD, a pgpass file or the prompt)",
    )
    p.add_argument("--archive-dir", help="the WAL archive (base-backup adoption)")
    p.add_argument("--backup-dir", help="the plain-format base backups (base-backup adoption)")
    p.add_argument("--pgbackrest-stanza", help="adopt this pgBackRest stanza as the backup source")
    p.add_argument("--pgbackrest-config", help="its pgbackrest.conf (default: pgBackRest's)")
    p.add_argument(
        "--pgbackrest-backup-type",
        choices=("full", "diff", "incr"),
        default="incr",
        help="what `fleet snapshot` takes by default (pgbackrest backup --type)",
    )
    p = _command(fleet, "status", "clusters, snapshots, restore window", cmd_fleet_status)
    flag(p, "--refresh", "switch and archive the current WAL segment first")
    p = _command(fleet, "snapshot", "take a base backup; prints snapshot_id", cmd_fleet_snapshot)
    p.add_argument(
        "--type",
        choices=("full", "diff", "incr"),
        help="pgBackRest fleets: pgbackrest backup --type (default: the fleet's, incr)",
    )
    p = _command(fleet, "delete-snapshot", "delete one snapshot", cmd_fleet_delete_snapshot)
    p.add_argument("snapshot_id")
    p = _command(fleet, "down", "stop production and remove temporary instances", cmd_fleet_down)
    flag(
        p,
        "--purge",
        "also delete what the fleet manifest lists, and the root if that leaves it empty",
    )

    demo = add_group(sub, "demo", "the demo tenants")
    p = _command(
        demo, "seed", "create tenant_a and tenant_b with their customer schemas", cmd_demo_seed
    )
    p.add_argument("--rows", type=int, default=200, help="users per schema (orders ~2x, items ~5x)")
    flag(p, "--replace", "drop and recreate existing demo schemas")
    p = _command(demo, "activity", "application-like writes for some seconds", cmd_demo_activity)
    p.add_argument("--seconds", type=float, default=10)
    p = _command(demo, "run", "the whole demo story (what `make demo` runs)", cmd_demo_run)
    p.add_argument("--rows", type=int, default=200)
    flag(p, "--pgbackrest", "the same story on a fleet backed up by its own pgBackRest stanza")
