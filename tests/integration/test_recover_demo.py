"""Row recovery on the demo's incident: a real point-in-time restore, then recover, compare, undo."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from restore_assets.core.compare import compare_schemas
from restore_assets.core.recover.plan import Options
from restore_assets.core.recover.run import apply, plan, undo
from restore_assets.demo import activity, incident
from restore_assets.jobs.launch import run_schema_restore
from tests.integration.recover_helpers import checksum, services_for

pytestmark = pytest.mark.integration

LIVE, RESTORED = "customer_a1", "customer_a1_rec"
TABLES = ("users", "products", "orders", "order_items")


def keyed_rows(dsn: str, schema: str, table: str) -> dict[str, str]:
    """id -> the row's text."""
    with psycopg.connect(dsn) as conn:
        return dict(
            conn.execute(
                sql.SQL("SELECT t.id::text, t::text FROM {} AS t").format(
                    sql.Identifier(schema, table)
                )
            ).fetchall()
        )


def counts(dsn: str) -> dict[str, int]:
    """Rows per live table."""
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(LIVE, t))
            ).fetchone()[0]
            for t in TABLES
        }


@pytest.fixture(scope="module")
def incident_restore(demo_fleet):
    """The incident on tenant_a.customer_a1, rows written after it, and a restore to just before."""
    dsn = demo_fleet.production_dsn("tenant_a")
    point = datetime.now(UTC)
    time.sleep(0.5)
    damage = incident(dsn, LIVE)
    with psycopg.connect(dsn, autocommit=True) as conn:  # the application goes on after T
        uid = conn.execute(
            "SELECT customer_a1.register_user('After Incident', 'after.incident@example.com')"
        ).fetchone()[0]
        order = conn.execute(
            'SELECT customer_a1.place_order(%s, \'[{"product_id": 1, "quantity": 2},'
            ' {"product_id": 2, "quantity": 1}]\')',
            (uid,),
        ).fetchone()[0]
        touched = conn.execute(
            "UPDATE customer_a1.users SET balance = balance + 1"
            " WHERE id = (SELECT max(id) FROM customer_a1.users WHERE id < %s) RETURNING id",
            (uid,),
        ).fetchone()[0]
    out = run_schema_restore(
        {
            "database": "tenant_a",
            "schemas": [LIVE],
            "restore_time": point.isoformat(),
            "suffix": "rec",
        },
        {"backend": "local", "root": str(demo_fleet.root), "html_report": False},
        compare=False,
    )
    assert out["status"] == "succeeded", out.get("cause")
    try:
        yield {
            "restore_id": out["restore_id"],
            "dsn": dsn,
            "damage": damage,
            "added": {"users": [str(uid)], "orders": [str(order)]},
            "touched_user": str(touched),
        }
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for (name,) in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
                (RESTORED, f"{LIVE}\\_undo\\_%"),
            ).fetchall():
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def test_recover_deleted_rows_and_prices_then_compare_then_undo(demo_fleet, incident_restore):
    services = services_for(demo_fleet)
    dsn, damage = incident_restore["dsn"], incident_restore["damage"]
    sums = {t: checksum(dsn, LIVE, t) for t in TABLES}
    before = {t: keyed_rows(dsn, LIVE, t) for t in TABLES}
    restored = {t: keyed_rows(dsn, RESTORED, t) for t in TABLES}
    with psycopg.connect(dsn) as conn:
        seq_before = conn.execute("SELECT last_value FROM customer_a1.user_id_seq").fetchone()[0]

    p = plan(
        services,
        incident_restore["restore_id"],
        Options(deleted=True, changed=True, columns=["price"]),
    )
    assert p.refused is None
    summary = p.summary()["tables"]
    assert summary["customer_a1.users"]["inserts"] == damage["deleted"]["users"]
    assert summary["customer_a1.orders"]["inserts"] == damage["deleted"]["orders"]
    assert summary["customer_a1.order_items"]["inserts"] == damage["deleted"]["order_items"]
    assert summary["customer_a1.products"]["updates"] == damage["updated"]["products"]
    tables = p.schemas[0].tables
    assert sorted(int(k[0]) for k in tables["products"].updates) == damage["keys"]["products"]
    assert sorted(int(k[0]) for k in tables["users"].inserts) == damage["keys"]["users"]
    assert sorted(int(k[0]) for k in tables["orders"].inserts) == damage["keys"]["orders"]
    assert p.schemas[0].order == ["products", "users", "orders", "order_items"]
    assert "UPDATE ONLY" in p.sql and "INSERT INTO" in p.sql
    assert {t: checksum(dsn, LIVE, t) for t in TABLES} == sums  # planning wrote nothing

    out = apply(services, p)
    assert out["tables"]["customer_a1.users"]["inserted"] == damage["deleted"]["users"]
    assert out["tables"]["customer_a1.products"]["updated"] == damage["updated"]["products"]
    record = services.audit.get(p.recovery_id)
    assert record["kind"] == "row_recovery" and record["status"] == "succeeded"
    assert record["result"]["user"] and record["result"]["tables"] == out["tables"]
    assert services.artifacts.get(p.recovery_id, "recovery-plan.sql").decode() == p.sql
    assert any(
        r["kind"] == "recovery-undo-schema" and r["details"].get("oid") for r in record["resources"]
    )

    # comparing again proves it: nothing deleted since T is missing, no price differs
    cmp = compare_schemas(dsn, LIVE, RESTORED)
    for t in ("users", "orders", "order_items"):
        assert cmp.tables[t].only_in_restored == 0
    assert cmp.tables["orders"].only_in_live == 1 and cmp.tables["users"].only_in_live == 1
    assert "price" not in cmp.tables["products"].changed_columns
    after = {t: keyed_rows(dsn, LIVE, t) for t in TABLES}
    inserted = {t: {k[0] for k in tables[t].inserts} for t in TABLES}
    for t in ("users", "orders", "order_items"):
        assert set(after[t]) == set(before[t]) | inserted[t]
        assert all(after[t][k] == v for k, v in before[t].items())  # nothing else changed
        assert all(after[t][k] == restored[t][k] for k in inserted[t])  # the rows at T
    for k in incident_restore["added"]["users"]:
        assert k in after["users"]  # rows added since T are still there
    assert (
        after["users"][incident_restore["touched_user"]]
        == before["users"][incident_restore["touched_user"]]
    )
    corrupted = {str(k) for k in damage["keys"]["products"]}
    with psycopg.connect(dsn) as conn:
        prices = dict(
            conn.execute(
                "SELECT l.id::text, (l.price = r.price AND l.name LIKE '%%[IMPORTED]')"
                " FROM customer_a1.products l JOIN customer_a1_rec.products r USING (id)"
            ).fetchall()
        )
        seq_after = conn.execute("SELECT last_value FROM customer_a1.user_id_seq").fetchone()[0]
    assert all(prices[k] for k in corrupted)  # price back, the name (not chosen) left as is
    assert all(
        after["products"][k] == v for k, v in before["products"].items() if k not in corrupted
    )
    assert seq_after >= seq_before  # never moved backwards

    undone = undo(services, p.recovery_id)
    assert undone["tables"]["customer_a1.products"]["restored"] == damage["updated"]["products"]
    assert {t: checksum(dsn, LIVE, t) for t in TABLES} == sums  # row for row as before


