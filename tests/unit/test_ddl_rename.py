"""Rename edge cases, on SQL text only (no database)."""

from __future__ import annotations

import pytest

from restore_assets.core.ddl import build_bundle


def renamed(sql: str, renames: dict[str, str] | None = None) -> list[str]:
    """Every statement of `sql` after renaming (t1 -> t1_x unless told otherwise)."""
    return build_bundle(sql, renames or {"t1": "t1_x"}).full


def one(sql: str, renames: dict[str, str] | None = None) -> str:
    (stmt,) = renamed(sql, renames)
    return stmt


def warnings(sql: str, renames: dict[str, str] | None = None) -> list[str]:
    return build_bundle(sql, renames or {"t1": "t1_x"}).warnings


# -- qualified names ---------------------------------------------------------------------------
def test_prefix_schemas_are_not_confused() -> None:
    sql = "CREATE TABLE t1.a (id int REFERENCES t10.b (id), c t10.typ, d t1.typ)"
    assert one(sql) == "CREATE TABLE t1_x.a (id int REFERENCES t10.b (id), c t10.typ, d t1_x.typ)"
    # and the other way round: renaming t10 leaves t1 alone
    assert one(sql, {"t10": "t10_x"}) == (
        "CREATE TABLE t1.a (id int REFERENCES t10_x.b (id), c t10_x.typ, d t1.typ)"
    )


def test_other_schemas_stay() -> None:
    sql = "CREATE VIEW t1.v AS SELECT c.name FROM shared.countries c JOIN t1.a ON a.c = c.code"
    assert one(sql) == (
        "CREATE VIEW t1_x.v AS SELECT c.name FROM shared.countries c JOIN t1_x.a ON a.c = c.code"
    )


def test_unquoted_names_compare_case_insensitively_quoted_exactly() -> None:
    assert one("CREATE TABLE T1.a (x int)") == "CREATE TABLE t1_x.a (x int)"
    assert one('CREATE TABLE "T1".a (x int)') == 'CREATE TABLE "T1".a (x int)'
    assert one('CREATE TABLE "t1".a (x int)') == "CREATE TABLE t1_x.a (x int)"


def test_quoted_mixed_case_schema() -> None:
    renames = {"Tenant_X": "Tenant_X_v2"}
    sql = 'CREATE TABLE "Tenant_X"."Orders" (k "Tenant_X"."Kind", z tenant_x.other)'
    assert one(sql, renames) == (
        'CREATE TABLE "Tenant_X_v2"."Orders" (k "Tenant_X_v2"."Kind", z tenant_x.other)'
    )


def test_new_name_is_quoted_when_needed() -> None:
    assert one("CREATE TABLE t1.a (x int)", {"t1": "t1_Restored"}) == (
        'CREATE TABLE "t1_Restored".a (x int)'
    )
    assert one("CREATE TABLE t1.a (x int)", {"t1": "select"}) == 'CREATE TABLE "select".a (x int)'


def test_column_and_alias_spelled_like_the_schema() -> None:
    sql = 'CREATE VIEW t1.v AS SELECT t1."Id", t1.t1, t1.t1.c FROM t1."M" t1'
    # two-part column refs name the alias; the three-part one is schema.table.column
    assert one(sql) == 'CREATE VIEW t1_x.v AS SELECT t1."Id", t1.t1, t1_x.t1.c FROM t1_x."M" t1'


def test_columns_named_like_the_schema_in_a_table() -> None:
    sql = "CREATE TABLE t1.a (t1 integer, schema text, CONSTRAINT c CHECK (t1 > 0))"
    assert one(sql) == "CREATE TABLE t1_x.a (t1 integer, schema text, CONSTRAINT c CHECK (t1 > 0))"


