"""seed, activity and incident against a dedicated real PostgreSQL cluster (seed creates databases)."""

import shutil
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from restore_assets.backends.local.pg import Cluster, start_new_cluster
from restore_assets.core.errors import InvalidRequest
from restore_assets.demo import DEMO_LAYOUT, TABLES, activity, incident, seed, sizes, table_counts
from tests.conftest import scratch_dir

pytestmark = pytest.mark.integration

ROWS = 200


@pytest.fixture(scope="module")
def cluster():
    root = scratch_dir("ra-demo-")
    c = start_new_cluster(root / "data")
    try:
        yield c
    finally:
        c.remove()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def seeded(cluster: Cluster):
    """The default layout, seeded once; tests that damage data use layouts of their own."""
    messages: list[str] = []
    result = seed(cluster.dsn, rows=ROWS, progress=messages.append)
    return {"result": result, "messages": messages}


def _checksum(dsn: str, schema: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT md5(string_agg(x::text, '|' ORDER BY x.id)) FROM {} AS x").format(
                    sql.Identifier(schema, t)
                )
            ).fetchone()[0]
            for t in TABLES
        }


def _state(dsn: str, schema: str) -> dict:
    """Counts plus a fingerprint of every table, to tell whether anything changed."""
    return {"counts": table_counts(dsn, schema), "md5": _checksum(dsn, schema)}


def test_seed_creates_exactly_the_layout(cluster, seeded):
    expected = {"users": ROWS, "products": ROWS // 2, "orders": 2 * ROWS, "order_items": 5 * ROWS}
    assert seeded["result"]["databases"] == {
        db: {schema: expected for schema in schemas} for db, schemas in DEMO_LAYOUT.items()
    }
    with psycopg.connect(cluster.dsn()) as conn:
        dbs = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert set(DEMO_LAYOUT) <= dbs
    for db, schemas in DEMO_LAYOUT.items():
        with psycopg.connect(cluster.dsn(db)) as conn:
            found = {
                r[0]
                for r in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%'"
                    " AND nspname NOT IN ('information_schema', 'public')"
                )
            }
        assert found == set(schemas)
        for schema in schemas:
            assert table_counts(cluster.dsn(db), schema) == expected
    assert any("customer_b2: done" in m for m in seeded["messages"])


def test_row_counts_scale_with_rows(cluster):
    result = seed(cluster.dsn(), rows=12, layout={"scale_db": ["small"]})
    counts = result["databases"]["scale_db"]["small"]
    assert counts == {"users": 12, "products": 10, "orders": 24, "order_items": 60}
    assert sizes(12) == {"users": 12, "products": 10, "orders": 24}
    counts = seed(cluster.dsn(), rows=1000, layout={"scale_db": ["small"]}, replace=True)
    assert counts["databases"]["scale_db"]["small"] == {
        "users": 1000,
        "products": 500,
        "orders": 2000,
        "order_items": 5000,
    }


def test_seeded_data_is_varied_and_consistent(cluster, seeded):
    with psycopg.connect(cluster.dsn("tenant_a")) as conn:
        row = conn.execute(
            """SELECT min(id), max(id), min(user_code), count(*) FILTER (WHERE age IS NULL),
                      count(*) FILTER (WHERE interests IS NULL),
                      count(*) FILTER (WHERE name ~ '[^\\x01-\\x7f]'),
                      count(*) FILTER (WHERE metadata ? 'prefs'),
                      (SELECT last_value FROM customer_a1.user_id_seq)
                 FROM customer_a1.users"""
        ).fetchone()
        assert row[0] == 1000 and row[1] == 1000 + ROWS - 1 and row[7] == 1000 + ROWS - 1
        assert row[2] == "USR-00000001"
        assert all(n > 0 for n in row[3:7])
        numbers = conn.execute(
            "SELECT min(order_number), count(DISTINCT order_number) FROM customer_a1.orders"
        ).fetchone()
        assert numbers == ("ORD-100000", 2 * ROWS)
        mismatched = conn.execute(
            """SELECT count(*) FROM customer_a1.orders o
                LEFT JOIN (SELECT order_id, sum(line_total) AS t FROM customer_a1.order_items
                           GROUP BY 1) i ON i.order_id = o.id
                WHERE o.total_amount <> coalesce(i.t, 0)"""
        ).fetchone()[0]
        assert mismatched == 0
        before_users = conn.execute(
            "SELECT count(*) FROM customer_a1.orders o JOIN customer_a1.users u ON u.id = o.user_id"
            " WHERE o.created_at < u.created_at"
        ).fetchone()[0]
        assert before_users == 0
        # the next user continues the sequence where the seed left it
        new_id = conn.execute(
            "SELECT customer_a1.register_user('Zoë Test', 'zoe.test@example.com')"
        ).fetchone()[0]
        assert new_id == 1000 + ROWS
        conn.rollback()


