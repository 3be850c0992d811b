"""The guard, on statement text only (no database): hostile dumps are refused by AST."""

from __future__ import annotations

import pytest

from restore_assets.core.ddl import build_bundle, guard, statement_violation
from restore_assets.core.errors import GuardViolation

ALLOWED = {"t1_x"}


@pytest.mark.parametrize(
    "statement",
    [
        "SET LOCAL check_function_bodies = false",
        "SELECT pg_catalog.set_config('search_path', '', true)",
        "SET default_tablespace = ''",
        "CREATE SCHEMA t1_x",
        "CREATE TABLE t1_x.a (id int REFERENCES shared.countries (code), c shared.money)",
        "CREATE TABLE t1_x.p_1 PARTITION OF t1_x.p DEFAULT",
        "ALTER TABLE ONLY t1_x.a ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES shared.countries(code)",
        "ALTER TABLE ONLY t1_x.p ATTACH PARTITION t1_x.p_1 DEFAULT",
        "ALTER INDEX t1_x.i ATTACH PARTITION t1_x.j",
        "CREATE SEQUENCE t1_x.s",
        "ALTER SEQUENCE t1_x.s OWNED BY t1_x.a.id",
        "CREATE FUNCTION t1_x.f() RETURNS int LANGUAGE sql AS $$ SELECT shared.g() $$",
        "CREATE AGGREGATE t1_x.agg(int) (SFUNC = int4pl, STYPE = int)",
        "CREATE TYPE t1_x.e AS ENUM ('a')",
        "CREATE DOMAIN t1_x.d AS int",
        "CREATE INDEX i ON t1_x.a (c)",
        "CREATE TRIGGER tr BEFORE INSERT ON t1_x.a FOR EACH ROW EXECUTE FUNCTION shared.audit()",
        "CREATE VIEW t1_x.v AS SELECT * FROM shared.countries",
        "CREATE MATERIALIZED VIEW t1_x.mv AS SELECT 1 WITH NO DATA",
        "REFRESH MATERIALIZED VIEW t1_x.mv",
        "CREATE POLICY p ON t1_x.a USING (true)",
        "ALTER TABLE t1_x.a ENABLE ROW LEVEL SECURITY",
        "COMMENT ON SCHEMA t1_x IS 'shared.x is mentioned only in text'",
        "COMMENT ON COLUMN t1_x.a.c IS 'c'",
        "COMMENT ON FUNCTION t1_x.f() IS 'f'",
        "COMMENT ON CONSTRAINT c ON DOMAIN t1_x.d IS 'c'",
        "GRANT USAGE ON SCHEMA t1_x TO PUBLIC",
        "GRANT SELECT ON TABLE t1_x.a TO bob",
        "GRANT EXECUTE ON FUNCTION t1_x.f() TO bob",
        "ALTER DEFAULT PRIVILEGES FOR ROLE alice IN SCHEMA t1_x GRANT SELECT ON TABLES TO bob",
        "ALTER TABLE t1_x.a OWNER TO alice",
        "ALTER SCHEMA t1_x OWNER TO alice",
        "SELECT pg_catalog.setval('t1_x.s', 42, true)",
        "CREATE STATISTICS t1_x.st ON a, b FROM t1_x.a",
    ],
)
def test_allowed(statement: str) -> None:
    assert statement_violation(statement, ALLOWED) is None


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("DROP TABLE t1_x.a", "DROP"),
        ("DROP SCHEMA shared CASCADE", "DROP"),
        ("ALTER TABLE shared.countries ADD COLUMN x int", "'shared'"),
        ("ALTER TABLE shared.countries OWNER TO mallory", "'shared'"),
        ("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", "'public'"),
        ("CREATE OR REPLACE FUNCTION shared.g() RETURNS int LANGUAGE sql RETURN 1", "'shared'"),
        ("CREATE TABLE a (id int)", "not schema-qualified"),
        ("CREATE TABLE t1_x.c PARTITION OF shared.parent DEFAULT", "parent table"),
        ("ALTER TABLE ONLY t1_x.p ATTACH PARTITION shared.q DEFAULT", "attached partition"),
        (
            "CREATE TRIGGER tr BEFORE INSERT ON shared.countries FOR EACH ROW EXECUTE FUNCTION t1_x.f()",
            "trigger",
        ),
        ("CREATE INDEX i ON shared.countries (name)", "'shared'"),
        ("CREATE POLICY p ON shared.countries USING (false)", "'shared'"),
        ("GRANT ALL ON SCHEMA public TO PUBLIC", "'public'"),
        ("GRANT SELECT ON ALL TABLES IN SCHEMA shared TO bob", "'shared'"),
        ("GRANT ALL ON DATABASE prod TO bob", "database"),
        ("GRANT admin TO bob", "cluster-wide"),
        ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob", "whole database"),
        ("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO bob", "'public'"),
        ("CREATE EXTENSION pgcrypto", "CREATE EXTENSION"),
        ("DO $$ BEGIN DROP TABLE shared.countries; END $$", "DO"),
        ("SET ROLE mallory", "'role'"),
        ("SET SESSION AUTHORIZATION mallory", "session_authorization"),
        ("SELECT shared.wipe()", "shared.wipe"),
        ("SELECT pg_catalog.setval('shared.s', 1, true)", "'shared'"),
        ("SELECT pg_catalog.set_config('role', 'mallory', false)", "'role'"),
        ("COMMENT ON TABLE shared.countries IS 'x'", "'shared'"),
        ("COMMENT ON EXTENSION pgcrypto IS 'x'", "extension"),
        ("ALTER SEQUENCE t1_x.s OWNED BY shared.t.id", "OWNED BY"),
        ("TRUNCATE shared.countries", "TRUNCATE"),
        ("INSERT INTO shared.countries VALUES ('x', 'y')", "DML"),
        ("CREATE SCHEMA other", "'other'"),
        ("CREATE ROLE mallory SUPERUSER", "cluster-wide"),
        ("BEGIN", "transaction"),
        ("CREATE TABLE t1_x.a (id int); DROP TABLE shared.countries", "DROP"),
        ("CREATE TABLE t1_x.a (id int", "cannot be parsed"),
    ],
)
def test_refused(statement: str, reason: str) -> None:
    violation = statement_violation(statement, ALLOWED)
    assert violation is not None and reason in violation, violation