def test_owned_by_and_identity_sequence_name() -> None:
    assert one("ALTER SEQUENCE t1.s OWNED BY t1.a.id") == "ALTER SEQUENCE t1_x.s OWNED BY t1_x.a.id"
    sql = (
        "ALTER TABLE t1.a ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY ("
        " SEQUENCE NAME t1.a_id_seq START WITH 1)"
    )
    assert one(sql) == sql.replace("t1.", "t1_x.")


def test_operator_names() -> None:
    sql = "CREATE VIEW t1.v AS SELECT (a.x OPERATOR(t1.#+#) 1) AS y FROM t1.a a"
    assert one(sql) == "CREATE VIEW t1_x.v AS SELECT (a.x OPERATOR(t1_x.#+#) 1) AS y FROM t1_x.a a"
    assert one("CREATE OPERATOR t1.## (FUNCTION = t1.f, LEFTARG = int, RIGHTARG = int)") == (
        "CREATE OPERATOR t1_x.## (FUNCTION = t1_x.f, LEFTARG = int, RIGHTARG = int)"
    )
    assert one("COMMENT ON OPERATOR t1.## (integer, integer) IS 'op of t1'") == (
        "COMMENT ON OPERATOR t1_x.## (integer, integer) IS 'op of t1'"
    )


# -- strings and comments --------------------------------------------------------------------
def test_data_strings_and_comment_texts_are_untouched() -> None:
    sql = "CREATE TABLE t1.a (note text DEFAULT 't1.a'::text, b text DEFAULT 't1')"
    assert one(sql) == "CREATE TABLE t1_x.a (note text DEFAULT 't1.a'::text, b text DEFAULT 't1')"
    assert one("COMMENT ON TABLE t1.a IS 'see t1.b and t1'") == (
        "COMMENT ON TABLE t1_x.a IS 'see t1.b and t1'"
    )
    assert one("COMMENT ON SCHEMA t1 IS 'schema t1'") == "COMMENT ON SCHEMA t1_x IS 'schema t1'"


def test_sql_comments_inside_statements_are_untouched() -> None:
    sql = "CREATE VIEW t1.v AS SELECT 1 AS a -- from t1.x\n, 2 AS b /* t1.y */ FROM t1.z"
    assert (
        one(sql)
        == "CREATE VIEW t1_x.v AS SELECT 1 AS a -- from t1.x\n, 2 AS b /* t1.y */ FROM t1_x.z"
    )


# -- reg* literals -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("nextval('t1.s'::regclass)", "nextval('t1_x.s'::regclass)"),
        ("nextval('t1.s')", "nextval('t1_x.s')"),
        ("pg_catalog.currval('t1.s')", "pg_catalog.currval('t1_x.s')"),
        ("'t1.typ'::regtype", "'t1_x.typ'::regtype"),
        ("'t1.typ'::pg_catalog.regtype", "'t1_x.typ'::pg_catalog.regtype"),
        ("'t1.f(integer, t1.typ)'::regprocedure", "'t1_x.f(integer, t1_x.typ)'::regprocedure"),
        ("'t1.f'::regproc", "'t1_x.f'::regproc"),
        ("'t1.##(integer,integer)'::regoperator", "'t1_x.##(integer,integer)'::regoperator"),
        ("'t1'::regnamespace", "'t1_x'::regnamespace"),
        ("'t1.english'::regconfig", "'t1_x.english'::regconfig"),
        ("CAST('t1.s' AS regclass)", "CAST('t1_x.s' AS regclass)"),
        ("'t10.s'::regclass", "'t10.s'::regclass"),
        ("'shared.s'::regclass", "'shared.s'::regclass"),
        ("'t1.s'::text", "'t1.s'::text"),
        ("'pg_catalog.english'::regconfig", "'pg_catalog.english'::regconfig"),
    ],
)
def test_reg_literals(before: str, after: str) -> None:
    assert one(f"CREATE VIEW t1.v AS SELECT {before} AS x") == (
        f"CREATE VIEW t1_x.v AS SELECT {after} AS x"
    )