def test_apply_while_the_application_writes(demo_fleet, incident_restore):
    services = services_for(demo_fleet)
    dsn = incident_restore["dsn"]
    p = plan(
        services,
        incident_restore["restore_id"],
        Options(deleted=True, changed=True, columns=["price"], on_conflict="skip"),
    )
    planned = {t: len(p.schemas[0].tables[t].inserts) for t in ("users", "orders", "order_items")}
    assert all(planned.values())
    planned_prices = len(p.schemas[0].tables["products"].updates)
    start = counts(dsn)
    stop = threading.Event()
    result: dict = {}

    def app() -> None:
        result.update(
            activity(
                demo_fleet.production_dsn,
                seconds=60,
                layout={"tenant_a": [LIVE]},
                rate=40,
                stop=stop,
                seed=11,
            )
        )

    worker = threading.Thread(target=app, daemon=True)
    worker.start()
    try:
        time.sleep(1.5)
        out = apply(services, p)  # the tables are written by the application meanwhile
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    mine = result["by_schema"][f"tenant_a.{LIVE}"]
    print(f"activity {mine}; recovery {out['tables']}; moved {len(out['moved_since_plan'])}")
    assert mine["orders_created"] > 0
    end = counts(dsn)
    done = {t: out["tables"][f"{LIVE}.{t}"]["inserted"] for t in planned}
    assert done == planned  # every deleted row is back (the application deletes nothing)
    # no lost write: every row the application committed is there, next to the recovered ones
    assert end["users"] == start["users"] + mine["users_created"] + done["users"]
    assert end["orders"] == start["orders"] + mine["orders_created"] + done["orders"]
    assert end["order_items"] == (
        start["order_items"] + mine["order_items_created"] + done["order_items"]
    )
    with psycopg.connect(dsn) as conn:  # nothing left waiting or holding locks
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " OR state = 'idle in transaction'"
        ).fetchone()[0]
    assert waiting == 0
    # prices repriced by the application after the plan were left alone (skip), others set back
    products = out["tables"][f"{LIVE}.products"]
    assert products["updated"] + products["skipped"] == planned_prices