def test_violation_names_the_statement() -> None:
    statements = [
        "CREATE SCHEMA t1_x",
        "CREATE TABLE t1_x.a (id int)",
        "DROP TABLE shared.countries",
    ]
    with pytest.raises(GuardViolation) as err:
        guard(statements, ALLOWED)
    message = str(err.value)
    assert "statement 3 of 3" in message
    assert "DROP TABLE shared.countries" in message
    assert "t1_x" in message


HOSTILE_DUMP = """
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE SCHEMA t1;
CREATE TABLE t1.a (id integer NOT NULL);
CREATE FUNCTION public.backdoor() RETURNS void LANGUAGE sql AS $$ DELETE FROM shared.countries $$;
ALTER TABLE shared.countries ADD COLUMN pwned boolean;
DROP TABLE shared.countries;
"""


def test_hostile_dump_is_refused_before_anything_runs() -> None:
    bundle = build_bundle(HOSTILE_DUMP, {"t1": "t1_x"})
    with pytest.raises(GuardViolation, match="public.backdoor|'public'"):
        guard(bundle.pre + bundle.post, bundle.target_schemas)
    assert statement_violation("ALTER TABLE shared.countries ADD COLUMN pwned boolean", ALLOWED)
    # each hostile statement on its own is caught too
    hostile = [s for s in bundle.full if "shared" in s or "public" in s]
    assert len(hostile) == 3
    for statement in hostile:
        with pytest.raises(GuardViolation):
            guard([statement], bundle.target_schemas)


