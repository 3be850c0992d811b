"""Row recovery on hand-made schemas: foreign keys (composite, self-referencing, deferred) and conflicts."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from restore_assets.core.recover.plan import Options, RecoveryRefused
from restore_assets.core.recover.run import apply, plan, undo
from tests.integration.recover_helpers import (
    checksum,
    copy_as_restored,
    drop_database,
    fresh_database,
    record_restore,
    rows,
    services_for,
)

pytestmark = pytest.mark.integration

TREE_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.teams (org int, id int, name text NOT NULL, PRIMARY KEY (org, id));
CREATE TABLE {s}.members (
    id int PRIMARY KEY, org int NOT NULL, team int NOT NULL, name text NOT NULL,
    manager_id int REFERENCES {s}.members (id),
    FOREIGN KEY (org, team) REFERENCES {s}.teams (org, id) ON DELETE CASCADE
);
"""


@pytest.fixture
def db(demo_fleet, request):
    name = "rec_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]  # one per test
    dsn = fresh_database(demo_fleet, name)
    yield name, dsn
    drop_database(demo_fleet, name)


def test_composite_and_self_referencing_keys_bring_their_rows_parents_first(demo_fleet, db):
    name, dsn = db
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL(TREE_DDL).format(s=psycopg.sql.Identifier("app")))
        conn.execute("INSERT INTO app.teams VALUES (1, 1, 'red'), (1, 2, 'blue'), (2, 1, 'x')")
        # a management chain inside team (1, 1): 10 <- 11 <- 12, and 13 in another team
        conn.execute(
            "INSERT INTO app.members VALUES (10, 1, 1, 'a', NULL), (11, 1, 1, 'b', 10),"
            " (12, 1, 1, 'c', 11), (13, 1, 2, 'd', 10), (14, 2, 1, 'e', NULL)"
        )
    copy_as_restored(dsn, TREE_DDL, "app", "app_r", ["teams", "members"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE app.members SET manager_id = NULL WHERE id = 13")
        conn.execute("DELETE FROM app.teams WHERE (org, id) = (1, 1)")  # cascades to 10, 11, 12
        conn.execute("INSERT INTO app.members VALUES (20, 2, 1, 'new', 14)")  # added since
    services = services_for(demo_fleet)
    rid = record_restore(services, dsn, name, {"app": "app_r"})

    p = plan(services, rid, Options(deleted=True, tables=["members"]))
    s = p.schemas[0]
    assert s.order == ["teams", "members"]  # the composite parent first
    assert s.tables["members"].inserts == [["10"], ["11"], ["12"]]
    assert s.tables["teams"].inserts == [["1", "1"]]
    added = s.tables["teams"].reasons
    assert added[0]["fk"] == "members_org_team_fkey" and added[0]["count"] == 1
    assert p.summary()["totals"]["added_by_foreign_keys"] == 1
    with psycopg.connect(dsn) as conn:  # a plan writes nothing
        assert conn.execute("SELECT count(*) FROM app.members").fetchone()[0] == 3

    out = apply(services, p)
    assert out["tables"]["app.members"]["inserted"] == 3
    assert out["tables"]["app.teams"]["inserted"] == 1
    restored_rows = set(rows(dsn, "app_r", "members"))
    live_rows = set(rows(dsn, "app", "members"))
    assert {r for r in restored_rows if r[0][:4] in ("(10,", "(11,", "(12,")} <= live_rows
    assert "(20,2,1,new,14)" in {r[0] for r in live_rows}  # added since: still there
    assert "(13,1,2,d,)" in {r[0] for r in live_rows}  # changed since, not chosen: unchanged


CYCLE_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.a (id int PRIMARY KEY, b_id int);
CREATE TABLE {s}.b (id int PRIMARY KEY, a_id int REFERENCES {s}.a (id));
ALTER TABLE {s}.a ADD CONSTRAINT a_b_fkey FOREIGN KEY (b_id) REFERENCES {s}.b (id) %s;
"""


@pytest.mark.parametrize("deferrable", [True, False])
def test_a_cycle_of_keys_is_inserted_with_the_deferrable_one_deferred(demo_fleet, db, deferrable):
    name, dsn = db
    ddl = CYCLE_DDL % ("DEFERRABLE INITIALLY IMMEDIATE" if deferrable else "")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL(ddl).format(s=psycopg.sql.Identifier("app")))
        with conn.transaction():
            conn.execute("INSERT INTO app.a VALUES (1, NULL)")
            conn.execute("INSERT INTO app.b VALUES (1, 1)")
            conn.execute("UPDATE app.a SET b_id = 1 WHERE id = 1")
    copy_as_restored(dsn, ddl, "app", "app_r", ["a", "b"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE app.a SET b_id = NULL")
        conn.execute("DELETE FROM app.b")
        conn.execute("DELETE FROM app.a")
    services = services_for(demo_fleet)
    rid = record_restore(services, dsn, name, {"app": "app_r"})
    p = plan(services, rid, Options(deleted=True, tables=["a"]))
    s = p.schemas[0]
    assert s.tables["a"].inserts == [["1"]] and s.tables["b"].inserts == [["1"]]
    if not deferrable:
        assert p.refused and "form a cycle and none is DEFERRABLE" in p.refused
        with pytest.raises(RecoveryRefused, match="cycle"):
            apply(services, p)
        assert rows(dsn, "app", "a") == []
        return
    assert s.defer == ["a_b_fkey"] and s.order == ["a", "b"]
    assert "SET CONSTRAINTS" in p.sql
    apply(services, p)
    assert rows(dsn, "app", "a") == [("(1,1)",)] and rows(dsn, "app", "b") == [("(1,1)",)]


SHOP_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.users (id int PRIMARY KEY, email text NOT NULL UNIQUE, name text);
CREATE TABLE {s}.orders (
    id int PRIMARY KEY, user_id int NOT NULL REFERENCES {s}.users (id) ON DELETE CASCADE,
    total numeric(8,2) NOT NULL
);
"""


def _shop(demo_fleet, db):
    name, dsn = db
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL(SHOP_DDL).format(s=psycopg.sql.Identifier("app")))
        conn.execute(
            "INSERT INTO app.users VALUES (1, 'one@x', 'one'), (2, 'two@x', 'two'),"
            " (3, 'three@x', 'three')"
        )
        conn.execute("INSERT INTO app.orders VALUES (10, 1, 5), (20, 2, 7), (30, 3, 9)")
    copy_as_restored(dsn, SHOP_DDL, "app", "app_r", ["users", "orders"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM app.users WHERE id IN (1, 2)")  # orders 10, 20 cascade
        # user 1's email registered again by a new account: a unique conflict for re-inserting 1
        conn.execute("INSERT INTO app.users VALUES (100, 'one@x', 'one again')")
    services = services_for(demo_fleet)
    return services, dsn, record_restore(services, dsn, name, {"app": "app_r"})


@pytest.mark.parametrize("policy", ["fail", "skip", "overwrite"])
def test_a_unique_key_taken_in_live_since(demo_fleet, db, policy):
    services, dsn, rid = _shop(demo_fleet, db)
    before = checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")
    p = plan(services, rid, Options(deleted=True, on_conflict=policy))
    users = p.schemas[0].tables["users"]
    assert [c["constraint"] for c in users.conflicts] == ["users_email_key"]
    assert users.conflicts[0]["key"] == ["1"] and users.conflicts[0]["live_key"] == ["100"]
    if policy in ("fail", "overwrite"):  # overwrite replaces a row with the same key only
        assert p.refused and "users_email_key" in p.refused
        with pytest.raises(RecoveryRefused):
            apply(services, p)
        assert (checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")) == before
        return
    # skip: user 1 stays out, and so does its order (it depends on it)
    assert users.inserts == [["2"]]
    assert [s["key"] for s in users.skipped] == [["1"]]
    orders = p.schemas[0].tables["orders"]
    assert orders.inserts == [["20"]] and [s["key"] for s in orders.skipped] == [["10"]]
    apply(services, p)
    assert {r[0] for r in rows(dsn, "app", "users")} == {
        "(2,two@x,two)",
        "(3,three@x,three)",
        '(100,one@x,"one again")',
    }
    assert {r[0] for r in rows(dsn, "app", "orders")} == {"(20,2,7.00)", "(30,3,9.00)"}


@pytest.mark.parametrize("policy", ["fail", "skip", "overwrite"])
def test_a_key_inserted_in_live_between_plan_and_apply(demo_fleet, db, policy):
    services, dsn, rid = _shop(demo_fleet, db)
    p = plan(services, rid, Options(deleted=True, on_conflict="skip", tables=["orders"]))
    p.options.on_conflict = policy  # the policy apply uses for what moved since the plan
    assert p.schemas[0].tables["users"].inserts == [["2"]]  # brought by order 20
    with psycopg.connect(dsn, autocommit=True) as conn:  # meanwhile, the application re-creates 2
        conn.execute("INSERT INTO app.users VALUES (2, 'two.new@x', 'two, new')")
    before = checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")
    if policy == "fail":
        with pytest.raises(RecoveryRefused, match="moved since the plan"):
            apply(services, p)
        assert (checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")) == before
        return
    out = apply(services, p)
    users = [r[0] for r in rows(dsn, "app", "users")]
    if policy == "skip":
        assert '(2,two.new@x,"two, new")' in users
        assert [r[0] for r in rows(dsn, "app", "orders")] == ["(30,3,9.00)"]  # 20 depends on 2
        assert out["tables"]["app.orders"]["skipped"] == 2  # 10 at plan time, 20 at apply
    else:
        assert "(2,two@x,two)" in users  # replaced by its restored version
        assert out["tables"]["app.users"]["overwritten"] == 1
        assert "(20,2,7.00)" in [r[0] for r in rows(dsn, "app", "orders")]
        undone = undo(services, p.recovery_id)  # the overwritten row gets its live version back
        assert undone["tables"]["app.users"]["restored"] == 1
        assert (checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")) == before


def test_undo_is_refused_when_live_moved_since_the_recovery(demo_fleet, db):
    services, dsn, rid = _shop(demo_fleet, db)
    p = plan(services, rid, Options(deleted=True, on_conflict="skip"))
    apply(services, p)
    with psycopg.connect(dsn, autocommit=True) as conn:  # the application uses the re-inserted user
        conn.execute("INSERT INTO app.orders VALUES (40, 2, 1)")
    before = checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")
    with pytest.raises(RecoveryRefused, match="reference rows it inserted"):
        undo(services, p.recovery_id)
    assert (checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")) == before


SEQ_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.events (id serial PRIMARY KEY, what text NOT NULL);
CREATE TABLE {s}.inserted_log (id int);
CREATE FUNCTION {s}.log_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO {s}.inserted_log VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER events_log AFTER INSERT ON {s}.events FOR EACH ROW EXECUTE FUNCTION {s}.log_insert();
"""


@pytest.mark.parametrize("triggers", [True, False])
def test_sequences_only_move_forward_and_triggers_fire_unless_disabled(demo_fleet, db, triggers):
    name, dsn = db
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL(SEQ_DDL).format(s=psycopg.sql.Identifier("app")))
        conn.execute("SET search_path = app")
        conn.execute("INSERT INTO app.events (what) VALUES ('a'), ('b')")  # ids 1, 2 from serial
        conn.execute("INSERT INTO app.events VALUES (50, 'explicit id')")  # the sequence stays at 2
    copy_as_restored(dsn, SEQ_DDL, "app", "app_r", ["events"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM app.events WHERE id IN (1, 50)")
        conn.execute("TRUNCATE app.inserted_log")
    services = services_for(demo_fleet)
    rid = record_restore(services, dsn, name, {"app": "app_r"})
    p = plan(services, rid, Options(deleted=True, tables=["events"], triggers=triggers))
    assert "setval" in p.sql
    apply(services, p)
    with psycopg.connect(dsn, autocommit=True) as conn:
        logged = sorted(r[0] for r in conn.execute("SELECT id FROM app.inserted_log"))
        assert logged == ([1, 50] if triggers else [])
        assert conn.execute("SELECT last_value FROM app.events_id_seq").fetchone()[0] == 50
        conn.execute("SELECT setval('app.events_id_seq', 100)")
        conn.execute("DELETE FROM app.events WHERE id = 50")
    # a sequence ahead of every key is left where it is (never moved back)
    p = plan(services, rid, Options(deleted=True, tables=["events"], triggers=triggers))
    apply(services, p)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT last_value FROM app.events_id_seq").fetchone()[0] == 100


def test_a_restore_of_two_schemas_is_recovered_in_one_transaction(demo_fleet, db):
    name, dsn = db
    for live in ("one", "two"):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL(SHOP_DDL).format(s=psycopg.sql.Identifier(live)))
            conn.execute(
                psycopg.sql.SQL(
                    "INSERT INTO {}.users VALUES (1, 'a@x', 'a'), (2, 'b@x', 'b')"
                ).format(psycopg.sql.Identifier(live))
            )
        copy_as_restored(dsn, SHOP_DDL, live, f"{live}_r", ["users", "orders"])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DELETE FROM {}.users WHERE id = 2").format(
                    psycopg.sql.Identifier(live)
                )
            )
    with psycopg.connect(dsn, autocommit=True) as conn:  # a conflict in the second schema only
        conn.execute("INSERT INTO two.users VALUES (3, 'b@x', 'took the email')")
    services = services_for(demo_fleet)
    rid = record_restore(services, dsn, name, {"one": "one_r", "two": "two_r"})
    p = plan(services, rid, Options(deleted=True))
    assert [s.live_schema for s in p.schemas] == ["one", "two"]
    assert p.refused and "two.users" in p.refused
    before = checksum(dsn, "one", "users")
    with pytest.raises(RecoveryRefused):
        apply(services, p)
    assert checksum(dsn, "one", "users") == before  # all or nothing
    p = plan(services, rid, Options(deleted=True), ["one"])
    out = apply(services, p)
    assert out["tables"] == {
        "one.users": {"inserted": 1, "updated": 0, "overwritten": 0, "skipped": 0}
    }


SKU_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.products (id int PRIMARY KEY, sku text NOT NULL, price numeric(8,2));
"""
SKU_UNIQUE = {  # a unique constraint, or a unique index without a constraint
    "constraint": "ALTER TABLE {s}.products ADD CONSTRAINT products_sku_key UNIQUE (sku);",
    "index": "CREATE UNIQUE INDEX products_sku_key ON {s}.products (sku) INCLUDE (price);",
}


@pytest.mark.parametrize("unique", ["constraint", "index"])
@pytest.mark.parametrize("policy", ["fail", "skip", "overwrite"])
def test_setting_a_row_back_to_a_unique_value_another_row_took(demo_fleet, db, policy, unique):
    name, dsn = db
    ddl = SKU_DDL + SKU_UNIQUE[unique]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL(ddl).format(s=psycopg.sql.Identifier("app")))
        conn.execute("INSERT INTO app.products VALUES (1, 'A', 1), (2, 'B', 2)")
    copy_as_restored(dsn, ddl, "app", "app_r", ["products"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE app.products SET sku = 'A2', price = 10 WHERE id = 1")
        conn.execute("UPDATE app.products SET price = 20 WHERE id = 2")
        conn.execute("INSERT INTO app.products VALUES (3, 'A', 3)")  # took product 1's old sku
    services = services_for(demo_fleet)
    rid = record_restore(services, dsn, name, {"app": "app_r"})
    before = checksum(dsn, "app", "products")
    p = plan(services, rid, Options(changed=True, on_conflict=policy))
    t = p.schemas[0].tables["products"]
    assert [(c["key"], c["constraint"], c["live_key"]) for c in t.conflicts] == [
        (["1"], "products_sku_key", ["3"])
    ]
    if policy != "skip":
        assert p.refused and "products_sku_key" in p.refused
        with pytest.raises(RecoveryRefused):
            apply(services, p)
        assert checksum(dsn, "app", "products") == before
        return
    assert t.updates == [["2"]] and [s["key"] for s in t.skipped] == [["1"]]
    apply(services, p)
    assert {r[0] for r in rows(dsn, "app", "products")} == {
        "(1,A2,10.00)",
        "(2,B,2.00)",
        "(3,A,3.00)",
    }


def test_drop_undo_drops_only_the_schema_the_recovery_created(demo_fleet, db):
    from restore_assets.core.compare.model import CompareError
    from restore_assets.core.recover.run import drop_undo

    services, dsn, rid = _shop(demo_fleet, db)
    p = plan(services, rid, Options(deleted=True, on_conflict="skip"))
    apply(services, p)
    undo_schema = p.schemas[0].undo_schema
    with psycopg.connect(dsn, autocommit=True) as conn:  # someone replaces it with their own
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(undo_schema))
        )
        conn.execute(
            psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(undo_schema))
        )
        conn.execute(
            psycopg.sql.SQL("CREATE TABLE {}.mine (x int)").format(
                psycopg.sql.Identifier(undo_schema)
            )
        )
    with pytest.raises(CompareError, match="is not the undo schema"):
        drop_undo(services, p.recovery_id)
    with psycopg.connect(dsn) as conn:  # the guard held: theirs is still there
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (undo_schema,)
            ).fetchone()[0]
            == 1
        )

    with psycopg.connect(dsn, autocommit=True) as conn:  # user 2 lost again: a second recovery
        conn.execute("DELETE FROM app.users WHERE id = 2")
    p = plan(services, rid, Options(deleted=True, on_conflict="skip"))
    apply(services, p)
    out = drop_undo(services, p.recovery_id)
    assert out["dropped"] == [f"{db[0]}.{p.schemas[0].undo_schema}"]
    with psycopg.connect(dsn) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (p.schemas[0].undo_schema,)
            ).fetchone()[0]
            == 0
        )
    with pytest.raises(CompareError, match="missing"):
        undo(services, p.recovery_id)  # nothing to undo from any more


@pytest.mark.parametrize("undo_triggers", [False, True])
def test_setting_a_foreign_key_back_brings_the_row_it_references(demo_fleet, db, undo_triggers):
    name, dsn = db
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL(SHOP_DDL).format(s=psycopg.sql.Identifier("app")))
        conn.execute("INSERT INTO app.users VALUES (2, 'two@x', 'two'), (3, 'three@x', 'three')")
        conn.execute("INSERT INTO app.orders VALUES (30, 3, 9)")
    copy_as_restored(dsn, SHOP_DDL, "app", "app_r", ["users", "orders"])
    with psycopg.connect(dsn, autocommit=True) as conn:  # order 30 moved to user 2, user 3 deleted
        conn.execute("UPDATE app.orders SET user_id = 2 WHERE id = 30")
        conn.execute("DELETE FROM app.users WHERE id = 3")
    services = services_for(demo_fleet)
    rid = record_restore(services, dsn, name, {"app": "app_r"})
    before = checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")
    p = plan(services, rid, Options(changed=True, columns=["user_id"], tables=["orders"]))
    s = p.schemas[0]
    assert s.order == ["users", "orders"]
    assert s.tables["orders"].updates == [["30"]] and s.tables["users"].inserts == [["3"]]
    assert s.tables["users"].reasons[0]["fk"] == "orders_user_id_fkey"
    apply(services, p)
    assert {r[0] for r in rows(dsn, "app", "orders")} == {"(30,3,9.00)"}
    assert "(3,three@x,three)" in {r[0] for r in rows(dsn, "app", "users")}
    undo(services, p.recovery_id, triggers=undo_triggers)  # with triggers: FK checks run
    assert (checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")) == before


def test_a_restored_copy_replaced_since_the_restore_is_not_recovered_from(demo_fleet, db):
    from restore_assets.core.compare.model import CompareError

    services, dsn, rid = _shop(demo_fleet, db)
    with psycopg.connect(dsn, autocommit=True) as conn:  # same name, another schema
        conn.execute("ALTER SCHEMA app_r RENAME TO app_r_old")
        conn.execute(psycopg.sql.SQL(SHOP_DDL).format(s=psycopg.sql.Identifier("app_r")))
    with pytest.raises(CompareError, match="is not the schema that restore created"):
        plan(services, rid, Options(deleted=True))