def test_seed_is_repeatable(cluster):
    seed(cluster.dsn, rows=50, layout={"repeat_db": ["r1"]})
    first = _checksum(cluster.dsn("repeat_db"), "r1")
    seed(cluster.dsn, rows=50, layout={"repeat_db": ["r1"]}, replace=True)
    assert _checksum(cluster.dsn("repeat_db"), "r1") == first


def test_seed_refuses_an_existing_schema_unless_replace(cluster, seeded):
    before = _checksum(cluster.dsn("tenant_b"), "customer_b1")
    with pytest.raises(InvalidRequest, match="customer_a1.*already exists.*tenant_a.*replace"):
        seed(cluster.dsn(), rows=5)
    assert _checksum(cluster.dsn("tenant_b"), "customer_b1") == before


def test_triggers_update_updated_at(cluster, seeded):
    with psycopg.connect(cluster.dsn("tenant_a")) as conn:
        for table in ("users", "products", "orders"):
            t = sql.Identifier("customer_a1", table)
            row_id, old = conn.execute(
                sql.SQL("SELECT id, updated_at FROM {} ORDER BY id LIMIT 1").format(t)
            ).fetchone()
            conn.execute(
                sql.SQL("UPDATE {} SET created_at = created_at WHERE id = %s").format(t), (row_id,)
            )
            new, now = conn.execute(
                sql.SQL("SELECT updated_at, now() FROM {} WHERE id = %s").format(t), (row_id,)
            ).fetchone()
            assert new == now and new > old, table
        conn.rollback()


def test_row_level_security_limits_the_app_role(cluster, seeded):
    with psycopg.connect(cluster.dsn("tenant_a")) as conn:
        rls = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'customer_a1'::regnamespace"
            " AND relrowsecurity ORDER BY 1"
        ).fetchall()
        assert [r[0] for r in rls] == ["order_items", "orders", "users"]
        total = conn.execute("SELECT count(*) FROM customer_a1.users").fetchone()[0]
        conn.execute("SET ROLE demo_app")
        assert conn.execute("SELECT count(*) FROM customer_a1.users").fetchone()[0] == 0
        conn.execute("SELECT set_config('app.tenant', 'tenant_a', true)")
        assert conn.execute("SELECT count(*) FROM customer_a1.users").fetchone()[0] == total > 0
        conn.execute("SELECT set_config('app.tenant', 'tenant_b', true)")
        assert conn.execute("SELECT count(*) FROM customer_a1.users").fetchone()[0] == 0
        conn.rollback()


def test_views_query(cluster, seeded):
    with psycopg.connect(cluster.dsn("tenant_b")) as conn:
        summary = conn.execute(
            "SELECT count(*), sum(item_count), sum(units) > sum(item_count)"
            " FROM customer_b1.order_summary"
        ).fetchone()
        assert summary == (2 * ROWS, 5 * ROWS, True)
        clv = conn.execute(
            "SELECT count(*), array_agg(DISTINCT tier ORDER BY tier), sum(orders)"
            " FROM customer_b1.customer_lifetime_value"
        ).fetchone()
        kept = conn.execute(
            "SELECT count(*) FROM customer_b1.orders WHERE status NOT IN ('cancelled', 'refunded')"
        ).fetchone()[0]
    assert clv[0] == ROWS and set(clv[1]) <= {"bronze", "silver", "gold", "platinum"}
    assert clv[2] == kept