def test_reg_literal_with_quoted_names() -> None:
    renames = {"Tenant_X": "Tenant_X_v2"}
    sql = """CREATE TABLE "Tenant_X".a (id int DEFAULT nextval('"Tenant_X"."A_seq"'::regclass))"""
    assert one(sql, renames) == (
        """CREATE TABLE "Tenant_X_v2".a (id int DEFAULT nextval('"Tenant_X_v2"."A_seq"'::regclass))"""
    )
    # a quote inside the new name is doubled inside the literal
    sql = "CREATE VIEW t1.v AS SELECT 't1.s'::regclass AS x"
    assert (
        one(sql, {"t1": "it's"}) == """CREATE VIEW "it's".v AS SELECT '"it''s".s'::regclass AS x"""
    )


# -- search_path -----------------------------------------------------------------------------------
def test_function_search_path_forms() -> None:
    head = "CREATE FUNCTION t1.f() RETURNS int LANGUAGE sql"
    body = " AS $$ SELECT 1 $$"
    cases = {
        " SET search_path TO 't1', 'public'": " SET search_path TO 't1_x', 'public'",
        " SET search_path = t1, pg_temp": " SET search_path = t1_x, pg_temp",
        " SET search_path TO 't1, public'": " SET search_path TO 't1_x, public'",
        " SET search_path TO '\"$user\", t1'": " SET search_path TO '\"$user\", t1_x'",
        " SET search_path TO 't10', 'shared'": " SET search_path TO 't10', 'shared'",
    }
    for before, after in cases.items():
        assert one(head + before + body) == "CREATE FUNCTION t1_x.f() RETURNS int LANGUAGE sql" + (
            after + body
        )


def test_search_path_quoted_schema() -> None:
    renames = {"Tenant_X": "Tenant_X_v2"}
    sql = 'CREATE FUNCTION "Tenant_X".f() RETURNS int LANGUAGE sql SET search_path = "Tenant_X", pg_temp AS $$ SELECT 1 $$'
    assert one(sql, renames) == sql.replace('"Tenant_X"', '"Tenant_X_v2"')
    sql = """CREATE FUNCTION "Tenant_X".f() RETURNS int LANGUAGE sql SET search_path TO '"Tenant_X"', 'public' AS $$ SELECT 1 $$"""
    assert one(sql, renames) == sql.replace('"Tenant_X"', '"Tenant_X_v2"')


def test_set_config_search_path() -> None:
    (stmt,) = renamed("SELECT pg_catalog.set_config('search_path', 't1, public', false)")
    assert stmt == "SELECT pg_catalog.set_config('search_path', 't1_x, public', false)"


# -- function bodies -------------------------------------------------------------------------------
def test_begin_atomic_body() -> None:
    sql = (
        "CREATE FUNCTION t1.n(acc bigint) RETURNS bigint LANGUAGE sql\n"
        "BEGIN ATOMIC\n SELECT count(*) FROM t1.invoices t1 WHERE t1.account = n.acc"
        " AND t1.ok(t1.id);\nEND"
    )
    assert one(sql) == (
        "CREATE FUNCTION t1_x.n(acc bigint) RETURNS bigint LANGUAGE sql\n"
        "BEGIN ATOMIC\n SELECT count(*) FROM t1_x.invoices t1 WHERE t1.account = n.acc"
        " AND t1_x.ok(t1.id);\nEND"
    )


def test_plpgsql_body_qualified_references() -> None:
    sql = """CREATE FUNCTION t1.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- t1.comment stays
    INSERT INTO t1.log (what, seq) VALUES ('t1 says hi', nextval('t1.s'));
    PERFORM t1.f(NEW.id), T1.g(), t10.h();
    v := 'x'::t1.kind;
    r := NULL::t1.tab%ROWTYPE;
    RETURN NEW;
END $$"""
    assert (
        one(sql)
        == """CREATE FUNCTION t1_x.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- t1.comment stays
    INSERT INTO t1_x.log (what, seq) VALUES ('t1 says hi', nextval('t1_x.s'));
    PERFORM t1_x.f(NEW.id), t1_x.g(), t10.h();
    v := 'x'::t1_x.kind;
    r := NULL::t1_x.tab%ROWTYPE;
    RETURN NEW;
END $$"""
    )
    # a plain string mentioning the schema without dynamic SQL is not worth a warning
    assert not [w for w in warnings(sql) if "dynamic" in w]


