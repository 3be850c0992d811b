"""The demo tenant DDL on real PostgreSQL: every object kind the restore has to carry over."""

import psycopg
import pytest
from psycopg import sql

from restore_assets.core.errors import InvalidRequest
from restore_assets.demo import schema_ddl
from restore_assets.demo.schema import as_written, ddl_parts

pytestmark = pytest.mark.integration


def _catalog(conn: psycopg.Connection, schema: str) -> dict:
    one = {"s": schema}
    rows = conn.execute(
        "SELECT c.relname, c.relkind, c.relrowsecurity FROM pg_class c"
        " WHERE c.relnamespace = %(s)s::regnamespace",
        {"s": sql.Identifier(schema).as_string(conn)},
    ).fetchall()
    return {
        "relations": {name: kind for name, kind, _ in rows},
        "rls": sorted(name for name, _, rls in rows if rls),
        "enums": conn.execute(
            "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)"
            " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " JOIN pg_enum e ON e.enumtypid = t.oid WHERE n.nspname = %(s)s GROUP BY 1",
            one,
        ).fetchall(),
        "functions": dict(
            conn.execute(
                "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n"
                " ON n.oid = p.pronamespace WHERE n.nspname = %(s)s",
                one,
            ).fetchall()
        ),
        "triggers": sorted(
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %(s)s AND NOT tgisinternal",
                one,
            )
        ),
        "policies": sorted(
            r[0]
            for r in conn.execute(
                "SELECT policyname FROM pg_policies WHERE schemaname = %(s)s", one
            )
        ),
        "gin": sorted(
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %(s)s AND indexdef LIKE '%%USING gin%%'",
                one,
            )
        ),
        "constraints": dict(
            conn.execute(
                "SELECT conname, contype FROM pg_constraint c JOIN pg_namespace n"
                " ON n.oid = c.connamespace WHERE n.nspname = %(s)s",
                one,
            ).fetchall()
        ),
        "fk_actions": dict(
            conn.execute(
                "SELECT conname, confdeltype FROM pg_constraint c JOIN pg_namespace n"
                " ON n.oid = c.connamespace WHERE n.nspname = %(s)s AND contype = 'f'",
                one,
            ).fetchall()
        ),
    }


def test_tenant_ddl_creates_every_object_kind(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        conn.execute(schema_ddl("customer_a1"))
        cat = _catalog(conn, "customer_a1")
        seqs = dict(
            conn.execute(
                "SELECT sequencename, start_value FROM pg_sequences WHERE schemaname = 'customer_a1'"
            ).fetchall()
        )
        defaults = dict(
            conn.execute(
                "SELECT table_name || '.' || column_name, column_default"
                " FROM information_schema.columns WHERE table_schema = 'customer_a1'"
                " AND column_default IS NOT NULL"
            ).fetchall()
        )
    rel = cat["relations"]
    for table in ("users", "products", "orders", "order_items"):
        assert rel[table] == "r"
    assert rel["order_summary"] == rel["customer_lifetime_value"] == "v"
    assert dict(cat["enums"]) == {
        "user_status": ["active", "inactive", "pending", "suspended"],
        "order_status": ["pending", "processing", "shipped", "completed", "cancelled", "refunded"],
    }
    assert seqs["user_id_seq"] == 1000 and seqs["order_number_seq"] == 100000
    assert defaults["users.id"] == "nextval('customer_a1.user_id_seq'::regclass)"
    assert "nextval('customer_a1.order_number_seq'::regclass)" in defaults["orders.order_number"]
    assert defaults["users.user_code"] == "customer_a1.generate_user_code()"
    # function bodies are text: the schema is written in them, qualified, as a developer would
    fns = cat["functions"]
    assert {"generate_user_code", "update_updated_at", "register_user", "place_order"} <= set(fns)
    assert "nextval('customer_a1.user_code_seq')" in fns["generate_user_code"]
    assert "nextval('customer_a1.user_id_seq')" in fns["register_user"]
    assert "INSERT INTO customer_a1.orders" in fns["place_order"]
    assert "NEW.updated_at" in fns["update_updated_at"]
    assert cat["triggers"] == ["orders_updated_at", "products_updated_at", "users_updated_at"]
    assert cat["rls"] == ["order_items", "orders", "users"]
    assert "users_tenant" in cat["policies"] and len(cat["policies"]) == 4
    assert cat["gin"] == ["products_attributes_idx", "products_tags_idx", "users_metadata_idx"]
    cons = cat["constraints"]
    assert cons["users_email_key"] == cons["products_sku_key"] == "u"
    assert cons["products_price_check"] == cons["order_items_quantity_check"] == "c"
    assert cat["fk_actions"] == {
        "orders_user_id_fkey": "c",
        "order_items_order_id_fkey": "c",
        "order_items_product_id_fkey": "r",
    }


@pytest.mark.parametrize("schema", ["Weird \"Cust'o", "user", "Kunde_Zoë"])
def test_tenant_ddl_quotes_names_that_need_it(fresh_db, schema):
    s = sql.Identifier(schema)
    with psycopg.connect(fresh_db) as conn:
        conn.execute(schema_ddl(schema))
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.products (sku, name, price) VALUES ('S1', 'Crème', 2.50)"
            ).format(s)
        )
        uid = conn.execute(
            sql.SQL("SELECT {}.register_user('Zoë', 'z@example.com')").format(s)
        ).fetchone()[0]
        oid = conn.execute(
            sql.SQL('SELECT {}.place_order(%s, \'[{{"product_id": 1, "quantity": 3}}]\')').format(
                s
            ),
            (uid,),
        ).fetchone()[0]
        row = conn.execute(
            sql.SQL(
                "SELECT order_number, item_count, total_amount FROM {}.order_summary WHERE order_id = %s"
            ).format(s),
            (oid,),
        ).fetchone()
    assert uid == 1000
    assert row[0] == "ORD-100000" and row[1] == 1 and str(row[2]) == "7.50"
    assert as_written(schema).startswith('"')


def test_bodies_use_the_bare_name_when_it_is_valid_sql():
    pre, post = ddl_parts("customer_b2")
    assert "nextval('customer_b2.user_id_seq')" in pre
    assert "SET search_path = customer_b2, pg_catalog" in pre
    assert 'CREATE TABLE "customer_b2".users' in pre
    assert 'CREATE VIEW "customer_b2".order_summary' in post
    assert "{{" not in pre + post


@pytest.mark.parametrize("bad", ["", "a$b", "x" * 64, None])
def test_bad_schema_names_are_refused(bad):
    with pytest.raises(InvalidRequest):
        schema_ddl(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seconds": -1},
        {"seconds": float("nan")},
        {"seconds": 1, "rate": 0},
        {"seconds": 1, "layout": {}},
    ],
)
def test_activity_refuses_bad_arguments_before_connecting(kwargs):
    from restore_assets.demo import activity

    with pytest.raises(InvalidRequest):
        activity("host=127.0.0.1 port=1 dbname=x", **kwargs)


@pytest.mark.parametrize("rows", [0, -5, 2.5, True])
def test_seed_refuses_bad_rows_before_connecting(rows):
    from restore_assets.demo import seed

    with pytest.raises(InvalidRequest, match="rows"):
        seed("host=127.0.0.1 port=1 dbname=x", rows=rows)
