"""`restore-assets recover` as a user runs it: plan, apply, undo; bad input exits 2 with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.integration.recover_helpers import (
    checksum,
    copy_as_restored,
    drop_database,
    fresh_database,
    record_restore,
    services_for,
)

pytestmark = pytest.mark.integration

DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.users (id int PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE {s}.products (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2) NOT NULL);
CREATE TABLE {s}.orders (
    id int PRIMARY KEY, user_id int NOT NULL REFERENCES {s}.users (id) ON DELETE CASCADE
);
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `restore-assets ARGS` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "restore_assets.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_recover_plan_apply_and_undo_through_the_cli(demo_fleet):
    name = "rec_cli"
    dsn = fresh_database(demo_fleet, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL(DDL).format(s=psycopg.sql.Identifier("app")))
            conn.execute("INSERT INTO app.users VALUES (1, 'a@x'), (2, 'b@x')")
            conn.execute("INSERT INTO app.products VALUES (1, 'pen', 2), (2, 'ink', 3)")
            conn.execute("INSERT INTO app.orders VALUES (10, 1), (20, 2)")
        copy_as_restored(dsn, DDL, "app", "app_r", ["users", "products", "orders"])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM app.users WHERE id = 1")
            conn.execute("UPDATE app.products SET price = price * 100, name = upper(name)")
        rid = record_restore(services_for(demo_fleet), dsn, name, {"app": "app_r"})
        root = str(demo_fleet.root)
        before = [checksum(dsn, "app", t) for t in ("users", "products", "orders")]

        out = cli("recover", "--root", root, "--restore-id", rid, "--deleted", "--changed",
                  "--columns", "price", "--plan-only", "--json")  # fmt: skip
        assert out.returncode == 0, out.stderr
        p = json.loads(out.stdout)
        assert p["summary"]["tables"]["app.users"]["inserts"] == 1
        assert p["summary"]["tables"]["app.orders"]["inserts"] == 1
        assert p["summary"]["tables"]["app.products"]["updates"] == 2
        assert "applied" not in p and p["sql"].startswith("-- recovery ")
        kept = Path(p["sql_file"].removeprefix("file://"))
        assert kept.read_text() == p["sql"] and kept.stat().st_mode & 0o077 == 0  # owner only
        assert [checksum(dsn, "app", t) for t in ("users", "products", "orders")] == before

        out = cli("recover", "--root", root, "--restore-id", rid, "--deleted", "--changed",
                  "--columns", "price", "--apply")  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "undo: restore-assets recover --undo rec-" in out.stdout
        recovery_id = out.stdout.split("--undo ")[1].split()[0]
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM app.orders").fetchone()[0] == 2
            assert conn.execute(
                "SELECT array_agg(name || ':' || price ORDER BY id) FROM app.products"
            ).fetchone()[0] == ["PEN:2.00", "INK:3.00"]  # price back, name left as it is

        record = json.loads(
            cli("history", "--root", root, "--restore-id", recovery_id, "--json").stdout
        )
        assert record["kind"] == "row_recovery" and record["status"] == "succeeded"
        assert record["result"]["tables"]["app.users"]["inserted"] == 1
        assert record["inputs"]["user"] and record["inputs"]["restore_id"] == rid

        out = cli("recover", "--root", root, "--undo", recovery_id, "--json")
        assert out.returncode == 0, out.stderr
        assert [checksum(dsn, "app", t) for t in ("users", "products", "orders")] == before

        again = cli("recover", "--root", root, "--undo", recovery_id)
        assert again.returncode == 2 and "changed or was deleted since" in again.stderr

        bad = cli("recover", "--root", root, "--restore-id", rid, "--plan-only")
        assert bad.returncode == 2 and "choose what to recover" in bad.stderr
        assert "Traceback" not in bad.stderr
        bad = cli("recover", "--root", root, "--restore-id", rid, "--changed", "--columns", "nope")
        assert bad.returncode == 2 and "--columns nope" in bad.stderr
        bad = cli("recover", "--root", root, "--undo", "../../etc")
        assert bad.returncode == 2 and "is not valid" in bad.stderr  # never a path
        unknown = cli("recover", "--root", root, "--restore-id", "r-nope", "--deleted")
        assert unknown.returncode == 2 and "unknown restore id" in unknown.stderr
    finally:
        drop_database(demo_fleet, name)
