"""Post waves and the table-level filter, on a dump-shaped script (no database)."""

from restore_assets.core.ddl import build_bundle
from restore_assets.core.ddl.parallel import plan_post
from restore_assets.core.ddl.tables import restrict_to_tables

DUMP = """
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE SCHEMA s;
CREATE TABLE s.users (id integer NOT NULL, email text);
CREATE TABLE s.orders (id integer NOT NULL, user_id integer, total numeric);
CREATE TABLE s.items (id integer NOT NULL, order_id integer);
ALTER TABLE s.items ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME s.items_id_seq START WITH 1);
CREATE FUNCTION s.order_count(u integer) RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM s.orders WHERE user_id = u; END;
ALTER TABLE ONLY s.users ADD CONSTRAINT users_pkey PRIMARY KEY (id);
ALTER TABLE ONLY s.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);
ALTER TABLE ONLY s.items ADD CONSTRAINT items_pkey PRIMARY KEY (id);
CREATE VIEW s.big_orders AS SELECT id FROM s.orders WHERE total > 100;
CREATE MATERIALIZED VIEW s.totals AS SELECT user_id, sum(total) AS t FROM s.orders GROUP BY user_id WITH NO DATA;
ALTER TABLE ONLY s.users ADD CONSTRAINT users_email_key UNIQUE (email);
CREATE INDEX orders_user_idx ON s.orders USING btree (user_id);
CREATE INDEX totals_idx ON s.totals USING btree (user_id);
ALTER TABLE ONLY s.orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES s.users(id);
ALTER TABLE ONLY s.items ADD CONSTRAINT items_order_fk FOREIGN KEY (order_id) REFERENCES s.orders(id);
COMMENT ON COLUMN s.orders.total IS 'mentions s.orders in text';
GRANT SELECT ON SEQUENCE s.items_id_seq TO PUBLIC;
CREATE POLICY own ON s.items USING (order_id IN (SELECT id FROM s.orders));
"""


def bundle():
    return build_bundle(DUMP, {"s": "s_x"})


def test_post_waves_put_builds_per_table_fks_together_and_matview_indexes_last():
    plan = plan_post(bundle().post)
    assert set(plan.per_table) == {"s_x.users", "s_x.orders"}
    assert any("users_email_key" in s for s in plan.per_table["s_x.users"])
    assert [("orders_user_fk" in s, "items_order_fk" in s) for s in plan.foreign_keys] == [
        (True, False),
        (False, True),
    ]
    # the matview is created in post, so its index must follow it in the ordered rest
    rest = "\n".join(plan.rest)
    assert rest.index("CREATE MATERIALIZED VIEW") < rest.index("totals_idx")
    assert plan.session  # the dump's session settings start every wave


def test_restrict_keeps_named_tables_and_drops_what_refers_to_others():
    b = restrict_to_tables(bundle(), {"s_x": {"users", "orders"}})
    text = "\n".join(b.pre + b.post)
    assert "CREATE TABLE s_x.users" in text and "CREATE TABLE s_x.orders" in text
    assert "s_x.items" not in text  # table, identity sequence grant, FK and policy all gone
    assert "orders_user_fk" in text
    assert "order_count" in text  # BEGIN ATOMIC over a kept table stays


def test_restrict_cascades_through_functions_views_and_comments():
    b = restrict_to_tables(bundle(), {"s_x": {"items"}})
    text = "\n".join(b.pre + b.post)
    assert "CREATE TABLE s_x.items" in text
    for gone in (
        "s_x.orders",
        "s_x.users",
        "order_count",
        "big_orders",
        "totals",
        "items_order_fk",
        "CREATE POLICY",
    ):
        assert gone not in text, gone
    assert "GRANT SELECT ON SEQUENCE s_x.items_id_seq" in text


def test_post_waves_carry_each_statements_settings_in_dump_order():
    post = [
        "SET LOCAL default_tablespace = ''",
        "SET LOCAL default_table_access_method = heap",
        "SET LOCAL default_tablespace = ts1",
        "CREATE INDEX a_v ON s.a USING btree (v)",
        "SET LOCAL default_tablespace = ''",
        "CREATE INDEX b_v ON s.b USING btree (v)",
        "SET LOCAL default_table_access_method = heap2",
        "CREATE MATERIALIZED VIEW s.mv_a AS SELECT 1 AS x WITH NO DATA",
        "SET LOCAL default_table_access_method = heap",
        "CREATE MATERIALIZED VIEW s.mv_b AS SELECT 2 AS x WITH NO DATA",
    ]
    plan = plan_post(post)
    # the header is every wave's prefix; nothing after it is hoisted
    assert plan.session == post[:3]
    assert plan.per_table["s.a"] == ["CREATE INDEX a_v ON s.a USING btree (v)"]
    assert plan.per_table["s.b"] == [
        "SET LOCAL default_tablespace = ''",
        "CREATE INDEX b_v ON s.b USING btree (v)",
    ]
    assert plan.rest == [
        "SET LOCAL default_tablespace = ''",
        "SET LOCAL default_table_access_method = heap2",
        "CREATE MATERIALIZED VIEW s.mv_a AS SELECT 1 AS x WITH NO DATA",
        "SET LOCAL default_table_access_method = heap",
        "CREATE MATERIALIZED VIEW s.mv_b AS SELECT 2 AS x WITH NO DATA",
    ]
