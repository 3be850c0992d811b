"""Split classification and bundle assembly, on dump text only (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from restore_assets.core.ddl import (
    DdlBundle,
    TargetNameTooLong,
    build_bundle,
    default_suffix,
    quote_ident,
    schema_pattern,
    strip_restrict,
    target_name,
)
from restore_assets.core.errors import DdlError, InvalidRequest

HEADER = """--
-- PostgreSQL database dump
--

\\restrict abcDEF123

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;
"""

DUMP = (
    HEADER
    + """
CREATE SCHEMA t1;
ALTER SCHEMA t1 OWNER TO alice;
CREATE TYPE t1.status AS ENUM ('a', 'b');
CREATE TYPE t1.pair AS (a integer, b integer);
CREATE TYPE t1.frange AS RANGE (subtype = double precision);
CREATE DOMAIN t1.pos AS integer CONSTRAINT pos_check CHECK ((VALUE > 0));
CREATE FUNCTION t1.f(x integer) RETURNS integer LANGUAGE sql AS $$ SELECT x $$;
CREATE PROCEDURE t1.p() LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
CREATE AGGREGATE t1.agg(integer) (SFUNC = int4pl, STYPE = integer);
CREATE SEQUENCE t1.s START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER TABLE t1.s OWNER TO alice;
SET default_tablespace = '';
CREATE TABLE t1.a (id integer NOT NULL, n integer DEFAULT 1 NOT NULL, g integer GENERATED ALWAYS AS ((n * 2)) STORED, CONSTRAINT a_n_check CHECK ((n > 0)));
ALTER SEQUENCE t1.s OWNED BY t1.a.id;
CREATE TABLE t1.b (id bigint NOT NULL, a_id integer);
ALTER TABLE t1.b ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME t1.b_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1);
CREATE TABLE t1.p (k date NOT NULL) PARTITION BY RANGE (k);
CREATE TABLE t1.p_def (k date NOT NULL);
ALTER TABLE ONLY t1.a FORCE ROW LEVEL SECURITY;
CREATE VIEW t1.v AS SELECT a.id FROM t1.a;
CREATE MATERIALIZED VIEW t1.mv AS SELECT a.id FROM t1.a WITH NO DATA;
ALTER TABLE ONLY t1.p ATTACH PARTITION t1.p_def DEFAULT;
ALTER TABLE ONLY t1.a ALTER COLUMN id SET DEFAULT nextval('t1.s'::regclass);
ALTER TABLE ONLY t1.a ALTER COLUMN n SET STATISTICS 500;
ALTER TABLE ONLY t1.a ADD CONSTRAINT a_pkey PRIMARY KEY (id);
ALTER TABLE ONLY t1.p ADD CONSTRAINT p_pkey PRIMARY KEY (k);
ALTER TABLE ONLY t1.p_def ADD CONSTRAINT p_def_pkey PRIMARY KEY (k);
ALTER TABLE ONLY t1.a ADD CONSTRAINT a_n_key UNIQUE (n);
ALTER TABLE t1.a ADD CONSTRAINT a_late CHECK ((n < 100)) NOT VALID;
ALTER TABLE ONLY t1.b ADD CONSTRAINT b_ex EXCLUDE USING gist (a_id WITH =);
CREATE INDEX a_n_idx ON t1.a USING btree (n) WHERE (n > 1);
ALTER INDEX t1.p_pkey ATTACH PARTITION t1.p_def_pkey;
CREATE TRIGGER a_trg BEFORE INSERT ON t1.a FOR EACH ROW EXECUTE FUNCTION t1.tf();
ALTER TABLE ONLY t1.b ADD CONSTRAINT b_a_fkey FOREIGN KEY (a_id) REFERENCES t1.a(id) DEFERRABLE;
ALTER TABLE t1.a ENABLE ROW LEVEL SECURITY;
CREATE POLICY pol ON t1.a USING ((n > 0));
COMMENT ON TABLE t1.a IS 'table a of t1';
GRANT SELECT ON TABLE t1.a TO bob;
ALTER DEFAULT PRIVILEGES FOR ROLE alice IN SCHEMA t1 GRANT SELECT ON TABLES TO bob;
CREATE STATISTICS t1.st ON n, id FROM t1.a;
CREATE PUBLICATION pub FOR TABLE t1.a;

