"""The `restore-assets` command line: fleet, demo, restore, cleanup, history, compare, copy-back."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from restore_assets.backends.factory import default_root
from restore_assets.core.errors import RestoreError

Handler = Callable[[argparse.Namespace], Any]


def restore_id_arg(value: str) -> str:
    """argparse type of every --restore-id: a safe name, never a path (exit 2 otherwise)."""
    from restore_assets.core.audit import check_restore_id
    from restore_assets.core.errors import InvalidRequest

    try:
        return check_restore_id(value)
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str] | None = None) -> None:
    if getattr(args, "json", False) or text is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text(data))


def _fleet(args: argparse.Namespace):
    from restore_assets.backends.local.fleet import LocalFleet

    return LocalFleet(args.root)


# ---------------------------------------------------------------------------- fleet
def cmd_fleet_up(args: argparse.Namespace) -> None:
    """Create (or start) the local production cluster and print its DSN."""
    fleet = _fleet(args)
    dsn = fleet.up(pgbackrest=getattr(args, "pgbackrest", False))
    data = {"root": str(fleet.root), "dsn": dsn, "data_dir": str(fleet.data_root)}
    _emit(args, data, lambda d: d["dsn"] + _data_dir_note(fleet))


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

    from restore_assets.backends.local.fleet import mask_dsn
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
    _emit(
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

    _emit(args, st, text)


def cmd_fleet_snapshot(args: argparse.Namespace) -> None:
    """Take a base backup of production; print its snapshot_id."""
    snap = _fleet(args).snapshot(getattr(args, "type", None))
    _emit(args, {"snapshot_id": snap.id, **snap.to_dict()}, lambda d: d["snapshot_id"])


def cmd_fleet_delete_snapshot(args: argparse.Namespace) -> None:
    """Delete one snapshot."""
    _fleet(args).delete_snapshot(args.snapshot_id)
    _emit(args, {"deleted": args.snapshot_id}, lambda d: f"deleted {d['deleted']}")


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

    _emit(args, out, text)


# ---------------------------------------------------------------------------- demo
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
    _emit(args, out, lambda d: json.dumps(d, indent=2))


def cmd_demo_activity(args: argparse.Namespace) -> None:
    """Run application-like inserts and updates for some seconds."""
    from restore_assets.demo import activity
    from restore_assets.demo.ownership import demo_fleet

    fleet = demo_fleet(args.root)
    out = activity(fleet.production_dsn, seconds=args.seconds)
    _emit(args, out, lambda d: json.dumps(d))


def cmd_demo_run(args: argparse.Namespace) -> None:
    """The whole story: fleet, seed, activity, incident, restore to just before it, comparison."""
    from restore_assets.demo.story import run_story

    out = run_story(
        Path(args.root),
        rows=args.rows,
        log=lambda m: print(m, file=sys.stderr, flush=True),
        pgbackrest=args.pgbackrest,
    )
    _emit(args, out, lambda d: d["summary"])


# ---------------------------------------------------------------------------- restore
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
        _emit(args, out, lambda d: json.dumps(d, indent=2))
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

    if out["status"] == "rejected" and not args.json:
        print(f"error: {out['cause']}", file=sys.stderr)
        return 2
    _emit(args, out, text)
    return {"succeeded": 0, "rejected": 2}.get(out["status"], 1)


def backend_config(args: argparse.Namespace) -> dict[str, Any]:
    """The backend configuration mapping from --backend, --root and --config."""
    cfg: dict[str, Any] = {}
    if getattr(args, "config", None):
        import yaml

        cfg = yaml.safe_load(Path(args.config).read_text()) or {}
        cfg["config_file"] = str(Path(args.config).resolve())
    if getattr(args, "backend", None):
        cfg["backend"] = args.backend
    cfg.setdefault("backend", "local")
    cfg["root"] = args.root
    if getattr(args, "workers", None):
        cfg["copy_workers"] = args.workers
    return cfg


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Remove what a restore id left behind (temporary instance, partial schemas)."""
    from restore_assets.backends.factory import build_services
    from restore_assets.core.schema_restore.phases import cleanup_restore

    services = build_services(backend_config(args))
    try:
        out = cleanup_restore(services, args.restore_id)
    except KeyError:
        raise RestoreError(
            f"unknown restore id {args.restore_id!r}: see `restore-assets history`"
        ) from None
    _emit(
        args,
        {"restore_id": args.restore_id, **out},
        lambda d: f"removed {d['removed']}; kept {d['kept']}",
    )
    return 1 if out["errors"] else 0