def test_a_real_bundle_passes() -> None:
    dump = """
SELECT pg_catalog.set_config('search_path', '', false);
CREATE SCHEMA t1;
CREATE TABLE t1.a (id integer NOT NULL, c text);
ALTER TABLE ONLY t1.a ADD CONSTRAINT a_pkey PRIMARY KEY (id);
ALTER TABLE ONLY t1.a ADD CONSTRAINT a_c_fkey FOREIGN KEY (c) REFERENCES shared.countries(code);
GRANT USAGE ON SCHEMA t1 TO PUBLIC;
"""
    bundle = build_bundle(dump, {"t1": "t1_x"}, {("t1", "s"): (1, True)})
    guard(bundle.pre + bundle.post, bundle.target_schemas)


def test_bundle_guard_check_agrees_with_guard() -> None:
    hostile = build_bundle(HOSTILE_DUMP, {"t1": "t1_x"})
    assert len(hostile.violations) == 3
    assert "DROP TABLE shared.countries" in hostile.violations[-1]
    with pytest.raises(GuardViolation, match=r"backdoor.*\(and 2 more\)"):
        hostile.check_guard()
    with pytest.raises(GuardViolation):
        guard(hostile.pre + hostile.post, hostile.target_schemas)
    clean = build_bundle(HOSTILE_DUMP.split("CREATE FUNCTION public")[0], {"t1": "t1_x"})
    assert clean.violations == []
    clean.check_guard()
    guard(clean.pre + clean.post, clean.target_schemas)


def test_owner_statements_are_checked_only_when_applied() -> None:
    dump = "CREATE SCHEMA t1;\nALTER TABLE shared.countries OWNER TO mallory;\n"
    assert build_bundle(dump, {"t1": "t1_x"}).violations == []  # dropped: never applied
    assert build_bundle(dump, {"t1": "t1_x"}, include_owner=True).violations


def test_bundle_violations_cover_tables_and_sequences() -> None:
    dump = """
CREATE SCHEMA t1;
CREATE TABLE t1.ok (id integer, c text);
CREATE TABLE shared.evil (id integer);
CREATE TABLE t1.child (id integer) INHERITS (shared.parent);
CREATE TABLE t1.part PARTITION OF shared.parent DEFAULT;
CREATE SEQUENCE public.s;
CREATE SEQUENCE t1.s2 OWNED BY shared.parent.id;
CREATE SEQUENCE t1.fine;
"""
    bundle = build_bundle(dump, {"t1": "t1_x"})
    refused = [v.split("Statement: ")[1].split(". Allowed")[0] for v in bundle.violations]
    assert refused == [
        "CREATE TABLE shared.evil (id integer)",
        "CREATE TABLE t1_x.child (id integer) INHERITS (shared.parent)",
        "CREATE TABLE t1_x.part PARTITION OF shared.parent DEFAULT",
        "CREATE SEQUENCE public.s",
        "CREATE SEQUENCE t1_x.s2 OWNED BY shared.parent.id",
    ]
    for statement in bundle.pre:  # the standalone guard agrees statement by statement
        assert (statement_violation(statement, {"t1_x"}) is None) == (statement not in refused)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER STATISTICS t1_x.st SET STATISTICS 1000",
        "CREATE TYPE t1_x.shell",
        'CREATE TEXT SEARCH CONFIGURATION t1_x.cfg (PARSER = pg_catalog."default")',
        "ALTER TEXT SEARCH CONFIGURATION t1_x.cfg ADD MAPPING FOR word WITH simple",
        "CREATE OPERATOR FAMILY t1_x.fam USING btree",
        "ALTER DOMAIN t1_x.d ADD CONSTRAINT c CHECK (VALUE > 0) NOT VALID",
        "ALTER TABLE ONLY t1_x.a ALTER COLUMN c SET STATISTICS 500",
        "ALTER INDEX t1_x.i ALTER COLUMN 1 SET STATISTICS 200",
        "ALTER TABLE ONLY t1_x.a REPLICA IDENTITY FULL",
        "ALTER FOREIGN TABLE ONLY t1_x.f ALTER COLUMN c OPTIONS (column_name 'x')",
        "GRANT SELECT (c) ON TABLE t1_x.a TO bob",
        "SECURITY LABEL FOR dummy ON TABLE t1_x.a IS 'classified'",
        "SET default_table_access_method = heap2",
    ],
)
def test_inventory_allows_in_schema(statement: str) -> None:
    assert statement_violation(statement, ALLOWED) is None


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("ALTER STATISTICS shared.st SET STATISTICS 10", "'shared'"),
        ("ALTER TABLE t1_x.a DROP COLUMN c", "AT_DropColumn is not in the inventory"),
        ("ALTER DOMAIN t1_x.d DROP CONSTRAINT c", "ALTER DOMAIN"),
        ("CREATE TABLE t1_x.b AS SELECT 1", "CREATE TABLE AS"),
        ("ALTER TABLE t1_x.a RENAME TO b", "renames"),
        ("CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler", "access method"),
        (
            "ALTER FUNCTION t1_x.f() STABLE",
            "AlterFunctionStmt is not in the DDL engine's inventory",
        ),
        # attachments outside the schema are never applied, even when handed to the guard
        ("ALTER PUBLICATION pub ADD TABLE ONLY t1_x.a", "skipped and listed"),
        ("ALTER FUNCTION t1_x.f() DEPENDS ON EXTENSION hstore", "skipped and listed"),
        ("ALTER EXTENSION hstore ADD TABLE t1_x.a", "skipped and listed"),
    ],
)
def test_inventory_refuses(statement: str, reason: str) -> None:
    violation = statement_violation(statement, ALLOWED)
    assert violation is not None and reason in violation, violation


