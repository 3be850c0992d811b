"""The papermill notebooks, executed for real against the local fleet; assertions on their outputs."""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import psycopg
import pytest

from restore_assets.core import notebooks
from restore_assets.core.compare import compare_schemas
from restore_assets.core.errors import RestoreError
from restore_assets.jobs.launch import run_schema_restore

pytestmark = pytest.mark.notebooks


def cell_html(nb_path: Path) -> list[str]:
    """The text/html outputs of every code cell of an executed notebook."""
    nb = nbformat.read(str(nb_path), as_version=4)
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "text/html" in data:
                out.append(data["text/html"])
            elif "text/markdown" in data:
                out.append(data["text/markdown"])
    return out


def summary_values(html_text: str) -> dict[str, str]:
    """label -> value from the report's summary table."""
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", html_text)
    return {html.unescape(k): html.unescape(v) for k, v in rows}


@pytest.fixture(scope="module")
def restored_pair(demo_fleet):
    """customer_a2 restored to a point, then changed in live: a known set of differences."""
    dsn = demo_fleet.production_dsn("tenant_a")
    point = datetime.now(UTC)
    time.sleep(0.2)
    out = run_schema_restore(
        {
            "database": "tenant_a",
            "schemas": ["customer_a2"],
            "restore_time": point.isoformat(),
            "suffix": "nb",
        },
        {"root": str(demo_fleet.root)},
        compare=False,
    )
    assert out["status"] == "succeeded", out
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM customer_a2.order_items WHERE id IN (SELECT id FROM customer_a2.order_items ORDER BY id LIMIT 7)"
        )
        conn.execute(
            "UPDATE customer_a2.products SET stock_quantity = stock_quantity + 1 WHERE id IN (1, 2, 3)"
        )
    yield dsn, out
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA customer_a2_nb CASCADE")


def test_comparison_report_numbers_equal_the_engine(restored_pair, tmp_path):
    dsn, _out = restored_pair
    result = compare_schemas(dsn, "customer_a2", "customer_a2_nb")
    data = result.to_dict()
    html_path = notebooks.render_comparison_report(
        tmp_path, data, {"restore_id": "r-test", "phases": []}
    )
    assert html_path.exists()
    page = html_path.read_text()
    assert "Post-restore comparison report" in page
    assert "ra-summary" in page  # the summary table is in the HTML
    assert "def " not in page and "import json" not in page  # code cells are hidden
    summary = summary_values(cell_html(html_path.with_suffix(".ipynb"))[1])
    assert (
        summary["rows only in restored (deleted since)"]
        == str(data["summary"]["rows_only_in_restored"])
        == "7"
    )
    assert summary["rows changed"] == str(data["summary"]["rows_changed"]) == "3"
    assert summary["tables with differences"] == str(data["summary"]["tables_with_differences"])
    assert "order_items" in summary["which"] and "products" in summary["which"]
    per_table = cell_html(html_path.with_suffix(".ipynb"))[2]
    assert "stock_quantity (3)" in per_table  # the changed column, with its count
    assert "<img" in page  # the matplotlib charts are embedded


def test_a_failing_report_is_a_warning_and_the_restored_schema_stays(
    demo_fleet, tmp_path, monkeypatch
):
    broken = tmp_path / "notebooks"
    shutil.copytree(notebooks.NOTEBOOK_DIR, broken)
    nb = nbformat.read(str(broken / "comparison_report.ipynb"), as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell("raise ValueError('injected failure in a report cell')")
    )
    nbformat.write(nb, str(broken / "comparison_report.ipynb"))
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", broken)
    with pytest.raises(RestoreError, match="injected failure in a report cell"):
        notebooks.render_comparison_report(tmp_path / "out", {"tables": {}, "schema": "s"})
    point = datetime.now(UTC)
    time.sleep(0.2)
    out = run_schema_restore(
        {
            "database": "tenant_b",
            "schemas": ["customer_b2"],
            "restore_time": point.isoformat(),
            "suffix": "nbfail",
        },
        {"root": str(demo_fleet.root)},
    )
    dsn = demo_fleet.production_dsn("tenant_b")
    try:
        # the data was restored: the report's failure is a warning with its cause, never a drop
        assert out["status"] == "succeeded", out
        assert "warning" in out["cause"] and "injected failure in a report cell" in out["cause"]
        assert f"restore-assets report --restore-id {out['restore_id']}" in out["cause"]
        assert out["phases"]["compare"]["outcome"] == "failed"
        with psycopg.connect(dsn) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'customer_b2_nbfail'"
            ).fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM customer_b2_nbfail.users").fetchone()[0] > 0
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:  # created by this test
            conn.execute("DROP SCHEMA IF EXISTS customer_b2_nbfail CASCADE")


def test_schema_restore_runbook_restores_and_reports(demo_fleet, tmp_path):
    point = datetime.now(UTC)
    time.sleep(0.2)
    out_nb = tmp_path / "runbook.ipynb"
    notebooks.execute(
        "schema_restore_runbook.ipynb",
        out_nb,
        {
            "root": str(demo_fleet.root),
            "database": "tenant_b",
            "schemas": ["customer_b1"],
            "restore_time": point.isoformat(),
            "suffix": "runbook",
        },
    )
    outputs = "\n".join(cell_html(out_nb))
    assert "customer_b1_runbook" in outputs
    assert "succeeded" in outputs
    assert "restore window" in outputs
    assert "copy back:" in outputs
    with psycopg.connect(demo_fleet.production_dsn("tenant_b"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM customer_b1_runbook.users").fetchone()[0] > 0
        conn.execute("DROP SCHEMA customer_b1_runbook CASCADE")


def test_runbook_dry_run_creates_nothing(demo_fleet, tmp_path):
    out_nb = tmp_path / "dry.ipynb"
    notebooks.execute(
        "schema_restore_runbook.ipynb",
        out_nb,
        {
            "root": str(demo_fleet.root),
            "database": "tenant_b",
            "schemas": ["customer_b1"],
            "restore_time": datetime.now(UTC).isoformat(),
            "suffix": "dry",
            "dry_run": True,
        },
    )
    outputs = "\n".join(cell_html(out_nb))
    assert "customer_b1_dry" in outputs and "dry run" in outputs
    with psycopg.connect(demo_fleet.production_dsn("tenant_b")) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'customer_b1_dry'"
            ).fetchone()[0]
            == 0
        )
    assert demo_fleet.temp_instances() == []


def test_runbook_refuses_a_bad_request_in_its_plan_cell(demo_fleet, tmp_path):
    with pytest.raises(RestoreError, match="unknown schema"):
        notebooks.execute(
            "schema_restore_runbook.ipynb",
            tmp_path / "bad.ipynb",
            {
                "root": str(demo_fleet.root),
                "database": "tenant_b",
                "schemas": ["nope"],
                "restore_time": datetime.now(UTC).isoformat(),
            },
        )
    assert json.loads((tmp_path / "bad.ipynb").read_text())[
        "cells"
    ]  # the executed notebook is kept for reading