\\unrestrict abcDEF123
"""
)


@pytest.fixture(scope="module")
def bundle() -> DdlBundle:
    return build_bundle(
        DUMP, {"t1": "t1_x"}, {("t1", "s"): (41, True), ("t1", "b_id_seq"): (7, False)}
    )


def where(bundle: DdlBundle, prefix: str) -> str:
    """'pre', 'post' or 'none' for the single statement starting with prefix."""
    in_pre = [s for s in bundle.pre if s.startswith(prefix)]
    in_post = [s for s in bundle.post if s.startswith(prefix)]
    assert len(in_pre) + len(in_post) <= 1, (prefix, in_pre, in_post)
    return "pre" if in_pre else "post" if in_post else "none"


@pytest.mark.parametrize(
    "prefix",
    [
        "CREATE SCHEMA t1_x",
        "CREATE TYPE t1_x.status",
        "CREATE TYPE t1_x.pair",
        "CREATE TYPE t1_x.frange",
        "CREATE DOMAIN t1_x.pos",
        "CREATE FUNCTION t1_x.f",
        "CREATE PROCEDURE t1_x.p",
        "CREATE AGGREGATE t1_x.agg",
        "CREATE SEQUENCE t1_x.s",
        "CREATE TABLE t1_x.a",
        "ALTER SEQUENCE t1_x.s OWNED BY",
        "ALTER TABLE t1_x.b ALTER COLUMN id ADD GENERATED",
        "CREATE TABLE t1_x.p ",
        "ALTER TABLE ONLY t1_x.p ATTACH PARTITION",
        "ALTER TABLE ONLY t1_x.a ALTER COLUMN id SET DEFAULT",
        "ALTER TABLE ONLY t1_x.a ALTER COLUMN n SET STATISTICS",
        "ALTER TABLE ONLY t1_x.a ADD CONSTRAINT a_pkey PRIMARY KEY",
        "ALTER TABLE ONLY t1_x.p ADD CONSTRAINT p_pkey",
    ],
)
def test_pre_statements(bundle: DdlBundle, prefix: str) -> None:
    assert where(bundle, prefix) == "pre"


@pytest.mark.parametrize(
    "prefix",
    [
        "ALTER TABLE ONLY t1_x.a FORCE ROW LEVEL SECURITY",
        "CREATE VIEW t1_x.v",
        "CREATE MATERIALIZED VIEW t1_x.mv",
        "ALTER TABLE ONLY t1_x.a ADD CONSTRAINT a_n_key UNIQUE",
        "ALTER TABLE t1_x.a ADD CONSTRAINT a_late CHECK",
        "ALTER TABLE ONLY t1_x.b ADD CONSTRAINT b_ex EXCLUDE",
        "CREATE INDEX a_n_idx",
        "ALTER INDEX t1_x.p_pkey ATTACH PARTITION",
        "CREATE TRIGGER a_trg",
        "ALTER TABLE ONLY t1_x.b ADD CONSTRAINT b_a_fkey FOREIGN KEY",
        "ALTER TABLE t1_x.a ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY pol",
        "COMMENT ON TABLE t1_x.a IS 'table a of t1'",
        "GRANT SELECT ON TABLE t1_x.a TO bob",
        "ALTER DEFAULT PRIVILEGES FOR ROLE alice IN SCHEMA t1_x",
        "CREATE STATISTICS t1_x.st",
        "REFRESH MATERIALIZED VIEW t1_x.mv",
    ],
)
def test_post_statements(bundle: DdlBundle, prefix: str) -> None:
    assert where(bundle, prefix) == "post"


def test_inline_check_and_generated_columns_stay_in_the_table(bundle: DdlBundle) -> None:
    (table,) = [s for s in bundle.pre if s.startswith("CREATE TABLE t1_x.a")]
    assert "GENERATED ALWAYS AS ((n * 2)) STORED" in table
    assert "CONSTRAINT a_n_check CHECK" in table


def test_ownership_only_when_asked(bundle: DdlBundle) -> None:
    assert where(bundle, "ALTER SCHEMA t1_x OWNER TO alice") == "none"
    assert where(bundle, "ALTER TABLE t1_x.s OWNER TO alice") == "none"
    with_owner = build_bundle(DUMP, {"t1": "t1_x"}, include_owner=True)
    assert where(with_owner, "ALTER SCHEMA t1_x OWNER TO alice") == "post"
    assert where(with_owner, "ALTER TABLE t1_x.s OWNER TO alice") == "post"
    assert "ALTER SCHEMA t1_x OWNER TO alice" in bundle.full


def test_unknown_statements_go_to_post_and_are_listed(bundle: DdlBundle) -> None:
    assert bundle.unknown == ["CREATE PUBLICATION pub FOR TABLE t1_x.a"]
    assert bundle.post.index("CREATE PUBLICATION pub FOR TABLE t1_x.a") > 0
    assert any("CreatePublicationStmt" in w for w in bundle.warnings)


def test_session_settings_are_transaction_local_in_pre_and_post(bundle: DdlBundle) -> None:
    for part in (bundle.pre, bundle.post):
        assert part[:7] == [
            "SET LOCAL client_encoding = 'UTF8'",
            "SET LOCAL standard_conforming_strings = on",
            "SELECT pg_catalog.set_config('search_path', '', true)",
            "SET LOCAL check_function_bodies = false",
            "SET LOCAL xmloption = content",
            "SET LOCAL client_min_messages = warning",
            "SET LOCAL row_security = off",
        ]
        assert "SET LOCAL default_tablespace = ''" in part
        assert not any("timeout" in s for s in part)  # apply() owns the timeouts
    assert bundle.full[0] == "SET statement_timeout = 0"  # the audit copy is the dump itself


def test_refresh_and_setval_close_post(bundle: DdlBundle) -> None:
    assert bundle.post[-3:] == [
        "REFRESH MATERIALIZED VIEW t1_x.mv",
        "SELECT pg_catalog.setval('t1_x.s', 41, true)",
        "SELECT pg_catalog.setval('t1_x.b_id_seq', 7, false)",
    ]
    unpopulated = build_bundle(DUMP, {"t1": "t1_x"}, unpopulated_matviews={("t1", "mv")})
    assert not any(s.startswith("REFRESH") for s in unpopulated.post)


def test_missing_sequence_values_are_warned() -> None:
    b = build_bundle(DUMP, {"t1": "t1_x"}, {("t1", "s"): (1, False), ("t1", "gone"): (3, True)})
    assert any("t1.b_id_seq" in w for w in b.warnings)
    assert any("t1.gone" in w for w in b.warnings)
    assert not any("gone" in s for s in b.post)


def test_restrict_lines_and_comments_are_not_statements(bundle: DdlBundle) -> None:
    assert not any("restrict" in s or s.startswith("--") for s in bundle.full)


def test_scripts_are_runnable_text(bundle: DdlBundle) -> None:
    assert bundle.pre_sql.startswith("BEGIN;\n\nSET LOCAL client_encoding = 'UTF8';\n")
    assert bundle.pre_sql.endswith(
        "ALTER TABLE ONLY t1_x.p_def ADD CONSTRAINT p_def_pkey PRIMARY KEY (k);\n\nCOMMIT;\n"
    )
    assert bundle.post_sql.endswith("false);\n\nCOMMIT;\n")
    assert bundle.full_sql.startswith("SET statement_timeout = 0;\n\n")
    assert bundle.target_schemas == {"t1_x"}


def test_view_needed_by_a_pre_statement_moves_to_pre() -> None:
    dump = """