def test_attachments_outside_the_schema_are_skipped_and_listed_not_fatal() -> None:
    dump = """
SELECT pg_catalog.set_config('search_path', '', false);
CREATE SCHEMA t1;
CREATE TABLE t1.a (id integer NOT NULL);
CREATE FUNCTION t1.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
ALTER FUNCTION t1.f() DEPENDS ON EXTENSION hstore;
ALTER PUBLICATION pub ADD TABLE ONLY t1.a;
ALTER PUBLICATION pub2 ADD TABLES IN SCHEMA t1;
"""
    bundle = build_bundle(dump, {"t1": "t1_x"})
    assert bundle.skipped == [
        "ALTER FUNCTION t1_x.f() DEPENDS ON EXTENSION hstore",
        "ALTER PUBLICATION pub ADD TABLE ONLY t1_x.a",
        "ALTER PUBLICATION pub2 ADD TABLES IN SCHEMA t1_x",
    ]
    assert not any("PUBLICATION" in s or "DEPENDS" in s for s in bundle.pre + bundle.post)
    assert sum("skipped, never applied" in w for w in bundle.warnings) == 3
    assert bundle.violations == [] and bundle.unknown == []
    bundle.check_guard()
    guard(bundle.pre + bundle.post, bundle.target_schemas)


def test_every_inventory_rule_is_explicit() -> None:
    from restore_assets.core.ddl.inventory import ALLOW, INVENTORY, REFUSE, SKIP, inventory_table

    assert {r.action for r in INVENTORY.values()} == {ALLOW, SKIP, REFUSE}
    assert all(r.why for r in INVENTORY.values() if r.action != ALLOW)
    table = inventory_table()
    assert table.count("\n") == len(INVENTORY) + 1
    assert "| `AlterStatsStmt` | allow in schema |" in table


