"""Copy-back: generated SQL copies exactly the chosen rows, refuses on drift, one transaction."""

from __future__ import annotations

import psycopg
import pytest

from restore_assets.core.compare import (
    CompareError,
    CopyBackRefused,
    apply_copy_back,
    compare_schemas,
    copy_back_sql,
)
from tests.integration.test_compare_engine import LIVE, RESTORED, build

pytestmark = pytest.mark.integration


@pytest.fixture
def shop(fresh_db: str) -> str:
    """A database holding the restored and the live schema with known differences."""
    build(fresh_db)
    return fresh_db


def row_text(dsn: str, schema: str, table: str, key: int) -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            psycopg.sql.SQL("SELECT t::text FROM {} t WHERE id = %s").format(
                psycopg.sql.Identifier(schema, table)
            ),
            (key,),
        ).fetchone()
    return row[0] if row else None


def test_copies_exactly_the_chosen_keys_and_reports_conflicts(shop: str) -> None:
    plan = copy_back_sql(shop, LIVE, RESTORED, "orders", keys=[{"id": 4}, {"id": 2}, {"id": 999}])
    assert plan.selected == 2  # 4 (deleted since) and 2 (changed since) exist in the restored copy
    assert plan.conflicts == [{"id": 2}]  # already in live: ON CONFLICT DO NOTHING would skip it
    assert plan.missing == [{"id": 999}]
    assert "total_x2" not in plan.columns  # generated: recomputed by the server
    assert "OVERRIDING SYSTEM VALUE" in plan.sql  # identity ALWAYS keeps the restored id
    assert plan.sql.startswith("WITH chosen AS MATERIALIZED") and '"shop"."orders"' in plan.sql

    done = apply_copy_back(shop, [plan])
    assert done == {"orders": {"inserted": 1, "selected": 2, "conflicts": [{"id": 2}]}}
    assert row_text(shop, LIVE, "orders", 4) == row_text(shop, RESTORED, "orders", 4)
    assert row_text(shop, LIVE, "orders", 2) != row_text(shop, RESTORED, "orders", 2)  # untouched

    after = compare_schemas(shop, LIVE, RESTORED).tables["orders"]
    assert (after.only_in_restored, after.only_in_live, after.changed) == (0, 3, 2)


def test_all_only_in_restored(shop: str) -> None:
    plan = copy_back_sql(shop, LIVE, RESTORED, "secrets", all_only_in_restored=True)
    assert (plan.selected, plan.conflicts, plan.missing) == (1, [], [])
    assert apply_copy_back(shop, [plan])["secrets"]["inserted"] == 1
    after = compare_schemas(shop, LIVE, RESTORED).tables["secrets"]
    assert not after.differs and after.rows_live == 10


def test_enum_column_of_the_other_schema_and_column_order(shop: str) -> None:
    # note was dropped in live: add it back (now last) and the columns match again
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute("ALTER TABLE shop.customers ADD COLUMN note text")
    plan = copy_back_sql(shop, LIVE, RESTORED, "customers", keys=[{"id": 3}, {"id": 7}])
    assert '::text::"shop"."tier"' in plan.sql  # shop_r.tier -> shop.tier through its label
    assert apply_copy_back(shop, [plan])["customers"]["inserted"] == 2
    with psycopg.connect(shop) as conn:
        assert conn.execute(
            "SELECT level::text, note, profile FROM shop.customers WHERE id = 3"
        ).fetchone() == ("free", "note 3", {"g": 3, "tags": ["x", 3]})
    assert compare_schemas(shop, LIVE, RESTORED).tables["customers"].only_in_restored == 0


def test_composite_keys_copy_back(shop: str) -> None:
    plan = copy_back_sql(
        shop,
        LIVE,
        RESTORED,
        "stock",
        keys=[{"sku": "sku-010", "wh": 1}, {"wh": 2, "sku": "sku-050"}],
    )
    assert plan.selected == 2 and plan.conflicts == [{"sku": "sku-050", "wh": 2}]
    assert apply_copy_back(shop, [plan])["stock"]["inserted"] == 1
    assert compare_schemas(shop, LIVE, RESTORED).tables["stock"].only_in_restored == 0


def test_refuses_when_live_columns_no_longer_match(shop: str) -> None:
    with pytest.raises(CopyBackRefused, match=r"missing in live: note \(text\)"):
        copy_back_sql(shop, LIVE, RESTORED, "customers", keys=[{"id": 3}])
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute("ALTER TABLE shop.secrets ALTER COLUMN v TYPE varchar(50)")
    with pytest.raises(CopyBackRefused, match=r"type changed: v \(restored text, live character"):
        copy_back_sql(shop, LIVE, RESTORED, "secrets", all_only_in_restored=True)
    with pytest.raises(CopyBackRefused, match="same primary key"):
        copy_back_sql(shop, LIVE, RESTORED, "tags", all_only_in_restored=True)


def test_bad_choices_are_refused(shop: str) -> None:
    with pytest.raises(CompareError, match="exactly one"):
        copy_back_sql(shop, LIVE, RESTORED, "orders")
    with pytest.raises(CompareError, match="exactly one"):
        copy_back_sql(shop, LIVE, RESTORED, "orders", keys=[{"id": 1}], all_only_in_restored=True)
    with pytest.raises(CompareError, match=r"primary key columns \['id'\]"):
        copy_back_sql(shop, LIVE, RESTORED, "orders", keys=[{"order_id": 1}])
    with pytest.raises(CompareError, match="shop_r.nope does not exist"):
        copy_back_sql(shop, LIVE, RESTORED, "nope", keys=[{"id": 1}])


def test_all_plans_run_in_one_transaction(shop: str) -> None:
    first = copy_back_sql(shop, LIVE, RESTORED, "orders", keys=[{"id": 4}])
    second = copy_back_sql(shop, LIVE, RESTORED, "secrets", all_only_in_restored=True)
    # Between planning and applying, live changes so that the second plan fails.
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute("ALTER TABLE shop.secrets ADD CONSTRAINT no_more CHECK (id < 10) NOT VALID")
    with pytest.raises(CompareError, match=r"shop\.secrets failed.*rolled back.*no_more"):
        apply_copy_back(shop, [first, second])
    assert row_text(shop, LIVE, "orders", 4) is None  # the first table's row was not kept
    assert row_text(shop, LIVE, "secrets", 10) is None
