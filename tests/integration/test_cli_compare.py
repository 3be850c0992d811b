"""The CLI as a user runs it: restore, compare, copy-back (dry run, then --apply), history."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import psycopg
import pytest

pytestmark = pytest.mark.integration


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `restore-assets ARGS --json` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "restore_assets.cli.main", *args, "--json"],
        capture_output=True,
        text=True,
        check=check,
    )


def test_restore_compare_and_copy_back_through_the_cli(demo_fleet):
    root = str(demo_fleet.root)
    dsn = demo_fleet.production_dsn("tenant_a")
    point = datetime.now(UTC)
    time.sleep(0.2)
    with psycopg.connect(dsn, autocommit=True) as conn:
        doomed = [
            r[0]
            for r in conn.execute("SELECT id FROM customer_a2.order_items ORDER BY id DESC LIMIT 4")
        ]
        conn.execute("DELETE FROM customer_a2.order_items WHERE id = ANY(%s)", (doomed,))
    out = json.loads(
        cli("restore", "--root", root, "--database", "tenant_a", "--schema", "customer_a2",
            "--restore-time", point.isoformat(), "--suffix", "cli", "--no-compare",
            "--wait-cleanup").stdout
    )  # fmt: skip
    assert out["status"] == "succeeded" and out["restored"] == {"customer_a2": "customer_a2_cli"}
    assert {"pre.sql", "post.sql", "full.sql"} <= set(out["artifacts"])
    try:
        common = [
            "--root",
            root,
            "--database",
            "tenant_a",
            "--schema",
            "customer_a2",
            "--restored",
            "customer_a2_cli",
        ]
        report = json.loads(cli("compare", *common).stdout)
        items = report["tables"]["order_items"]
        assert (
            items["only_in_restored"] == 4 and items["only_in_live"] == 0 and items["changed"] == 0
        )
        assert sorted(k["id"] for k in items["samples"]["only_in_restored"]) == sorted(doomed)

        plan = json.loads(
            cli("copy-back", *common, "--table", "order_items", "--all-only-in-restored").stdout
        )
        assert plan["applied"] is False and plan["plans"][0]["selected"] == 4
        with psycopg.connect(dsn) as conn:  # a dry run changes nothing
            assert (
                conn.execute(
                    "SELECT count(*) FROM customer_a2.order_items WHERE id = ANY(%s)", (doomed,)
                ).fetchone()[0]
                == 0
            )

        done = json.loads(
            cli(
                "copy-back", *common, "--table", "order_items", "--all-only-in-restored", "--apply"
            ).stdout
        )
        assert done["applied"] is True and done["result"]["order_items"]["inserted"] == 4
        again = json.loads(cli("compare", *common).stdout)
        assert again["tables"]["order_items"]["only_in_restored"] == 0

        bad = cli("copy-back", *common, "--table", "order_items", "--key", "not json", check=False)
        assert bad.returncode == 2 and "--key must be a JSON object" in bad.stderr

        history = json.loads(cli("history", "--root", root).stdout)
        assert any(
            h["restore_id"] == out["restore_id"] and h["status"] == "succeeded" for h in history
        )
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA customer_a2_cli CASCADE")


def test_rejected_restore_exits_2_with_the_reason(demo_fleet):
    res = subprocess.run(
        [sys.executable, "-m", "restore_assets.cli.main", "restore", "--root", str(demo_fleet.root), "--database", "tenant_a",
         "--schema", "customer_a2", "--restore-time", "2999-01-01T00:00:00Z"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 2
    assert "in the future" in res.stderr and "Traceback" not in res.stderr


def test_plan_lists_what_would_be_created_and_creates_nothing(demo_fleet):
    before = demo_fleet.temp_instances()
    out = json.loads(
        cli("restore", "--root", str(demo_fleet.root), "--database", "tenant_a", "--schema", "customer_a1",
            "--restore-time", datetime.now(UTC).isoformat(), "--suffix", "planned", "--plan").stdout
    )  # fmt: skip
    kinds = [r["kind"] for r in out["would_create"]]
    assert kinds == ["local-temp-cluster", "restored-schema", "artifacts"]
    assert out["would_create"][1]["name"] == "customer_a1_planned"
    assert demo_fleet.temp_instances() == before
    with psycopg.connect(demo_fleet.production_dsn("tenant_a")) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'customer_a1_planned'"
            ).fetchone()[0]
            == 0
        )