CREATE SCHEMA t1;
CREATE TABLE t1.a (id integer NOT NULL);
CREATE VIEW t1.base AS SELECT a.id FROM t1.a;
CREATE VIEW t1.v AS SELECT base.id FROM t1.base;
CREATE VIEW t1.unrelated AS SELECT a.id FROM t1.a;
CREATE FUNCTION t1.n() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM t1.v; END;
CREATE FUNCTION t1.rows() RETURNS SETOF t1.unrelated LANGUAGE sql AS $$ SELECT 1 $$;
CREATE VIEW t1.shape AS SELECT a.id FROM t1.a;
CREATE TABLE t1.holder (r t1.shape);
"""
    b = build_bundle(dump, {"t1": "t1_x"})
    assert where(b, "CREATE VIEW t1_x.v ") == "pre"
    assert where(b, "CREATE VIEW t1_x.base") == "pre"  # v reads it
    assert where(b, "CREATE VIEW t1_x.unrelated") == "pre"  # a pre function returns its row type
    assert where(b, "CREATE VIEW t1_x.shape") == "pre"  # a table has a column of its row type
    assert b.pre.index("CREATE VIEW t1_x.base AS SELECT a.id FROM t1_x.a") < b.pre.index(
        "CREATE VIEW t1_x.v AS SELECT base.id FROM t1_x.base"
    )
    plain = build_bundle(dump.replace("t1.v;", "t1.a;"), {"t1": "t1_x"})
    assert where(plain, "CREATE VIEW t1_x.v ") == "post"


def test_function_postponed_by_pg_dump_stays_in_post() -> None:
    dump = """