def test_activity_changes_every_schema_and_stops_on_time(cluster, seeded):
    before = {(db, s): _state(cluster.dsn(db), s) for db, ss in DEMO_LAYOUT.items() for s in ss}
    started = time.monotonic()
    result = activity(cluster.dsn, seconds=2.0, rate=40, seed=7)
    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed < 3.0
    assert result["errors"] == 0, result["last_error"]
    assert result["operations"] >= 60
    assert (
        result["orders_created"] > 0 and result["order_items_created"] >= result["orders_created"]
    )
    for (db, schema), old in before.items():
        new = _state(cluster.dsn(db), schema)
        changed = [t for t in TABLES if new["md5"][t] != old["md5"][t]]
        assert changed, f"{db}.{schema} unchanged"
        done = result["by_schema"][f"{db}.{schema}"]
        assert new["counts"]["users"] - old["counts"]["users"] == done["users_created"]
        assert new["counts"]["orders"] - old["counts"]["orders"] == done["orders_created"]
        assert (
            new["counts"]["order_items"] - old["counts"]["order_items"]
            == done["order_items_created"]
        )


def test_activity_stops_when_told(cluster, seeded):
    stop = threading.Event()
    out: dict = {}
    worker = threading.Thread(
        target=lambda: out.update(activity(cluster.dsn(), seconds=60, stop=stop))
    )
    worker.start()
    time.sleep(0.5)
    stop.set()
    worker.join(timeout=3)
    assert not worker.is_alive()
    assert out["seconds"] < 2 and out["operations"] >= 1


def test_incident_deletes_and_corrupts_exactly_what_it_reports(cluster):
    layout = {"incident_db": ["victim", "bystander"]}
    seed(cluster.dsn, rows=ROWS, layout=layout)
    dsn = cluster.dsn("incident_db")
    before = table_counts(dsn, "victim")
    bystander = _state(dsn, "bystander")
    with psycopg.connect(dsn) as conn:
        products_before = dict(
            (r[0], r[1:])
            for r in conn.execute("SELECT id, name, price, updated_at FROM victim.products")
        )
    report = incident(dsn, "victim")
    after = table_counts(dsn, "victim")
    deleted, keys = report["deleted"], report["keys"]
    assert report["database"] == "incident_db" and report["started_at"] < report["committed_at"]
    assert before["orders"] - after["orders"] == deleted["orders"] == len(keys["orders"]) > 0
    assert before["order_items"] - after["order_items"] == deleted["order_items"] > 0
    assert before["users"] - after["users"] == deleted["users"] == len(keys["users"]) > 0
    assert after["products"] == before["products"]
    assert report["steps"][0]["orders"] == 40  # a tenth of the orders
    with psycopg.connect(dsn) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM victim.orders WHERE id = ANY(%s)", (keys["orders"],)
            ).fetchone()[0]
            == 0
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM victim.users WHERE id = ANY(%s)", (keys["users"],)
            ).fetchone()[0]
            == 0
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM victim.order_items WHERE order_id = ANY(%s)",
                (keys["orders"],),
            ).fetchone()[0]
            == 0
        )
        products_after = dict(
            (r[0], r[1:])
            for r in conn.execute("SELECT id, name, price, updated_at FROM victim.products")
        )
    changed = sorted(pid for pid in products_before if products_before[pid] != products_after[pid])
    assert changed == keys["products"] and report["updated"]["products"] == len(changed) == 10
    for pid in changed:
        name, price, updated_at = products_after[pid]
        old_name, old_price, old_updated_at = products_before[pid]
        assert name.endswith(" [IMPORTED]") and name != old_name
        assert name.removesuffix(" [IMPORTED]").casefold() == old_name.casefold()
        assert price == (old_price * 100 if old_price else Decimal("9999.99"))
        assert updated_at > old_updated_at  # the trigger fired
    assert _state(dsn, "bystander") == bystander


def test_incident_on_a_missing_schema_says_so(cluster, seeded):
    with pytest.raises(InvalidRequest, match="seed the demo first"):
        incident(cluster.dsn("tenant_a"), "no_such_schema")