def test_sql_body_alias_named_like_the_schema() -> None:
    sql = "CREATE FUNCTION t1.f() RETURNS int LANGUAGE sql AS $$ SELECT t1.a FROM t1.tab t1 $$"
    assert one(sql) == (
        "CREATE FUNCTION t1_x.f() RETURNS int LANGUAGE sql AS $$ SELECT t1.a FROM t1_x.tab t1 $$"
    )


def test_single_quoted_body_is_requoted() -> None:
    sql = "CREATE FUNCTION t1.f() RETURNS text LANGUAGE sql AS 'SELECT t1.g(''it''''s'')'"
    assert one(sql) == (
        "CREATE FUNCTION t1_x.f() RETURNS text LANGUAGE sql AS 'SELECT t1_x.g(''it''''s'')'"
    )


def test_dollar_tag_changes_when_the_new_body_would_contain_it() -> None:
    sql = "CREATE FUNCTION t1.f() RETURNS int LANGUAGE sql AS $a$ SELECT t1.g() $a$"
    out = one(sql, {"t1": "$a$"})
    assert (
        out == 'CREATE FUNCTION "$a$".f() RETURNS int LANGUAGE sql AS $ra1$ SELECT "$a$".g() $ra1$'
    )


def test_dynamic_sql_is_reported_with_the_function_name() -> None:
    sql = """CREATE FUNCTION t1.count_rows(tbl text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %I.%I', 't1', tbl) INTO n;
    EXECUTE 'SELECT count(*) FROM t1.' || tbl INTO n;
    RETURN n;
END $$"""
    stmt = one(sql)
    assert "format('SELECT count(*) FROM %I.%I', 't1', tbl)" in stmt  # not rewritten
    assert "'SELECT count(*) FROM t1.'" in stmt
    (w,) = [w for w in warnings(sql) if "dynamic SQL" in w]
    assert "t1.count_rows" in w


def test_plpgsql_variable_named_like_the_schema_is_reported() -> None:
    sql = """CREATE FUNCTION t1.f() RETURNS int LANGUAGE plpgsql AS $$
DECLARE t1 record;
BEGIN SELECT * INTO t1 FROM t1.tab; RETURN t1.id; END $$"""
    assert any("t1.f" in w and "plain name" in w for w in warnings(sql))


def test_other_language_bodies_are_reported_not_rewritten() -> None:
    sql = "CREATE FUNCTION t1.f() RETURNS int LANGUAGE plpython3u AS $$ return plpy.execute('select * from t1.a') $$"
    assert "from t1.a" in one(sql)
    assert any("plpython3u" in w for w in warnings(sql))


# -- schema-name clauses -----------------------------------------------------------------------------
def test_schema_keyword_clauses() -> None:
    assert renamed("CREATE SCHEMA t1; ALTER SCHEMA t1 OWNER TO bob") == [
        "CREATE SCHEMA t1_x",
        "ALTER SCHEMA t1_x OWNER TO bob",
    ]
    assert (
        one("GRANT USAGE ON SCHEMA t1, t10 TO PUBLIC")
        == "GRANT USAGE ON SCHEMA t1_x, t10 TO PUBLIC"
    )
    assert one("REVOKE USAGE ON SCHEMA public FROM PUBLIC", {"public": "public_x"}) == (
        "REVOKE USAGE ON SCHEMA public_x FROM PUBLIC"
    )
    assert (
        one("ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA t1 GRANT SELECT ON TABLES TO r")
        == "ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA t1_x GRANT SELECT ON TABLES TO r"
    )


