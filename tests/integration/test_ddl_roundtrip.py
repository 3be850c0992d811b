"""Round trip on real PostgreSQL: extract -> pre -> copy -> post, then compare pg_dump outputs.

The oracle is independent of the renamer: the expected dump of the restored schema is the source
schema's dump with the name substituted by a plain regular expression wherever pg_dump writes a
schema-qualified name (``t1.`` followed by a name), a ``SCHEMA t1`` clause, a ``Schema: t1;``
TOC comment or a ``search_path`` element; and the places where the name must NOT change (data
strings, comment texts, an alias spelled like the schema) are listed explicitly per fixture and
restored after the substitution.

Normalizations (and why):
1. ``\\restrict``/``\\unrestrict`` lines are removed (``dump_schema_ddl`` does it): pg_dump
   writes a random key per run.
That is the only one: ownership matches because the restore runs as the source's owner, and
object order is pg_dump's own sort, which does not depend on the schema name.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from restore_assets.core.ddl import (
    DdlBundle,
    apply,
    build_bundle,
    dump_schema_ddl,
    extract,
    guard,
    quote_ident,
    target_name,
)
from tests.conftest import CORPUS

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ddl"
SUFFIX = "20240131120000"


# -- helpers shared by the DDL integration tests ------------------------------------------------
def run_script(dsn: str, script: str) -> None:
    """Execute a multi-statement script (simple query protocol) in autocommit mode."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(script)  # type: ignore[arg-type]


def copy_data(conn: psycopg.Connection, old: str, new: str) -> None:
    """INSERT ... SELECT every plain table of old into new (triggers and FKs off: replica)."""
    conn.execute("SET session_replication_role = replica")
    tables = conn.execute(
        "SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
        (old,),
    ).fetchall()
    for _oid, table in tables:
        # through text, like COPY: the restored schema has its own enum/domain/composite types
        cols = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
            " AND attgenerated = '' ORDER BY attnum",
            (sql.Identifier(new, table).as_string(conn),),
        ).fetchall()
        targets = sql.SQL(", ").join(sql.Identifier(c) for c, _ in cols)
        values = sql.SQL(", ").join(
            sql.SQL("{}::text::{}").format(sql.Identifier(c), sql.SQL(t))  # type: ignore[arg-type]
            for c, t in cols
        )
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
                sql.Identifier(new, table), targets, values, sql.Identifier(old, table)
            )
        )
    conn.execute("RESET session_replication_role")


def restore(dsn: str, schema: str, suffix: str = SUFFIX, **kwargs) -> tuple[DdlBundle, str]:
    """The whole DDL path of a restore, inside one database: extract, guard, pre, copy, post."""
    bundle = extract(dsn, [schema], suffix, **kwargs)
    new = target_name(schema, suffix)
    bundle.check_guard()  # the rules applied while building ...
    guard(bundle.pre + bundle.post, bundle.target_schemas)  # ... and independently
    with psycopg.connect(dsn) as conn:
        apply(conn, bundle.pre, allowed_schemas=bundle.target_schemas)
        with conn.transaction():
            copy_data(conn, schema, new)
        apply(conn, bundle.post, allowed_schemas=bundle.target_schemas)
    return bundle, new


def expected_dump(source: str, old: str, new: str, keep: tuple[str, ...] = ()) -> str:
    """The source dump with the schema name substituted (an oracle independent of the renamer)."""
    q_old, q_new = quote_ident(old), quote_ident(new)
    out = source
    for snippet in keep:
        assert snippet in out, f"fixture snippet not found in the dump: {snippet!r}"
    # qualified names: t1.x, 't1.seq'::regclass, OPERATOR(t1.#+#), OWNED BY t1.t.c
    out = re.sub(rf"(?<![\w$\"]){re.escape(q_old)}(?=\.)", q_new, out)
    # SCHEMA t1 (CREATE/ALTER/COMMENT ON/GRANT ON/IN SCHEMA), and TOC comments
    out = re.sub(rf"(?<=SCHEMA ){re.escape(q_old)}(?![\w$])", q_new, out)
    out = re.sub(rf"(?m)(?<=Schema: ){re.escape(old)}(?=; Owner: )", new, out)
    out = re.sub(rf"(?m)(?<=^-- Name: ){re.escape(old)}(?=; Type: SCHEMA;)", new, out)
    out = re.sub(rf"(?m)(?<=^-- Name: SCHEMA ){re.escape(old)}(?=; Type: )", new, out)
    # function search_path settings: SET search_path TO 't1', 'pg_temp'
    out = re.sub(
        rf"(?m)^(\s+SET search_path TO .*)'{re.escape(q_old)}'",
        lambda m: m.group(1) + f"'{q_new}'",
        out,
    )
    for snippet in keep:  # places where the name must not change
        out = out.replace(expected_dump(snippet, old, new), snippet)
    return out


