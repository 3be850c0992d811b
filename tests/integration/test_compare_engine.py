"""The comparison engine on a restored schema and a live schema with known differences."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from restore_assets.core.compare import CompareError, compare_schemas, rows
from restore_assets.core.compare.engine import begin_read_only, read_catalogs

pytestmark = pytest.mark.integration

LIVE, RESTORED = "shop", "shop_r"

# Built once per schema with search_path set to it.
SCHEMA = r"""
CREATE TYPE tier AS ENUM ('free', 'pro');
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TABLE customers (
  id int PRIMARY KEY, name text NOT NULL, email text, profile jsonb, balance numeric(12, 2),
  note text, level tier
);
CREATE TABLE orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id int NOT NULL REFERENCES customers (id),
  total numeric, meta json, created timestamptz, where_ point, doc xml,
  total_x2 numeric GENERATED ALWAYS AS (total * 2) STORED
);
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE tags (label text, n int);
CREATE TABLE secrets (id int PRIMARY KEY, owner text NOT NULL, v text);
ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY secrets_all ON secrets USING (true);
CREATE POLICY secrets_mine ON secrets AS RESTRICTIVE USING (owner = current_user);
CREATE TABLE events (id serial PRIMARY KEY, what text);
CREATE TABLE untouched (id int PRIMARY KEY, v text);
CREATE TABLE legacy (id int PRIMARY KEY);
CREATE TABLE stock (sku text, wh int, qty int, PRIMARY KEY (sku, wh));
CREATE TABLE measures (id int, at date, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE measures_2023 PARTITION OF measures FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE measures_rest PARTITION OF measures DEFAULT;

INSERT INTO customers
  SELECT g, 'customer ' || g, 'c' || g || '@example.com',
         jsonb_build_object('g', g, 'tags', jsonb_build_array('x', g)), g * 10.5, 'note ' || g,
         (CASE WHEN g % 2 = 0 THEN 'pro' ELSE 'free' END)::tier
    FROM generate_series(1, 20) g;
INSERT INTO orders (customer_id, total, meta, created, where_, doc)
  SELECT 1 + g % 2, g * 1.25, ('{"a": ' || g || '}')::json,
         '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 day', point(g, g),
         ('<o n="' || g || '"/>')::xml
    FROM generate_series(1, 10) g;
INSERT INTO tags VALUES ('a', 1), ('a', 1), ('a', 1), ('b', 2), ('c', 3), ('c', 3);
INSERT INTO secrets SELECT g, 'owner' || (g % 3), 'secret ' || g FROM generate_series(1, 10) g;
INSERT INTO events (what) SELECT 'event ' || g FROM generate_series(1, 5) g;
INSERT INTO untouched SELECT g, 'v' || g FROM generate_series(1, 100) g;
INSERT INTO legacy VALUES (1);
INSERT INTO measures SELECT g, '2023-06-01'::date + g * 10, g FROM generate_series(1, 60) g;
INSERT INTO stock SELECT 'sku-' || lpad((g / 3)::text, 3, '0'), g % 3, g FROM generate_series(0, 299) g;
"""

# What happened on the live schema since the restore point.
CHANGES = r"""
DELETE FROM customers WHERE id IN (3, 7);
INSERT INTO customers (id, name, balance, level) VALUES (21, 'new 21', 1, 'free'),
                                                       (22, 'new 22', 2, 'pro');
UPDATE customers SET name = 'renamed 5' WHERE id = 5;
UPDATE customers SET profile = '{"g": 6, "changed": true}', balance = 0.5 WHERE id = 6;
UPDATE customers SET balance = 11 WHERE id = 8;
ALTER TABLE customers DROP COLUMN note;
ALTER TABLE customers ADD CONSTRAINT customers_balance_check CHECK (balance >= 0);
DELETE FROM orders WHERE id = 4;
INSERT INTO orders (customer_id, total, meta) SELECT 1, g, '{}' FROM generate_series(1, 3) g;
UPDATE orders SET meta = '{"a":2}' WHERE id = 2;
UPDATE orders SET meta = '{"a": 99}' WHERE id = 9;
CREATE INDEX orders_customer_idx ON orders (customer_id);
DELETE FROM tags WHERE ctid = (SELECT min(ctid) FROM tags WHERE label = 'a');
INSERT INTO tags VALUES ('c', 3), ('d', 4);
DELETE FROM secrets WHERE id = 10;
SELECT setval(pg_get_serial_sequence('events', 'id'), 1);
DROP TABLE legacy;
DELETE FROM stock WHERE sku = 'sku-010' AND wh = 1;
DELETE FROM measures WHERE id = 2;
UPDATE measures SET v = 0 WHERE id = 50;
UPDATE stock SET qty = -1 WHERE sku = 'sku-050' AND wh = 2;
INSERT INTO stock VALUES ('zzz', 0, 0);
CREATE TABLE coupons (code text PRIMARY KEY);
"""


def build(dsn: str) -> None:
    """Create the restored and live schemas with their known differences."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in (RESTORED, LIVE):
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            conn.execute(SCHEMA)
        conn.execute(CHANGES)  # search_path is the live schema
        conn.execute("ANALYZE")


@pytest.fixture
def shop(fresh_db: str) -> str:
    """A database holding the restored and the live schema."""
    build(fresh_db)
    return fresh_db


@pytest.mark.parametrize("parallel", [1, 3])
def test_finds_exactly_the_known_row_differences(shop: str, parallel: int) -> None:
    result = compare_schemas(shop, LIVE, RESTORED, parallel=parallel)
    t = result.tables
    assert sorted(t) == [
        "customers",
        "events",
        "measures",  # partitioned: compared through its parent, partitions not listed
        "orders",
        "secrets",
        "stock",
        "tags",
        "untouched",
    ]

    c = t["customers"]
    assert (c.rows_restored, c.rows_live) == (20, 20)
    assert (c.only_in_restored, c.only_in_live, c.changed) == (2, 2, 3)
    assert c.samples["only_in_restored"] == [{"id": 3}, {"id": 7}]
    assert c.samples["only_in_live"] == [{"id": 21}, {"id": 22}]
    assert c.samples["changed"] == [{"id": 5}, {"id": 6}, {"id": 8}]
    assert c.changed_columns == {"name": 1, "profile": 1, "balance": 2}
    assert "note" not in c.compared_columns  # dropped in live: drift, not a change per row
    assert c.has_primary_key and c.key_columns == ["id"]

    o = t["orders"]
    assert (o.rows_restored, o.rows_live) == (10, 12)
    assert (o.only_in_restored, o.only_in_live, o.changed) == (1, 3, 2)
    assert o.samples == {
        "only_in_restored": [{"id": 4}],
        "only_in_live": [{"id": 11}, {"id": 12}, {"id": 13}],
        "changed": [{"id": 2}, {"id": 9}],
    }
    assert o.changed_columns == {"meta": 2}  # json compared by its text: whitespace counts

    tags = t["tags"]
    assert not tags.has_primary_key
    assert (tags.rows_restored, tags.rows_live) == (6, 7)
    assert (tags.only_in_restored, tags.only_in_live, tags.changed) == (1, 2, 0)
    assert tags.samples["only_in_restored"] == [{"label": "a", "n": 1}]
    assert tags.samples["only_in_live"] == [{"label": "c", "n": 3}, {"label": "d", "n": 4}]

    s = t["secrets"]  # FORCE ROW LEVEL SECURITY + a restrictive policy: still every row
    assert (s.rows_restored, s.rows_live, s.only_in_restored, s.only_in_live) == (10, 9, 1, 0)
    assert s.samples["only_in_restored"] == [{"id": 10}]

    st = t["stock"]  # composite text + int key
    assert st.key_columns == ["sku", "wh"]
    assert (st.rows_restored, st.rows_live, st.only_in_restored, st.only_in_live) == (
        300,
        300,
        1,
        1,
    )
    assert st.samples == {
        "only_in_restored": [{"sku": "sku-010", "wh": 1}],
        "only_in_live": [{"sku": "zzz", "wh": 0}],
        "changed": [{"sku": "sku-050", "wh": 2}],
    }
    assert st.changed_columns == {"qty": 1}

    m = t["measures"]
    assert (m.rows_restored, m.rows_live, m.only_in_restored, m.changed) == (60, 59, 1, 1)
    assert m.samples["only_in_restored"] == [{"id": 2, "at": "2023-06-21"}]
    assert m.samples["changed"] == [{"id": 50, "at": "2024-10-13"}]

    for name in ("events", "untouched"):
        assert not t[name].differs, name
    assert t["untouched"].rows_live == 100

    summary = result.summary
    assert summary["tables_compared"] == 8
    assert summary["tables_with_differences"] == 6
    assert summary["rows_only_in_restored"] == 2 + 1 + 1 + 1 + 1 + 1
    assert summary["rows_only_in_live"] == 2 + 3 + 2 + 1
    assert summary["rows_changed"] == 3 + 2 + 1 + 1


def test_finds_exactly_the_schema_drift(shop: str) -> None:
    drift = compare_schemas(shop, LIVE, RESTORED).drift
    assert drift.tables_only_in_restored == ["legacy"]
    assert drift.tables_only_in_live == ["coupons"]
    assert drift.columns.only_in_restored == [
        {"table": "customers", "column": "note", "type": "text"}
    ]
    assert drift.columns.only_in_live == [] and drift.columns.changed == []
    # enum-typed columns name their schema: normalized, so no false drift
    assert [(i["table"], i["name"]) for i in drift.indexes.only_in_live] == [
        ("coupons", "coupons_pkey"),
        ("orders", "orders_customer_idx"),
    ]
    assert [(i["table"], i["name"]) for i in drift.indexes.only_in_restored] == [
        ("legacy", "legacy_pkey")
    ]
    assert drift.indexes.changed == []
    assert [(i["table"], i["name"]) for i in drift.constraints.only_in_live] == [
        ("coupons", "coupons_pkey"),
        ("customers", "customers_balance_check"),
    ]
    assert drift.constraints.only_in_live[1]["definition"] == "CHECK ((balance >= (0)::numeric))"
    assert [(i["table"], i["name"]) for i in drift.constraints.only_in_restored] == [
        ("legacy", "legacy_pkey")
    ]
    # the FK names the other schema's table, the trigger the other schema's function: normalized
    assert drift.constraints.changed == []
    assert drift.triggers.only_in_restored == drift.triggers.only_in_live == []
    assert drift.triggers.changed == []
    assert len(drift.policies) == 0 and len(drift.row_security) == 0
    assert drift.count == 2 + 1 + 3 + 3


def test_sequences_last_value_against_max_key(shop: str) -> None:
    seqs = compare_schemas(shop, LIVE, RESTORED).sequences
    assert sorted(seqs) == ["events_id_seq", "orders_id_seq"]
    orders = seqs["orders_id_seq"]
    assert orders.restored and orders.live
    assert (orders.restored.last_value, orders.restored.max_key) == (10, 10)
    assert (orders.live.last_value, orders.live.max_key) == (13, 13)
    assert orders.restored.columns == ["orders.id"] and orders.ok is True
    events = seqs["events_id_seq"]
    assert events.live and events.restored
    assert (events.live.last_value, events.live.max_key, events.live.ok) == (1, 5, False)
    assert events.restored.ok is True and events.ok is False


def test_json_report_shape(shop: str) -> None:
    result = compare_schemas(shop, LIVE, RESTORED, sample_size=1)
    data = json.loads(result.to_json())
    assert data["database"] == shop.split("dbname=")[1].split()[0]
    assert (data["schema"], data["restored"]) == (LIVE, RESTORED)
    assert data["generated_at"]
    orders = data["tables"]["orders"]
    assert set(orders) >= {
        "rows_restored",
        "rows_live",
        "only_in_restored",
        "only_in_live",
        "changed",
        "changed_columns",
        "samples",
        "has_primary_key",
    }
    assert orders["samples"] == {
        "only_in_restored": [{"id": 4}],
        "only_in_live": [{"id": 11}],
        "changed": [{"id": 2}],
    }
    assert data["drift"]["tables"] == {"only_in_restored": ["legacy"], "only_in_live": ["coupons"]}
    assert data["sequences"]["events_id_seq"]["ok"] is False
    assert data["sequences"]["events_id_seq"]["live_max_key"] == 5
    assert data["summary"]["tables_with_differences"] == 6
    assert data["summary"]["sequences_behind"] == 1


def test_role_without_bypassrls_gets_an_error_not_filtered_numbers(shop: str) -> None:
    role = "compare_auditor"
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        for schema in (LIVE, RESTORED):
            conn.execute(
                sql.SQL(
                    "GRANT USAGE ON SCHEMA {s} TO {r}; GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}; GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}"
                ).format(s=sql.Identifier(schema), r=sql.Identifier(role))
            )
    try:
        dsn = psycopg.conninfo.make_conninfo(shop, user=role)
        with pytest.raises(CompareError) as info:
            compare_schemas(dsn, LIVE, RESTORED)
        message = str(info.value)
        assert "secrets" in message and "BYPASSRLS" in message
        # the same role with BYPASSRLS sees every row
        with psycopg.connect(shop, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(role)))
        assert compare_schemas(dsn, LIVE, RESTORED).tables["secrets"].rows_restored == 10
    finally:
        with psycopg.connect(shop, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_missing_schema_is_a_clear_error(shop: str) -> None:
    with pytest.raises(CompareError, match="restored schema 'nope' does not exist"):
        compare_schemas(shop, LIVE, "nope")
    with pytest.raises(CompareError, match="live schema 'nope' does not exist"):
        compare_schemas(shop, "nope", RESTORED)


def test_workers_read_the_coordinators_snapshot_read_only(shop: str) -> None:
    with psycopg.connect(shop) as coord:
        begin_read_only(coord)
        snapshot = coord.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        with psycopg.connect(shop, autocommit=True) as writer:
            writer.execute("INSERT INTO shop.untouched VALUES (1000, 'later')")
        with psycopg.connect(shop) as worker:
            begin_read_only(worker, snapshot)
            count = worker.execute("SELECT count(*) FROM shop.untouched").fetchone()
            assert count == (100,)  # the row committed after the snapshot is not seen
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                worker.execute("DELETE FROM shop.untouched")
    later = compare_schemas(shop, LIVE, RESTORED).tables["untouched"]
    assert (later.only_in_live, later.samples["only_in_live"]) == (1, [{"id": 1000}])


def test_key_range_slices_give_the_same_answer(shop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = compare_schemas(shop, LIVE, RESTORED, parallel=1)
    monkeypatch.setattr(rows, "SLICE_MIN_ROWS", 50)
    with psycopg.connect(shop) as conn:
        live, restored = read_catalogs(conn, LIVE, RESTORED)
        for name in ("stock", "untouched", "measures"):
            tasks = rows.plan_table(
                conn, RESTORED, LIVE, restored.tables[name], live.tables[name], 3
            )
            assert len(tasks) == 3, name  # split on the first key column (text, int)
    sliced = compare_schemas(shop, LIVE, RESTORED, parallel=3)

    def strip(d: dict) -> dict:
        for t in d["tables"].values():
            t.pop("seconds")
        d.pop("generated_at")
        d["summary"].pop("seconds")
        return d

    assert strip(sliced.to_dict()) == strip(whole.to_dict())