def cmd_drop_restored(args: argparse.Namespace) -> int:
    """Drop the restored schemas of a finished restore (explicit, audited, refused while needed)."""
    from restore_assets.backends.factory import build_services
    from restore_assets.core.schema_restore.drop_restored import drop_restored

    if not args.yes_drop_restored:
        raise RestoreError(
            f"drop-restored deletes the restored schemas of {args.restore_id} and everything in"
            " them: add --yes-drop-restored to confirm"
        )
    services = build_services(backend_config(args))
    try:
        out = drop_restored(services, args.restore_id)
    except KeyError:
        raise RestoreError(
            f"unknown restore id {args.restore_id!r}: see `restore-assets history`"
        ) from None
    _emit(
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
    from restore_assets.backends.factory import build_services

    audit = build_services(backend_config(args)).audit
    if args.restore_id:
        try:
            rec = audit.get(args.restore_id)
        except KeyError:
            raise RestoreError(f"unknown restore id {args.restore_id!r}") from None
        _emit(args, rec, lambda d: json.dumps(d, indent=2, default=str))
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

    _emit(args, rows, text)


# ---------------------------------------------------------------------------- compare
def cmd_compare(args: argparse.Namespace) -> None:
    """Compare a restored schema with its live schema (rows by key, drift, sequences)."""
    from restore_assets.backends.factory import build_services
    from restore_assets.core.compare import compare_schemas

    services = build_services(backend_config(args))
    result = compare_schemas(
        services.fleet.production_dsn(args.database), args.schema, args.restored
    )
    data = result.to_dict()
    if args.report:
        from restore_assets.backends.local.artifacts import owner_only
        from restore_assets.core.notebooks import render_comparison_report

        with owner_only():  # the executed notebook and its HTML hold sample keys
            report = render_comparison_report(
                Path(args.report), data, name=f"comparison-{args.schema}"
            )
        data["report"] = str(report)

    def text(d: dict[str, Any]) -> str:
        lines = [f"{d['database']}: {d['schema']} (live) vs {d['restored']} (restored)"]
        lines.append(
            f"{'table':<28}{'restored':>10}{'live':>10}{'only rst':>10}{'only live':>10}{'changed':>9}  columns"
        )
        for name, t in d["tables"].items():
            cols = ", ".join(t.get("changed_columns") or {})
            lines.append(
                f"{name:<28}{t['rows_restored']:>10}{t['rows_live']:>10}{t['only_in_restored']:>10}"
                f"{t['only_in_live']:>10}{t['changed']:>9}  {cols}"
            )
        lines.append("summary: " + ", ".join(f"{k}={v}" for k, v in d["summary"].items()))
        if d.get("report"):
            lines.append(f"report: {d['report']}")
        return "\n".join(lines)

    _emit(args, data, text)


def cmd_report(args: argparse.Namespace) -> None:
    """Compare and render the report of a succeeded restore again; print the report paths."""
    from restore_assets.backends.factory import build_services
    from restore_assets.core.schema_restore.phases import report_again

    services = build_services(backend_config(args))
    try:
        out = report_again(services, args.restore_id)
    except KeyError:
        raise RestoreError(
            f"unknown restore id {args.restore_id!r}: see `restore-assets history`"
        ) from None

    def text(d: dict[str, Any]) -> str:
        return "\n".join(r.get("html") or r["json"] for r in d["reports"].values())

    _emit(args, out, text)


def cmd_copy_back(args: argparse.Namespace) -> int:
    """Generate (and with --apply run, in one transaction) the SQL copying rows back into live."""
    from restore_assets.backends.factory import build_services
    from restore_assets.core.compare import apply_copy_back, copy_back_sql

    services = build_services(backend_config(args))
    dsn = services.fleet.production_dsn(args.database)
    keys = None
    if args.key:
        try:
            keys = [json.loads(k) for k in args.key]
        except json.JSONDecodeError as exc:
            raise RestoreError(
                f"--key must be a JSON object such as '{{\"id\": 42}}': {exc}"
            ) from None
    plans = [
        copy_back_sql(
            dsn,
            args.schema,
            args.restored,
            table,
            keys=keys,
            all_only_in_restored=args.all_only_in_restored,
        )
        for table in args.table
    ]
    out: dict[str, Any] = {"plans": [p.to_dict() for p in plans], "applied": False}
    if args.apply:
        out["result"] = apply_copy_back(dsn, plans)
        out["applied"] = True

    def text(d: dict[str, Any]) -> str:
        lines = []
        for p in d["plans"]:
            lines.append(
                f"-- {p['table']}: {p['selected']} row(s) selected, {len(p['conflicts'])} already in live"
            )
            lines.append(p["sql"] + ";")
        if d["applied"]:
            lines.append(f"-- applied in one transaction: {d['result']}")
        else:
            lines.append("-- not applied: run again with --apply")
        return "\n".join(lines)

    _emit(args, out, text)
    return 0


# ---------------------------------------------------------------------------- parser
def _add_common(p: argparse.ArgumentParser, root: bool = True) -> None:
    if root:
        p.add_argument(
            "--root",
            default=default_root(),
            help="local fleet root directory (default: %(default)s)",
        )
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend", choices=["local", "aws"], help="backend (default local, or from --config)"
    )
    p.add_argument("--config", help="backend configuration YAML (AWS settings)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="restore-assets", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    fleet = sub.add_parser("fleet", help="the local PostgreSQL fleet").add_subparsers(
        dest="fleet_cmd", required=True
    )
    p = fleet.add_parser("up", help="create or start the production cluster; prints its DSN")
    _add_common(p)
    p.add_argument(
        "--pgbackrest",
        action="store_true",
        help="a new fleet backs production up with its own pgBackRest stanza",
    )
    p.set_defaults(fn=cmd_fleet_up)
    p = fleet.add_parser(
        "adopt", help="use an existing cluster, its WAL archive and base-backup directory"
    )
    _add_common(p)
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
    p.set_defaults(fn=cmd_fleet_adopt)
    p = fleet.add_parser("status", help="clusters, snapshots, restore window")
    _add_common(p)
    p.add_argument(
        "--refresh", action="store_true", help="switch and archive the current WAL segment first"
    )
    p.set_defaults(fn=cmd_fleet_status)
    p = fleet.add_parser("snapshot", help="take a base backup; prints snapshot_id")
    _add_common(p)
    p.add_argument(
        "--type",
        choices=("full", "diff", "incr"),
        help="pgBackRest fleets: pgbackrest backup --type (default: the fleet's, incr)",
    )
    p.set_defaults(fn=cmd_fleet_snapshot)
    p = fleet.add_parser("delete-snapshot", help="delete one snapshot")
    _add_common(p)
    p.add_argument("snapshot_id")
    p.set_defaults(fn=cmd_fleet_delete_snapshot)
    p = fleet.add_parser("down", help="stop production and remove temporary instances")
    _add_common(p)
    p.add_argument(
        "--purge",
        action="store_true",
        help="also delete what the fleet manifest lists, and the root if that leaves it empty",
    )
    p.set_defaults(fn=cmd_fleet_down)

    demo = sub.add_parser("demo", help="the demo tenants").add_subparsers(
        dest="demo_cmd", required=True
    )
    p = demo.add_parser("seed", help="create tenant_a and tenant_b with their customer schemas")
    _add_common(p)
    p.add_argument("--rows", type=int, default=200, help="users per schema (orders ~2x, items ~5x)")
    p.add_argument("--replace", action="store_true", help="drop and recreate existing demo schemas")
    p.set_defaults(fn=cmd_demo_seed)
    p = demo.add_parser("activity", help="application-like writes for some seconds")
    _add_common(p)
    p.add_argument("--seconds", type=float, default=10)
    p.set_defaults(fn=cmd_demo_activity)
    p = demo.add_parser("run", help="the whole demo story (what `make demo` runs)")
    _add_common(p)
    p.add_argument("--rows", type=int, default=200)
    p.add_argument(
        "--pgbackrest",
        action="store_true",
        help="the same story on a fleet backed up by its own pgBackRest stanza",
    )
    p.set_defaults(fn=cmd_demo_run)

    p = sub.add_parser(
        "restore", help="restore schemas to a point in time or snapshot, side by side"
    )
    _add_common(p)
    _add_backend(p)
    p.add_argument("--database", required=True)
    p.add_argument("--schema", action="append", required=True, help="repeat for several schemas")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--restore-time", help="ISO 8601 with a time zone, e.g. 2026-01-02T03:04:05Z")
    g.add_argument("--snapshot-id")
    p.add_argument(
        "--tables", action="append", help="table-level restore: names (comma-separated or repeated)"
    )
    p.add_argument(
        "--no-dependencies",
        action="store_true",
        help="with --tables: not the tables they reference",
    )
    p.add_argument(
        "--full-provision",
        action="store_true",
        help="copy the whole snapshot into the temporary server (default: only the restored"
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
    p.add_argument("--no-compare", action="store_true", help="skip the comparison report")
    p.add_argument(
        "--wait-cleanup",
        action="store_true",
        help="remove the temporary server before returning (default: after the answer, in the background)",
    )
    p.add_argument(
        "--plan", action="store_true", help="print what would be created, create nothing"
    )
    p.set_defaults(fn=cmd_restore)

    p = sub.add_parser("cleanup", help="remove what a restore id left behind")
    _add_common(p)
    _add_backend(p)
    p.add_argument("--restore-id", required=True, type=restore_id_arg)
    p.set_defaults(fn=cmd_cleanup)

    p = sub.add_parser(
        "drop-restored", help="drop the restored schemas of a finished restore (audited)"
    )
    _add_common(p)
    _add_backend(p)
    p.add_argument("--restore-id", required=True, type=restore_id_arg)
    p.add_argument(
        "--yes-drop-restored",
        action="store_true",
        help="confirm: the restored schemas and everything in them are dropped",
    )
    p.set_defaults(fn=cmd_drop_restored)

    p = sub.add_parser("history", help="recent restores from the audit log")
    _add_common(p)
    _add_backend(p)
    p.add_argument("--restore-id", type=restore_id_arg)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(fn=cmd_history)

    p = sub.add_parser("report", help="compare and render the report of a succeeded restore again")
    _add_common(p)
    _add_backend(p)
    p.add_argument("--restore-id", required=True, type=restore_id_arg)
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("compare", help="what differs between a restored schema and the live one")
    _add_common(p)
    _add_backend(p)
    p.add_argument("--database", required=True)
    p.add_argument("--schema", required=True, help="the live schema")
    p.add_argument(
        "--restored", required=True, help="the restored schema, e.g. customer_a1_20260102030405"
    )
    p.add_argument(
        "--report", metavar="DIR", help="also render the HTML comparison report into DIR"
    )
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser(
        "copy-back", help="generate (and with --apply run) SQL copying rows back into live"
    )
    _add_common(p)
    _add_backend(p)
    p.add_argument("--database", required=True)
    p.add_argument("--schema", required=True, help="the live schema")
    p.add_argument("--restored", required=True)
    p.add_argument("--table", action="append", required=True, help="repeat for several tables")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--key", action="append", help="primary key as JSON, e.g. '{\"id\": 42}' (repeat)"
    )
    g.add_argument(
        "--all-only-in-restored",
        action="store_true",
        help="every row deleted since the restore point",
    )
    p.add_argument(
        "--apply", action="store_true", help="run the SQL (one transaction for all tables)"
    )
    p.set_defaults(fn=cmd_copy_back)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    from restore_assets.cli.aws import register as register_aws
    from restore_assets.cli.drill import register as register_drill
    from restore_assets.cli.recover import register as register_recover
    from restore_assets.cli.reports import register as register_reports
    from restore_assets.cli.server_restore import register as register_instance

    return [register_instance, register_aws, register_recover, register_reports, register_drill]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `restore-assets` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("restore_assets").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        rc = args.fn(args)
    except RestoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
