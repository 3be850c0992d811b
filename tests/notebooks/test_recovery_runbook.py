"""recovery_runbook.ipynb, executed with papermill: plan with sample rows, apply, compare again."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import psycopg
import pytest

from restore_assets.core import notebooks
from tests.integration.recover_helpers import (
    copy_as_restored,
    drop_database,
    fresh_database,
    record_restore,
    services_for,
)

pytestmark = pytest.mark.notebooks

DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.users (id int PRIMARY KEY, email text NOT NULL, bio text);
CREATE TABLE {s}.products (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2) NOT NULL);
"""


def outputs(path: Path) -> list[str]:
    """The html/markdown outputs of every cell, in order."""
    nb = nbformat.read(str(path), as_version=4)
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            out.append(data.get("text/html") or data.get("text/markdown") or "")
    return out


@pytest.mark.parametrize("apply", [False, True])
def test_recovery_runbook_plans_shows_rows_applies_and_compares(demo_fleet, tmp_path, apply):
    name = f"rec_nb_{int(apply)}"
    dsn = fresh_database(demo_fleet, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL(DDL).format(s=psycopg.sql.Identifier("app")))
            conn.execute(
                "INSERT INTO app.users VALUES (1, 'a@x', %s), (2, 'b@x', 'short')", ("x" * 500,)
            )
            conn.execute("INSERT INTO app.products VALUES (1, 'pen', 2.5), (2, 'ink', 3)")
        copy_as_restored(dsn, DDL, "app", "app_r", ["users", "products"])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM app.users WHERE id = 1")
            conn.execute("UPDATE app.products SET price = 999 WHERE id = 2")
        rid = record_restore(services_for(demo_fleet), dsn, name, {"app": "app_r"})
        out = tmp_path / "recovery.ipynb"
        notebooks.execute(
            "recovery_runbook.ipynb",
            out,
            {
                "root": str(demo_fleet.root),
                "restore_id": rid,
                "deleted": True,
                "changed": True,
                "columns": ["price"],
                "apply": apply,
            },
        )
        text = "\n".join(outputs(out))
        assert "<td>app.users</td><td>1</td><td>0</td>" in text  # 1 insert, 0 updates
        assert "<td>app.products</td><td>0</td><td>1</td>" in text  # 0 inserts, 1 update
        assert "a@x" in text and "x" * 120 + "… [380 more characters]" in text  # cut, marked
        assert "<td>price</td><td>3.00</td><td>999.00</td>" in text  # restored | live
        with psycopg.connect(dsn) as conn:
            users = conn.execute("SELECT count(*) FROM app.users").fetchone()[0]
        if not apply:
            assert "**not applied**" in text and users == 1
            return
        assert users == 2 and "--undo rec-" in text
        # compared again: nothing only in restored, no changed row left
        assert "<td>app.users</td><td>0</td><td>0</td><td>0</td>" in text
        assert "<td>app.products</td><td>0</td><td>0</td><td>0</td>" in text
    finally:
        drop_database(demo_fleet, name)


def test_comparison_report_shows_the_rows_with_the_json_totals(fresh_db, tmp_path):
    from restore_assets.core.compare import compare_schemas

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for s in ("live", "live_r"):
            conn.execute(
                psycopg.sql.SQL(
                    "CREATE SCHEMA {s}; CREATE TABLE {s}.t (id int PRIMARY KEY, v text)"
                ).format(s=psycopg.sql.Identifier(s))
            )
        conn.execute("INSERT INTO live_r.t SELECT g, 'v' || g FROM generate_series(1, 9) g")
        conn.execute("INSERT INTO live.t SELECT * FROM live_r.t WHERE id > 4")
        conn.execute("UPDATE live.t SET v = 'changed' WHERE id = 9")
    data = compare_schemas(fresh_db, "live", "live_r", sample_size=3).to_dict()
    page = notebooks.render_comparison_report(tmp_path, data, name="details").read_text()
    t = data["tables"]["t"]
    assert (t["only_in_restored"], t["changed"]) == (4, 1)
    assert f"deleted since (only in the restored copy) — first 3 of {t['only_in_restored']}" in page
    assert f"changed since (restored | live) — all {t['changed']}" in page
    assert '<td class="ra-diff">changed</td>' in page and '<td class="ra-diff">v9</td>' in page
    # one file that works offline: nothing loaded from elsewhere
    assert re.findall(r'(?:src|href)="(?:https?:)?//[^"]*"', page) == []