def sequence_states(dsn: str, schema: str) -> dict[str, int]:
    """nextval() of every sequence of the schema (advances them: call once per comparison)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = %s ORDER BY 1", (schema,)
            )
        ]
        return {
            n: conn.execute(
                sql.SQL("SELECT nextval({})").format(
                    sql.Literal(f"{quote_ident(schema)}.{quote_ident(n)}")
                )
            ).fetchone()[0]
            for n in names
        }


def table_counts(dsn: str, schema: str) -> dict[str, int]:
    """Row count of every table and materialized view of the schema."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rels = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm') ORDER BY 1",
                (schema,),
            )
        ]
        return {
            r: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, r))
            ).fetchone()[0]
            for r in rels
        }


def assert_same_dump(
    dsn: str, old: str, new: str, keep: tuple[str, ...] = (), drop: tuple[str, ...] = ()
) -> None:
    """pg_dump of the restored schema equals the source's with the name substituted.

    `drop` lists lines removed from the expected dump (each use explains why at the call site).
    """
    source = dump_schema_ddl(dsn, [old])
    restored = dump_schema_ddl(dsn, [new])
    expected = expected_dump(source, old, new, keep)
    for line in drop:
        assert line in expected.splitlines(), line
        expected = "\n".join(x for x in expected.split("\n") if x != line)
    if restored != expected:
        import difflib

        diff = "\n".join(
            difflib.unified_diff(
                expected.splitlines(), restored.splitlines(), "expected", "restored", lineterm=""
            )
        )
        pytest.fail(f"restored schema differs from the source:\n{diff[:6000]}")


def schema_privileges(dsn: str, schema: str) -> set[tuple[str, str]]:
    """(grantee, privilege) pairs of a schema's ACL."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT coalesce(r.rolname, 'PUBLIC'), a.privilege_type"
            " FROM pg_namespace n, aclexplode(n.nspacl) a"
            " LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    return {(g, p) for g, p in rows}


def assert_fast_path_agrees(dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_bundle's token-first fast path gives what its parse-first slow path gives."""
    from restore_assets.core.ddl.analyze import Analyzer

    dump = dump_schema_ddl(dsn, [schema])
    fast = build_bundle(dump, {schema: schema + "_fp"})
    with monkeypatch.context() as m:
        m.setattr(Analyzer, "complete", lambda self, p, tree: self._slow(p[0], p[1]))
        slow = build_bundle(dump, {schema: schema + "_fp"})
    assert (fast.pre, fast.post, fast.full, fast.warnings) == (
        slow.pre,
        slow.post,
        slow.full,
        slow.warnings,
    )


@pytest.fixture
def reader_role(pg, fresh_db: str) -> Iterator[str]:
    """A uniquely named role (roles are cluster-wide), dropped with what it owns afterwards."""
    role = f"ra_ddl_reader_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# -- the tenant fixture -------------------------------------------------------------------------
T1_KEEP = (
    "'tenant t1 (not t10): t1.accounts holds money'",
    "note text DEFAULT 't1.accounts'::text",
    "'accounts of tenant t1; see t1.invoices and t10.ref'",
    "'note (t1.accounts.note)'",
    "'touches t1.items rows'",
    "-- a comment mentioning t1.accounts stays as written",
    ' SELECT t1."Id",\n    t1.t1,\n    t1."Value"\n   FROM',  # alias t1, column t1
)