CREATE SCHEMA t1;
CREATE TABLE t1.a (id integer NOT NULL, k text);
ALTER TABLE ONLY t1.a ADD CONSTRAINT a_pkey PRIMARY KEY (id);
ALTER TABLE ONLY t1.a ADD CONSTRAINT a_k_key UNIQUE (k);
CREATE FUNCTION t1.upsert(x text) RETURNS void LANGUAGE sql BEGIN ATOMIC INSERT INTO t1.a (id, k) VALUES (1, x) ON CONFLICT (k) DO NOTHING; END;
"""
    b = build_bundle(dump, {"t1": "t1_x"})
    assert where(b, "CREATE FUNCTION t1_x.upsert") == "post"
    assert b.post.index("ALTER TABLE ONLY t1_x.a ADD CONSTRAINT a_k_key UNIQUE (k)") < b.post.index(
        [s for s in b.post if s.startswith("CREATE FUNCTION")][0]
    )


def test_view_column_default_follows_the_view() -> None:
    dump = """
CREATE SCHEMA t1;
CREATE TABLE t1.a (id integer NOT NULL);
CREATE VIEW t1.v AS SELECT a.id FROM t1.a;
ALTER TABLE ONLY t1.v ALTER COLUMN id SET DEFAULT 0;
"""
    assert where(build_bundle(dump, {"t1": "t1_x"}), "ALTER TABLE ONLY t1_x.v") == "post"


def test_dump_without_header_or_create_schema() -> None:
    b = build_bundle("CREATE TABLE public.a (id integer);", {"public": "public_x"})
    assert b.pre == [
        "SELECT pg_catalog.set_config('search_path', '', true)",
        "SET LOCAL check_function_bodies = false",
        "CREATE SCHEMA public_x",
        "CREATE TABLE public_x.a (id integer)",
    ]
    assert any("no CREATE SCHEMA" in w for w in b.warnings)


def test_unparseable_statement_is_kept_and_reported() -> None:
    b = build_bundle("CREATE SCHEMA t1; CREATE TABLE t1.a (id integer", {"t1": "t1_x"})
    assert b.unknown and "CREATE TABLE" in b.unknown[-1]
    assert any("cannot be parsed" in w for w in b.warnings)


def test_build_bundle_refuses_bad_renames() -> None:
    with pytest.raises(DdlError, match="onto itself"):
        build_bundle("CREATE SCHEMA t1", {"t1": "t1"})
    with pytest.raises(DdlError):
        build_bundle("CREATE SCHEMA t1", {})
    with pytest.raises(TargetNameTooLong):
        build_bundle("CREATE SCHEMA t1", {"t1": "x" * 64})


# -- names ------------------------------------------------------------------------------------------
def test_target_name_and_63_byte_limit() -> None:
    assert target_name("customer_a1", "20240131120000") == "customer_a1_20240131120000"
    assert len(target_name("s" * 48, "20240131120000")) == 63
    with pytest.raises(TargetNameTooLong, match="64 bytes") as err:
        target_name("s" * 49, "20240131120000")
    assert isinstance(err.value, InvalidRequest) and isinstance(err.value, DdlError)
    assert "shorter" in str(err.value)
    # bytes, not characters: 'é' is two bytes in UTF-8
    with pytest.raises(TargetNameTooLong):
        target_name("é" * 25, "20240131120000")
    with pytest.raises(InvalidRequest):
        target_name("t1", "")


def test_default_suffix_is_utc() -> None:
    assert default_suffix(datetime(2024, 1, 31, 12, 0, 5, tzinfo=UTC)) == "20240131120005"
    paris = timezone(timedelta(hours=1))
    assert default_suffix(datetime(2024, 1, 31, 13, 0, 5, tzinfo=paris)) == "20240131120005"
    assert default_suffix(datetime(2024, 1, 31, 12, 0, 5)) == "20240131120005"


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("t1", "t1"),
        ("customer_a1_2024", "customer_a1_2024"),
        ("Tenant_X", '"Tenant_X"'),
        ("select", '"select"'),
        ("user", '"user"'),
        ("int", '"int"'),  # column-name keyword
        ("admin", "admin"),  # unreserved keyword
        ("a$b", '"a$b"'),
        ('we"ird', '"we""ird"'),
        ("1abc", '"1abc"'),
        ("bıgınt", '"bıgınt"'),
    ],
)
def test_quote_ident_matches_postgres(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


def test_schema_pattern_is_an_exact_match() -> None:
    assert schema_pattern("t1") == '"t1"'
    assert schema_pattern('a.b*"c') == '"a.b*""c"'


def test_strip_restrict_only_removes_the_keyed_lines() -> None:
    dump = (
        "--\n\\restrict K1\n\nCREATE FUNCTION f() AS $$\n\\restrict other\n$$;\n\\unrestrict K1\n"
    )
    assert strip_restrict(dump) == "--\n\nCREATE FUNCTION f() AS $$\n\\restrict other\n$$;\n"
    assert strip_restrict("SELECT 1;\n") == "SELECT 1;\n"


def test_fast_path_matches_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Token-only renaming (then one parse) gives what the parse-first path gives."""
    from restore_assets.core.ddl.analyze import Analyzer
    from tests.unit.test_ddl_rename import RENAME_CASES

    dumps = [DUMP, *RENAME_CASES]
    fast = [build_bundle(d, {"t1": "t1_x"}, {("t1", "s"): (41, True)}) for d in dumps]
    monkeypatch.setattr(Analyzer, "complete", lambda self, p, tree: self._slow(p[0], p[1]))
    slow = [build_bundle(d, {"t1": "t1_x"}, {("t1", "s"): (41, True)}) for d in dumps]
    for a, b in zip(fast, slow, strict=True):
        assert (a.pre, a.post, a.full, a.unknown, a.violations) == (
            b.pre,
            b.post,
            b.full,
            b.unknown,
            b.violations,
        )


def test_extract_refuses_long_names_before_anything_runs() -> None:
    from restore_assets.core.ddl import extract

    # the DSN points nowhere: reaching pg_dump would fail differently
    with pytest.raises(TargetNameTooLong):
        extract("host=192.0.2.1 port=1 dbname=none connect_timeout=1", ["s" * 50], "20240131120000")


def test_owner_statement_with_other_commands_is_not_dropped() -> None:
    dump = "CREATE SCHEMA t1;\nALTER TABLE t1.a OWNER TO bob, ALTER COLUMN n SET DEFAULT 1;\n"
    b = build_bundle(dump, {"t1": "t1_x"})
    assert "ALTER TABLE t1_x.a OWNER TO bob, ALTER COLUMN n SET DEFAULT 1" in b.pre
