"""The comparison's row details: deleted/added rows in full, changed rows side by side, bounded, cut."""

from __future__ import annotations

import psycopg
import pytest

from restore_assets.core.compare import compare_schemas
from restore_assets.core.compare.details import details_html

pytestmark = pytest.mark.integration

DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.items (id int PRIMARY KEY, name text, note text, qty int);
CREATE TABLE {s}.log (line text);
"""


def test_details_show_the_rows_of_the_first_keys_of_each_kind(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for s in ("live", "live_r"):
            conn.execute(psycopg.sql.SQL(DDL).format(s=psycopg.sql.Identifier(s)))
        conn.execute(
            "INSERT INTO live_r.items SELECT g, 'n' || g, CASE WHEN g = 1 THEN repeat('x', 1000)"
            " END, g FROM generate_series(1, 10) g"
        )
        conn.execute("INSERT INTO live.items SELECT * FROM live_r.items WHERE id > 3")  # 1-3 gone
        conn.execute("INSERT INTO live.items VALUES (11, 'new', NULL, 1)")  # added since
        conn.execute("UPDATE live.items SET qty = 99, name = '<b>' WHERE id IN (5, 6, 7)")
        conn.execute("INSERT INTO live_r.log VALUES ('a'), ('b')")
        conn.execute("INSERT INTO live.log VALUES ('a')")
    result = compare_schemas(fresh_db, "live", "live_r", sample_size=2, detail_width=50)
    items = result.to_dict()["tables"]["items"]
    assert (items["only_in_restored"], items["only_in_live"], items["changed"]) == (3, 1, 3)
    d = items["details"]
    assert [r["id"] for r in d["only_in_restored"]] == ["1", "2"]  # the first 2 of 3, in full
    assert d["only_in_restored"][0]["note"] == "x" * 50 + "… [950 more characters]"
    assert d["only_in_restored"][1] == {"id": "2", "name": "n2", "note": None, "qty": "2"}
    assert d["only_in_live"] == [{"id": "11", "name": "new", "note": None, "qty": "1"}]
    assert [c["key"] for c in d["changed"]] == [{"id": "5"}, {"id": "6"}]
    assert d["changed"][0]["changed"] == ["name", "qty"]
    assert (d["changed"][0]["restored"]["qty"], d["changed"][0]["live"]["qty"]) == ("5", "99")
    assert result.to_dict()["tables"]["log"]["details"]["only_in_restored"] == [{"line": "b"}]

    page = details_html("items", items)
    assert "changed since (restored | live) — first 2 of 3" in page
    assert "deleted since (only in the restored copy) — first 2 of 3" in page
    assert "added since (only in live) — all 1" in page
    assert "1 column(s) equal on both sides in these rows: not shown" in page  # note
    assert "<th>id</th><th>name</th><th>note</th><th>qty</th>" in page  # the table's order
    assert "<th></th><th>id</th><th>name</th><th>qty</th>" in page  # key, then what differs
    assert '<td class="ra-diff">99</td>' in page and "&lt;b&gt;" in page and "<b>" not in page
    assert compare_schemas(fresh_db, "live", "live_r", detail_width=0).tables["items"].details == {}