def test_tenant_roundtrip(fresh_db: str, reader_role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    script = (FIXTURES / "tenant_t1.sql").read_text().replace("{{READER}}", reader_role)
    run_script(fresh_db, script)
    t10_before = dump_schema_ddl(fresh_db, ["t10"])
    shared_before = dump_schema_ddl(fresh_db, ["shared"])
    counts = table_counts(fresh_db, "t1")

    assert_fast_path_agrees(fresh_db, "t1", monkeypatch)
    bundle, new = restore(fresh_db, "t1")

    assert new == f"t1_{SUFFIX}"
    assert bundle.unknown == []
    # a COMMENT ON SCHEMA keeps its text, a grant follows the schema
    assert_same_dump(fresh_db, "t1", new, T1_KEEP)
    assert table_counts(fresh_db, new) == counts
    # t10 (t1 is its prefix) and shared are untouched, and still referenced as such
    assert dump_schema_ddl(fresh_db, ["t10"]) == t10_before
    assert dump_schema_ddl(fresh_db, ["shared"]) == shared_before
    restored = dump_schema_ddl(fresh_db, [new])
    assert "REFERENCES t10.ref(id)" in restored
    assert "REFERENCES shared.countries(code)" in restored
    assert f"DEFAULT '{new}.accounts'::regclass" in restored
    assert f"SET search_path TO '{new}', 'pg_temp'" in restored
    # sequences continue where the source's do
    assert sequence_states(fresh_db, new) == sequence_states(fresh_db, "t1")
    # the dynamic SQL in count_rows is reported, with the function's name
    assert any("t1.count_rows" in w and "dynamic SQL" in w for w in bundle.warnings)
    # the restored objects work: functions resolve their own schema, views and matview read it
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        q = sql.Identifier(new)
        one = conn.execute(
            sql.SQL("SELECT {}.find_account('ann@example.com'), {}.active_count()").format(q, q)
        ).fetchone()
        src = conn.execute(
            "SELECT t1.find_account('ann@example.com'), t1.active_count()"
        ).fetchone()
        assert one == src
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.items (invoice_id, sku, qty, price) VALUES (1, 'N', 1, 1)"
            ).format(q)
        )
    # the trigger function wrote into the restored schema's audit_log, not into t1's
    after = table_counts(fresh_db, new)
    assert after["audit_log"] == counts["audit_log"] + 1
    assert table_counts(fresh_db, "t1")["audit_log"] == counts["audit_log"]


def test_quoted_mixed_case_schema_roundtrip(fresh_db: str) -> None:
    script = (FIXTURES / "tenant_quoted.sql").read_text()
    run_script(fresh_db, script)
    bundle, new = restore(fresh_db, "Tenant_X", "v2")
    assert new == "Tenant_X_v2"
    assert bundle.unknown == []
    assert_same_dump(fresh_db, "Tenant_X", new, ("'Tenant_X.orders'::text",))
    assert sequence_states(fresh_db, new) == sequence_states(fresh_db, "Tenant_X")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        got = conn.execute('SELECT "Tenant_X_v2"."Order_Count"()').fetchone()
        assert got == conn.execute('SELECT "Tenant_X"."Order_Count"()').fetchone()


# -- third-party corpus -------------------------------------------------------------------------
def test_pagila_public_roundtrip(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_script(fresh_db, (CORPUS / "pagila-schema.sql").read_text())
    assert_fast_path_agrees(fresh_db, "public", monkeypatch)
    bundle, new = restore(fresh_db, "public", include_owner=True)
    assert new == f"public_{SUFFIX}"
    assert bundle.unknown == []
    # Normalization specific to `public`: pg_dump prints a schema's ACL relative to its initial
    # privileges; initdb's `public` starts with USAGE for PUBLIC (pg_init_privs), a new schema
    # with nothing, so the source's ACL section has an extra "REVOKE USAGE ... FROM PUBLIC"
    # before the same "GRANT ALL ... TO PUBLIC". The effective privileges are compared instead.
    assert_same_dump(fresh_db, "public", new, drop=(f"REVOKE USAGE ON SCHEMA {new} FROM PUBLIC;",))
    assert schema_privileges(fresh_db, new) == schema_privileges(fresh_db, "public")
    assert sequence_states(fresh_db, new) == sequence_states(fresh_db, "public")


def test_aws_sample_tenant_roundtrip(fresh_db: str) -> None:
    script = (CORPUS / "aws-sample-tenant-schema.sql").read_text()
    run_script(fresh_db, script.replace("{{SCHEMA_NAME}}", "customer_a1"))
    counts = table_counts(fresh_db, "customer_a1")
    bundle, new = restore(fresh_db, "customer_a1")
    assert bundle.unknown == []
    assert_same_dump(fresh_db, "customer_a1", new)
    assert table_counts(fresh_db, new) == counts
    assert sequence_states(fresh_db, new) == sequence_states(fresh_db, "customer_a1")