# -- locations with non-ASCII text ------------------------------------------------------------
def test_non_ascii_text_before_rename_points() -> None:
    sql = (
        "CREATE VIEW t1.\"résumé\" AS SELECT 'naïve café ☕ 品目'::text AS label,"
        " t1.f(1) AS total, t1.x, 't1.s'::regclass AS r FROM t1.items t1"
    )
    assert one(sql) == (
        "CREATE VIEW t1_x.\"résumé\" AS SELECT 'naïve café ☕ 品目'::text AS label,"
        " t1_x.f(1) AS total, t1.x, 't1_x.s'::regclass AS r FROM t1_x.items t1"
    )


def test_non_ascii_in_search_path_and_body() -> None:
    sql = (
        "CREATE FUNCTION t1.\"ƒ\"() RETURNS text LANGUAGE sql SET search_path TO 't1'"
        " AS $$ SELECT 'é' || t1.g() FROM t1.tab t1 WHERE t1.c = '☕' $$"
    )
    assert one(sql) == (
        "CREATE FUNCTION t1_x.\"ƒ\"() RETURNS text LANGUAGE sql SET search_path TO 't1_x'"
        " AS $$ SELECT 'é' || t1_x.g() FROM t1_x.tab t1 WHERE t1.c = '☕' $$"
    )


def test_unicode_schema_name() -> None:
    renames = {"bıgınt": "bıgınt_x"}
    sql = 'CREATE TABLE "bıgınt".a (x "bıgınt".d DEFAULT nextval(\'"bıgınt".s\'))'
    assert one(sql, renames) == sql.replace('"bıgınt"', '"bıgınt_x"')


# statements exercising every rename rule, reused to check the fast (tokens, then one parse) and
# slow (parse first) paths of build_bundle agree
RENAME_CASES = [
    "CREATE TABLE t1.a (id int REFERENCES t10.b (id), c t10.typ, d t1.typ)",
    'CREATE VIEW t1.v AS SELECT t1."Id", t1.t1, t1.t1.c FROM t1."M" t1',
    "CREATE TABLE t1.a (t1 integer, schema text, CONSTRAINT c CHECK (t1 > 0))",
    "ALTER SEQUENCE t1.s OWNED BY t1.a.id; ALTER SEQUENCE t1.t1 OWNED BY t1.t1.id",
    "CREATE VIEW t1.v AS SELECT (a.x OPERATOR(t1.#+#) 1) AS y FROM t1.a a",
    "CREATE TABLE t1.a (note text DEFAULT 't1.a'::text, r regclass DEFAULT 't1.a'::regclass)",
    "COMMENT ON SCHEMA t1 IS 'schema t1'; COMMENT ON COLUMN t1.t1.c IS 't1'",
    "CREATE FUNCTION t1.f() RETURNS int LANGUAGE sql SET search_path = t1, pg_temp AS $$ SELECT t1.g() $$",
    "CREATE FUNCTION t1.n() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT t1.x FROM t1.tab t1; END",
    "GRANT USAGE ON SCHEMA t1, t10 TO PUBLIC; GRANT SELECT ON t1.a TO PUBLIC",
    "ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA t1 GRANT SELECT ON TABLES TO r",
    "CREATE VIEW t1.\"résumé\" AS SELECT 'ü ☕'::text AS l, t1.f(1), t1.x, 't1.s'::regclass FROM t1.i t1",
    "CREATE INDEX i ON t1.a USING btree (lower(t1)) WHERE (t1 > 0)",
    "CREATE POLICY p ON t1.a USING (t1.f(a.t1) AND EXISTS (SELECT 1 FROM t1.b t1 WHERE t1.t1 = 1))",
    "SELECT pg_catalog.set_config('search_path', 't1, public', false)",
]


def test_rename_cases_parse() -> None:
    for case in RENAME_CASES:
        assert not build_bundle(case, {"t1": "t1_x"}).unknown, case
