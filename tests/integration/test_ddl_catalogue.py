"""Completeness: a tenant with one object of every kind of the statement inventory round-trips.

The fixture (``tests/fixtures/ddl/catalogue.sql``) is restored by the job's DDL path (extract ->
guard -> pre -> copy -> post waves, ownership applied). ``pg_dump`` of the source and of the
restored schema are then compared *entry by entry in any order*: each TOC entry (its header with
name, type, owner and tablespace, and its statements) together with the access method and the
tablespace in force for it (pg_dump's ``SET default_table_access_method`` / ``SET
default_tablespace`` before the entry). The source side has its schema name substituted by the
independent oracle of ``test_ddl_roundtrip.expected_dump``; the only entries removed from it are
the statements the engine skips and lists (they attach the restored copy to objects outside it).
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pglast import parser
from psycopg import sql

from restore_assets.backends.local.pg import Cluster
from restore_assets.core.ddl import dump_schema_ddl
from restore_assets.core.ddl.inventory import ALLOW, INVENTORY, SKIP
from tests.integration.test_ddl_fidelity import restore_waves, tablespace_dir  # noqa: F401
from tests.integration.test_ddl_roundtrip import (  # noqa: F401
    assert_fast_path_agrees,
    expected_dump,
    reader_role,
    run_script,
)

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ddl"
# inventory kinds the fixture cannot produce on this server, and why
NOT_COVERED = {
    "AlterEnumStmt": "pg_dump writes it only with --binary-upgrade",
    "AlterPolicyStmt": "pg_dump never writes it",
    "AlterTSDictionaryStmt": "pg_dump never writes it",
    "SecLabelStmt": "no security label provider in Debian's postgresql-15 packages",
    "AlterExtensionContentsStmt": "pg_dump writes it only with --binary-upgrade",
    "AlterPublicationStmt": "pg_dump -n leaves publication membership out (whole-database dumps"
    " only); the skip rule is tested on statement text",
}

Entry = tuple[str, str, str, str]  # header, statements, access method, tablespace
_SETTING = re.compile(r"^SET (default_tablespace|default_table_access_method) = (.*);$")


def dump_entries(dump: str) -> list[Entry]:
    """The TOC entries of a plain pg_dump script, each with the AM and tablespace in force."""
    settings = {"default_tablespace": "''", "default_table_access_method": "heap"}
    entries: list[Entry] = []
    header: str | None = None
    body: list[str] = []
    state = dict(settings)

    def close() -> None:
        if header is not None:
            text = "\n".join(line for line in body if line.strip() and line != "--").strip()
            entries.append(
                (header, text, state["default_table_access_method"], state["default_tablespace"])
            )

    lines = dump.split("\n")
    for i, line in enumerate(lines):
        m = _SETTING.match(line)
        if m:
            settings[m.group(1)] = m.group(2)
            continue
        if line.startswith("-- Name: ") and i > 0 and lines[i - 1] == "--":
            close()
            header, body, state = line, [], dict(settings)
            continue
        if header is not None:
            body.append(line)
    close()
    return entries


def row_counts(dsn: str, schema: str) -> dict[str, int]:
    """Rows of every table and populated materialized view of the schema."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rels = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm') AND c.relispopulated",
            (schema,),
        ).fetchall()
        return {
            r: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, r))
            ).fetchone()[0]
            for (r,) in rels
        }


# ALTER TABLE subcommands pg_dump writes for the fixture (the guard's AT_ALLOWED lists all it accepts)
AT_COVERED = {
    "AT_AddConstraint",
    "AT_ChangeOwner",
    "AT_ColumnDefault",
    "AT_AddIdentity",
    "AT_SetStatistics",
    "AT_SetStorage",
    "AT_SetCompression",
    "AT_SetOptions",
    "AT_AlterColumnGenericOptions",
    "AT_AttachPartition",
    "AT_EnableRowSecurity",
    "AT_ForceRowSecurity",
    "AT_ClusterOn",
    "AT_ReplicaIdentity",
    "AT_DisableTrig",
    "AT_EnableAlwaysTrig",
    "AT_DisableRule",
}


def alter_table_subcommands(statements: list[str]) -> set[str]:
    """The ALTER TABLE subcommand types among the statements."""
    out = set()
    for s in statements:
        for raw in json.loads(parser.parse_sql_json(s))["stmts"]:
            for cmd in raw["stmt"].get("AlterTableStmt", {}).get("cmds", []):
                out.add(cmd["AlterTableCmd"]["subtype"])
    return out


def kinds_of(statements: list[str]) -> set[str]:
    """pglast node types of the statements."""
    out = set()
    for s in statements:
        for raw in json.loads(parser.parse_sql_json(s))["stmts"]:
            out.add(next(iter(raw["stmt"])))
    return out


