"""A report never costs a restore: a failed report is a warning, `report` renders it again, and the
notebooks ship inside the package (a wheel install restores and reports)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from restore_assets.backends.factory import build_services
from restore_assets.cli import main as cli
from restore_assets.core import notebooks
from restore_assets.jobs.launch import run_schema_restore
from tests import faults
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.notebooks]


def row_counts(dsn: str, schema: str) -> dict[str, int]:
    """Rows per ordinary table of a schema."""
    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1",
                (schema,),
            )
        ]
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(t)
                )
            ).fetchone()[0]
            for t in tables
        }


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a schema this test's restore created."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def request(schema: str, suffix: str) -> dict:
    """A point-in-time request for one tenant_b schema, a moment ago."""
    point = datetime.now(UTC)
    time.sleep(0.2)
    return {
        "database": "tenant_b",
        "schemas": [schema],
        "restore_time": point.isoformat(),
        "suffix": suffix,
    }


def test_a_failed_report_keeps_the_restore_and_report_renders_it_again(
    demo_fleet, tmp_path, monkeypatch, capsys
):
    dsn = demo_fleet.production_dsn("tenant_b")
    root = str(demo_fleet.root)
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", tmp_path / "no-notebooks-here")
    out = run_schema_restore(request("customer_b1", "rep"), {"root": root})
    rid = out["restore_id"]
    try:
        assert out["status"] == "succeeded", out
        assert out["cause"].startswith("warning:") and "comparison_report.ipynb" in out["cause"]
        assert out["phases"]["compare"]["outcome"] == "failed"
        assert row_counts(dsn, "customer_b1_rep") == row_counts(dsn, "customer_b1")  # it stayed
        assert demo_fleet.temp_instances() == []
        monkeypatch.undo()  # the notebooks are back: render the report again

        assert cli.main(["report", "--root", root, "--restore-id", rid]) == 0
        html = Path(capsys.readouterr().out.strip())
        assert html.name == "comparison-customer_b1.html" and html.is_file()
        assert "Post-restore comparison report" in html.read_text()
        rec = build_services({"root": root}).audit.get(rid)
        assert rec["status"] == "succeeded"
        report = [p for p in rec["phases"] if p["phase"] == "report"]
        assert [p["outcome"] for p in report] == ["succeeded"]
        assert report[0]["metadata"]["reports"]["customer_b1"]["html"] == str(html)
    finally:
        drop_schema(dsn, "customer_b1_rep")
    # the restored schema is gone: nothing to report on, said plainly
    assert cli.main(["report", "--root", root, "--restore-id", rid]) == 2
    err = capsys.readouterr().err
    assert "customer_b1_rep" in err and "no longer exist" in err and "Traceback" not in err


def test_report_is_refused_for_a_failed_or_unknown_restore(demo_fleet, capsys):
    root = str(demo_fleet.root)
    with faults.fail_at("post"):
        out = run_schema_restore(request("customer_b2", "repfail"), {"root": root})
    assert out["status"] == "failed"  # a data phase failing still fails the restore
    assert cli.main(["report", "--root", root, "--restore-id", out["restore_id"]]) == 2
    assert "is failed: only a succeeded restore" in capsys.readouterr().err
    assert cli.main(["report", "--root", root, "--restore-id", "r-never-was"]) == 2
    assert "unknown restore id 'r-never-was'" in capsys.readouterr().err


# ---------------------------------------------------------------------------- wheel install
def build_wheel(work: Path) -> Path:
    """Build the project's wheel from a copy of its sources (the repository stays untouched)."""
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "restore_assets",
        src / "restore_assets",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    # build isolation fetches the build backend (setuptools, wheel) from the package index
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = work.glob("restore_assets-*.whl")
    return wheel


def test_a_wheel_install_restores_and_reports(demo_fleet, tmp_path):
    wheel = build_wheel(tmp_path)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert (target / "restore_assets" / "notebook_files" / "comparison_report.ipynb").is_file()
    # the installed copy comes first (the kernel papermill starts inherits PYTHONPATH too); the
    # dependencies come from this environment; the repository is not on the path
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = tmp_path / "run"
    run.mkdir()

    def cli_json(*args: str) -> dict:
        res = subprocess.run(
            [sys.executable, "-m", "restore_assets.cli.main", *args, "--json"],
            cwd=run, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout)

    where = subprocess.run(
        [sys.executable, "-c", "import restore_assets.core.notebooks as n; print(n.NOTEBOOK_DIR)"],
        cwd=run, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where) == target / "restore_assets" / "notebook_files"

    dsn = demo_fleet.production_dsn("tenant_b")
    req = request("customer_b1", "whl")
    root = str(demo_fleet.root)
    try:
        out = cli_json(
            "restore", "--root", root, "--database", req["database"], "--schema", "customer_b1",
            "--restore-time", req["restore_time"], "--suffix", "whl",
        )  # fmt: skip
        assert out["status"] == "succeeded" and out["cause"] is None, out
        html = Path(out["report"]["reports"]["customer_b1"]["html"])
        assert html.is_file() and "Post-restore comparison report" in html.read_text()
        assert row_counts(dsn, "customer_b1_whl") == row_counts(dsn, "customer_b1")
        again = cli_json("report", "--root", root, "--restore-id", out["restore_id"])
        assert Path(again["reports"]["customer_b1"]["html"]) == html and html.is_file()
    finally:
        drop_schema(dsn, "customer_b1_whl")