REFUSED_SAMPLES = {
    "DropStmt": "DROP TABLE t1_x.a",
    "TruncateStmt": "TRUNCATE t1_x.a",
    "DeleteStmt": "DELETE FROM t1_x.a",
    "UpdateStmt": "UPDATE t1_x.a SET c = 1",
    "InsertStmt": "INSERT INTO t1_x.a VALUES (1)",
    "MergeStmt": "MERGE INTO t1_x.a USING t1_x.b ON true WHEN MATCHED THEN DELETE",
    "CopyStmt": "COPY t1_x.a FROM stdin",
    "DoStmt": "DO $$ BEGIN END $$",
    "CallStmt": "CALL t1_x.p()",
    "ExecuteStmt": "EXECUTE q",
    "TransactionStmt": "COMMIT",
    "CreateExtensionStmt": "CREATE EXTENSION hstore SCHEMA t1_x",
    "AlterExtensionStmt": "ALTER EXTENSION hstore UPDATE",
    "CreateRoleStmt": "CREATE ROLE r",
    "AlterRoleStmt": "ALTER ROLE r SUPERUSER",
    "AlterRoleSetStmt": "ALTER ROLE r SET work_mem = 1",
    "DropRoleStmt": "DROP ROLE r",
    "GrantRoleStmt": "GRANT r TO s",
    "CreatedbStmt": "CREATE DATABASE d",
    "AlterDatabaseStmt": "ALTER DATABASE d CONNECTION LIMIT 1",
    "AlterDatabaseSetStmt": "ALTER DATABASE d SET work_mem = 1",
    "CreateEventTrigStmt": "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION t1_x.f()",
    "AlterEventTrigStmt": "ALTER EVENT TRIGGER e DISABLE",
    "CreateCastStmt": "CREATE CAST (t1_x.a AS int) WITH FUNCTION t1_x.f(t1_x.a)",
    "CreateTransformStmt": "CREATE TRANSFORM FOR t1_x.d LANGUAGE plpgsql"
    " (FROM SQL WITH FUNCTION t1_x.f(internal))",
    "CreatePLangStmt": "CREATE LANGUAGE plx HANDLER t1_x.h",
    "CreateAmStmt": "CREATE ACCESS METHOD am2 TYPE TABLE HANDLER heap_tableam_handler",
    "CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER w",
    "CreateForeignServerStmt": "CREATE SERVER s FOREIGN DATA WRAPPER w",
    "CreateUserMappingStmt": "CREATE USER MAPPING FOR PUBLIC SERVER s",
    "CreatePublicationStmt": "CREATE PUBLICATION p FOR TABLE t1_x.a",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p",
    "CreateTableSpaceStmt": "CREATE TABLESPACE t LOCATION '/x'",
    "AlterSystemStmt": "ALTER SYSTEM SET work_mem = 1",
    "VacuumStmt": "VACUUM t1_x.a",
    "LockStmt": "LOCK t1_x.a",
    "ReindexStmt": "REINDEX TABLE t1_x.a",
    "ClusterStmt": "CLUSTER t1_x.a",
    "LoadStmt": "LOAD 'x'",
    "DiscardStmt": "DISCARD ALL",
    "ListenStmt": "LISTEN c",
    "NotifyStmt": "NOTIFY c",
    "RenameStmt": "ALTER TABLE t1_x.a RENAME TO b",
    "AlterObjectSchemaStmt": "ALTER TABLE t1_x.a SET SCHEMA other",
}


def test_every_refused_kind_is_refused_with_its_reason_even_inside_the_schema() -> None:
    import json

    from pglast import parser

    from restore_assets.core.ddl.inventory import INVENTORY, REFUSE

    refused = {k for k, r in INVENTORY.items() if r.action == REFUSE}
    assert refused == set(REFUSED_SAMPLES)
    for kind, statement in REFUSED_SAMPLES.items():
        tree = json.loads(parser.parse_sql_json(statement))["stmts"][0]["stmt"]
        assert next(iter(tree)) == kind, statement
        assert statement_violation(statement, ALLOWED) == INVENTORY[kind].why, statement


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER POLICY p ON t1_x.a USING (false)",
        "ALTER TEXT SEARCH DICTIONARY t1_x.dict (accept = true)",
        "ALTER TYPE t1_x.e ADD VALUE 'b'",
    ],
)
def test_allowed_kinds_pg_dump_rarely_writes(statement: str) -> None:
    assert statement_violation(statement, ALLOWED) is None
    other = statement.replace("t1_x", "shared")
    assert "'shared'" in (statement_violation(other, ALLOWED) or "")
