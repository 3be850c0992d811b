"""`restore-assets compare` and `copy-back`: a restored schema against the live one, rows copied back."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from restore_assets.cli.common import add_command, backend_services, emit, flag
from restore_assets.core.errors import RestoreError


def cmd_compare(args: argparse.Namespace) -> None:
    """Compare a restored schema with its live schema (rows by key, drift, sequences)."""
    from restore_assets.core.compare import compare_schemas

    dsn = backend_services(args).fleet.production_dsn(args.database)
    result = compare_schemas(dsn, args.schema, args.restored)
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

    emit(args, data, text)


def cmd_copy_back(args: argparse.Namespace) -> int:
    """Generate (and with --apply run, in one transaction) the SQL copying rows back into live."""
    from restore_assets.core.compare import apply_copy_back, copy_back_sql

    dsn = backend_services(args).fleet.production_dsn(args.database)
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

    emit(args, out, text)
    return 0


def register(sub: Any) -> None:
    """Add the compare and copy-back commands to the `restore-assets` parser."""
    p = add_command(
        sub, "compare", "what differs between a restored schema and the live one", cmd_compare
    )
    p.add_argument("--database", required=True)
    p.add_argument("--schema", required=True, help="the live schema")
    p.add_argument(
        "--restored", required=True, help="the restored schema, e.g. customer_a1_20260102030405"
    )
    p.add_argument(
        "--report", metavar="DIR", help="also render the HTML comparison report into DIR"
    )

    p = add_command(
        sub,
        "copy-back",
        "generate (and with --apply run) SQL copying rows back into live",
        cmd_copy_back,
    )
    p.add_argument("--database", required=True)
    p.add_argument("--schema", required=True, help="the live schema")
    p.add_argument("--restored", required=True)
    p.add_argument("--table", action="append", required=True, help="repeat for several tables")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--key", action="append", help="primary key as JSON, e.g. '{\"id\": 42}' (repeat)"
    )
    flag(g, "--all-only-in-restored", "every row deleted since the restore point")
    flag(p, "--apply", "run the SQL (one transaction for all tables)")