@pytest.fixture
def catalogue_db(
    fresh_db: str,
    pg: Cluster,
    reader_role: str,  # noqa: F811 (the fixture imported above)
    tablespace_dir: str,  # noqa: F811
) -> Iterator[tuple[str, str]]:
    """fresh_db with the database-wide objects the fixture needs and the fixture loaded."""
    ts = f"ra_cat_ts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                sql.Identifier(ts), sql.Literal(tablespace_dir)
            )
        )
    try:
        run_script(
            fresh_db,
            "CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler;"
            " CREATE FOREIGN DATA WRAPPER cat_fdw; CREATE SERVER cat_srv FOREIGN DATA WRAPPER cat_fdw;"
            " CREATE PUBLICATION cat_pub;",
        )
        script = (FIXTURES / "catalogue.sql").read_text()
        run_script(fresh_db, script.replace("{{READER}}", reader_role).replace("{{TS}}", ts))
        yield fresh_db, ts
    finally:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            for schema in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'cat1%'"
            ).fetchall():
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema[0])))
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(ts)))


def test_catalogue_tenant_round_trips_entry_by_entry(
    catalogue_db: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, ts = catalogue_db
    assert_fast_path_agrees(dsn, "cat1", monkeypatch)
    counts = row_counts(dsn, "cat1")
    bundle, new = restore_waves(dsn, "cat1", include_owner=True)
    assert bundle.unknown == [] and bundle.violations == []

    # the fixture covers the inventory: every kind pg_dump writes for a schema, but NOT_COVERED
    seen = kinds_of(bundle.pre + bundle.post + bundle.full)
    expected_kinds = {k for k, r in INVENTORY.items() if r.action in (ALLOW, SKIP)} - set(
        NOT_COVERED
    )
    assert expected_kinds - seen == set(), f"fixture lacks: {sorted(expected_kinds - seen)}"
    subcommands = alter_table_subcommands(bundle.full)
    assert AT_COVERED <= subcommands, sorted(AT_COVERED - subcommands)

    # the attachment outside the schema was skipped and listed, never applied
    assert bundle.skipped == [f"ALTER FUNCTION {new}.touch() DEPENDS ON EXTENSION plpgsql"]
    assert any("skipped, never applied" in w and "touch()" in w for w in bundle.warnings)
    with psycopg.connect(dsn) as conn:
        published = conn.execute(
            "SELECT schemaname FROM pg_publication_tables WHERE pubname = 'cat_pub'"
        ).fetchall()
    assert published == [("cat1",)]  # the live publication did not gain the restored copy

    source = expected_dump(dump_schema_ddl(dsn, ["cat1"]), "cat1", new)
    restored = dump_schema_ddl(dsn, [new])
    want = Counter(dump_entries(source))
    got = Counter(dump_entries(restored))
    touch = next(e for e in want if e[0].startswith("-- Name: touch(); Type: FUNCTION"))
    del want[touch]
    want[
        (
            touch[0],
            touch[1].replace(f"\nALTER FUNCTION {new}.touch() DEPENDS ON EXTENSION plpgsql;", ""),
            *touch[2:],
        )
    ] += 1
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"missing in the restored dump: {list(missing)}\nextra: {list(extra)}"
    )

    # the properties the comparison relies on are really there
    props = {e[0].split(";")[0].removeprefix("-- Name: "): (e[2], e[3]) for e in got}
    assert props["heap2_t"] == ("heap2", "''")
    assert props["mv_heap2"] == ("heap2", ts)
    assert props["spaced"][1] == ts and props["spaced_v_idx"][1] == ts
    assert props["items"] == ("heap", "''")
    assert len(got) > 100
    assert row_counts(dsn, new) == counts


def test_cross_schema_dependencies_both_ways(fresh_db: str) -> None:
    """app depends on lib and lib on app: app is restored exactly, lib is left as it was."""
    run_script(fresh_db, (FIXTURES / "cross_schema.sql").read_text())
    lib_before = dump_schema_ddl(fresh_db, ["lib"])
    counts = row_counts(fresh_db, "app")
    bundle, new = restore_waves(fresh_db, "app")
    assert bundle.unknown == [] and bundle.skipped == []

    source = expected_dump(dump_schema_ddl(fresh_db, ["app"]), "app", new)
    want = Counter(dump_entries(source))
    got = Counter(dump_entries(dump_schema_ddl(fresh_db, [new])))
    missing, extra = want - got, got - want
    assert not missing and not extra, f"missing: {list(missing)}\nextra: {list(extra)}"
    assert row_counts(fresh_db, new) == counts
    # lib is untouched and still depends on the live app, not on the restored copy
    assert dump_schema_ddl(fresh_db, ["lib"]) == lib_before
    with psycopg.connect(fresh_db) as conn:
        reads = conn.execute(
            "SELECT DISTINCT v.relnamespace::regnamespace::text FROM pg_depend d"
            " JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = d.refobjid"
            " WHERE r.ev_class = 'lib.order_levels'::regclass AND v.oid <> r.ev_class"
        ).fetchall()
        assert reads == [("app",)]
        # the restored copy's references into lib work: defaults, checks, triggers, FKs
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (region_id, code, label, qty) VALUES (2, 'Z', 'new', 6)"
            ).format(sql.Identifier(new, "orders"))
        )
        row = conn.execute(
            sql.SQL("SELECT id >= 500, seen IS NOT NULL FROM {} WHERE label = 'new'").format(
                sql.Identifier(new, "orders")
            )
        ).fetchone()
        assert row == (True, True)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                sql.SQL("INSERT INTO {} (qty) VALUES (3)").format(sql.Identifier(new, "orders"))
            )
