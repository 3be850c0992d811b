"""The mover's pipeline on real PostgreSQL: block ranges copied in parallel, each table's indexes and
constraints built (and VACUUM ANALYZE run) as soon as its copy ends, the rest of post after."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from restore_assets.backends.local.pg import Cluster
from restore_assets.core import ddl
from restore_assets.core.ddl.parallel import (
    apply_post,
    defer_primary_keys,
    is_setting,
    per_table_builds,
)
from restore_assets.core.errors import CopyError
from restore_assets.core.mover import copy_schema, table_copy
from restore_assets.core.mover.mover import TablePost

pytestmark = pytest.mark.integration

SOURCE_DDL = """
CREATE TABLE big (id bigint PRIMARY KEY, code text NOT NULL, amount numeric(12,2), note text,
                  CONSTRAINT big_code_key UNIQUE (code), CONSTRAINT big_amount_check CHECK (amount >= 0));
CREATE INDEX big_note_idx ON big (note);
CREATE TABLE small (id int PRIMARY KEY, big_id bigint REFERENCES big (id), label text);
CREATE INDEX small_label_idx ON small (lower(label));
CREATE TABLE plain (a int, b text);
CREATE VIEW big_view AS SELECT id, code FROM big WHERE amount > 10;
"""

SOURCE_DATA = """
INSERT INTO big SELECT g, 'c' || g, (g % 500) * 1.5, repeat(md5(g::text), 1 + g % 4)
  FROM generate_series(1, 20000) g;
DELETE FROM big WHERE id % 7 = 0;  -- holes in the blocks
INSERT INTO small SELECT g, CASE WHEN g % 7 <> 0 THEN g END, 'L' || g FROM generate_series(1, 3000) g;
INSERT INTO plain SELECT g, NULL FROM generate_series(1, 500) g;
"""


def _db(pg: Cluster, name: str) -> str:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return pg.dsn(name)


def _drop(pg: Cluster, name: str) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def source(pg: Cluster) -> Iterator[str]:
    """A database holding schema `shop` with rows, indexes, constraints, a foreign key and a view."""
    dsn = _db(pg, "pipeline_source")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA shop")
        conn.execute("SET search_path TO shop")
        conn.execute(SOURCE_DDL)
        conn.execute(SOURCE_DATA)
    try:
        yield dsn
    finally:
        _drop(pg, "pipeline_source")


def _rows(dsn: str, schema: str) -> dict[str, tuple]:
    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE nspname = %s AND relkind = 'r' ORDER BY 1",
                (schema,),
            )
        ]
        return {
            t: tuple(
                conn.execute(
                    sql.SQL(
                        "SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {} x"
                    ).format(sql.Identifier(schema, t))
                ).fetchone()
            )
            for t in tables
        }


def _objects(dsn: str, schema: str) -> dict[str, set]:
    with psycopg.connect(dsn) as conn:
        indexes = {
            (r[0], r[1].replace(f"{schema}.", "S."))
            for r in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (schema,)
            )
        }
        constraints = {
            (r[0], r[1], r[2].replace(f"{schema}.", "S."))
            for r in conn.execute(
                "SELECT conname, contype::text, pg_get_constraintdef(c.oid) FROM pg_constraint c"
                " JOIN pg_namespace n ON n.oid = c.connamespace WHERE nspname = %s",
                (schema,),
            )
        }
        views = {
            r[0]
            for r in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = %s", (schema,))
        }
    return {"indexes": indexes, "constraints": constraints, "views": views}


def _pipeline(source: str, target: str, suffix: str, **copy_kwargs) -> tuple:
    """Pre without primary keys, copy building each table's keys and indexes, then the rest."""
    bundle = ddl.extract(source, ["shop"], suffix)
    restored = f"shop_{suffix}"
    pre, keys = defer_primary_keys(bundle.pre)
    assert len(pre) < len(bundle.pre) and any("PRIMARY KEY" in k for k in keys)
    with psycopg.connect(target) as conn:
        ddl.apply(conn, pre, allowed_schemas={restored})
    post = keys + bundle.post
    groups, prefix = per_table_builds(post, {restored}, restored)
    report = copy_schema(
        source, target, "shop", restored, post=TablePost(groups, prefix), **copy_kwargs
    )
    applied = set(report.post_applied)
    rest = [s for s in post if s not in applied or is_setting(s)]
    apply_post(target, rest, {restored})
    return bundle, groups, report, restored


def test_split_tables_and_per_table_builds_give_the_source_back(pg: Cluster, source: str) -> None:
    target = _db(pg, "pipeline_target")
    try:
        # ranges of ~16 blocks: `big` (hundreds of blocks) is cut into 3 ranges, one per worker
        bundle, groups, report, restored = _pipeline(
            source, target, "piped", workers=3, split_bytes=16 * 8192
        )
        assert _rows(target, restored) == _rows(source, "shop")
        assert _objects(target, restored) == _objects(source, "shop")
        by_table = {t.table: t for t in report.tables}
        assert by_table["big"].parts == 3 and by_table["big"].rows == 20000 - 20000 // 7
        assert by_table["plain"].parts == 1
        # every first-wave build ran in the mover, right after its table; none of them twice
        assert sorted(report.post_applied) == sorted(s for g in groups.values() for s in g)
        # primary key (deferred from pre), unique key, index; settings travel with them
        assert [s for s in groups["big"] if not is_setting(s)] == [
            s for s in groups["big"] if "PRIMARY KEY" in s or "UNIQUE" in s or "INDEX" in s
        ]
        assert sum(not is_setting(s) for s in groups["big"]) == 3
        assert by_table["big"].post_statements == len(groups["big"])
        assert set(report.analyzed) == {"big", "small", "plain"}
        # the foreign key small -> big was added by the mover once both tables were complete
        assert any("FOREIGN KEY" in s for s in report.post_applied)
        with psycopg.connect(target) as conn:
            analyzed = dict(
                conn.execute(
                    "SELECT relname, reltuples FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE nspname = %s AND relkind = 'r'",
                    (restored,),
                ).fetchall()
            )
        assert analyzed["big"] > 0 and analyzed["small"] > 0  # VACUUM ANALYZE ran per table
    finally:
        _drop(pg, "pipeline_target")


def test_one_worker_without_splitting_gives_the_same_result(pg: Cluster, source: str) -> None:
    target = _db(pg, "pipeline_target1")
    try:
        _b, _g, report, restored = _pipeline(source, target, "one", workers=1, split_bytes=0)
        assert all(t.parts == 1 for t in report.tables)
        assert _rows(target, restored) == _rows(source, "shop")
        assert _objects(target, restored) == _objects(source, "shop")
    finally:
        _drop(pg, "pipeline_target1")


def test_a_failing_build_fails_the_copy_naming_the_table(pg: Cluster, source: str) -> None:
    target = _db(pg, "pipeline_target_bad")
    try:
        bundle = ddl.extract(source, ["shop"], "bad")
        with psycopg.connect(target) as conn:
            ddl.apply(conn, bundle.pre, allowed_schemas={"shop_bad"})
        groups, prefix = per_table_builds(bundle.post, {"shop_bad"}, "shop_bad")
        # a unique index the data violates: the build fails after the copy of `small`
        groups["small"] = [
            *groups["small"],
            "CREATE UNIQUE INDEX small_bad ON shop_bad.small (big_id IS NULL)",
        ]
        with pytest.raises(CopyError, match=r"post builds of shop\.small"):
            copy_schema(
                source, target, "shop", "shop_bad", workers=2, post=TablePost(groups, prefix)
            )
    finally:
        _drop(pg, "pipeline_target_bad")


def test_post_of_another_schema_is_refused_before_anything_runs(source: str) -> None:
    bundle = ddl.extract(source, ["shop"], "guarded")
    with pytest.raises(Exception, match="shop_guarded|not allowed|schema"):
        per_table_builds(bundle.post, {"somewhere_else"}, "shop_guarded")


def test_primary_keys_stay_in_pre_when_a_view_there_may_need_them() -> None:
    pre = [
        "SET search_path = ''",
        "CREATE TABLE s.t (id integer NOT NULL, v text)",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)",
        "CREATE VIEW s.v AS SELECT id, v FROM s.t GROUP BY id",
    ]
    assert defer_primary_keys(pre) == (pre, [])
    kept, keys = defer_primary_keys(pre[:3])
    assert kept == [pre[0], pre[1]] and keys == [pre[0], pre[2]]


def test_partitioned_table_keys_deferred_and_attached(pg: Cluster) -> None:
    source = _db(pg, "pipeline_parts_source")
    target = _db(pg, "pipeline_parts_target")
    try:
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA parts")
            conn.execute(
                "CREATE TABLE parts.ev (id bigint, at date NOT NULL, v text, PRIMARY KEY (id, at))"
                " PARTITION BY RANGE (at)"
            )
            conn.execute(
                "CREATE TABLE parts.ev_2024 PARTITION OF parts.ev"
                " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')"
            )
            conn.execute(
                "CREATE TABLE parts.ev_2025 PARTITION OF parts.ev"
                " FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"
            )
            conn.execute("CREATE INDEX ev_v_idx ON parts.ev (v)")
            conn.execute(
                "CREATE TABLE parts.ref (id int PRIMARY KEY, ev_id bigint, ev_at date,"
                " FOREIGN KEY (ev_id, ev_at) REFERENCES parts.ev (id, at))"
            )
            conn.execute(
                "INSERT INTO parts.ev SELECT g, date '2024-01-01' + (g % 700), md5(g::text)"
                " FROM generate_series(1, 5000) g"
            )
            conn.execute(
                "INSERT INTO parts.ref SELECT g, g, date '2024-01-01' + (g % 700)"
                " FROM generate_series(1, 100) g"
            )
        bundle = ddl.extract(source, ["parts"], "p")
        pre, keys = defer_primary_keys(bundle.pre)
        assert sum("PRIMARY KEY" in k for k in keys) == 4  # parent, two leaves, ref
        with psycopg.connect(target) as conn:
            ddl.apply(conn, pre, allowed_schemas={"parts_p"})
        post = keys + bundle.post
        groups, prefix = per_table_builds(post, {"parts_p"}, "parts_p")
        report = copy_schema(
            source, target, "parts", "parts_p", workers=2, post=TablePost(groups, prefix)
        )
        applied = set(report.post_applied)
        apply_post(target, [s for s in post if s not in applied or is_setting(s)], {"parts_p"})
        assert _rows(target, "parts_p") == _rows(source, "parts")
        assert _objects(target, "parts_p") == _objects(source, "parts")
        with psycopg.connect(target) as conn:
            invalid = conn.execute(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'parts_p' AND NOT i.indisvalid"
            ).fetchone()[0]
        assert invalid == 0  # the parent's key and index have every leaf's attached
    finally:
        _drop(pg, "pipeline_parts_source")
        _drop(pg, "pipeline_parts_target")


def test_side_by_side_builds_and_frozen_copies_give_the_source_back(
    pg: Cluster, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_copy, "FREEZE_BYTES", 0)
    target = _db(pg, "pipeline_target_side")
    try:
        # every table's keys and indexes cut into builds side by side, every table copied whole
        _b, groups, report, restored = _pipeline(
            source, target, "side", workers=3, split_bytes=0, parallel_build_bytes=1
        )
        assert _rows(target, restored) == _rows(source, "shop")
        assert _objects(target, restored) == _objects(source, "shop")
        assert all(t.frozen and t.parts == 1 for t in report.tables)
        assert sorted(report.post_applied) == sorted(s for g in groups.values() for s in g)
        with psycopg.connect(target) as conn:
            invalid = conn.execute(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND NOT (i.indisvalid AND i.indisready)",
                (restored,),
            ).fetchone()[0]
        assert invalid == 0
    finally:
        _drop(pg, "pipeline_target_side")


def test_a_target_table_holding_rows_is_not_truncated(
    pg: Cluster, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_copy, "FREEZE_BYTES", 0)
    target = _db(pg, "pipeline_target_rows")
    try:
        bundle = ddl.extract(source, ["shop"], "rows")
        with psycopg.connect(target) as conn:
            ddl.apply(conn, bundle.pre, allowed_schemas={"shop_rows"})
            conn.execute("INSERT INTO shop_rows.plain VALUES (-1, 'kept')")
        report = copy_schema(source, target, "shop", "shop_rows", tables=["plain"], workers=1)
        (plain,) = report.tables
        assert not plain.frozen and plain.rows == 500
        with psycopg.connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM shop_rows.plain").fetchone()[0] == 501
            assert (
                conn.execute("SELECT b FROM shop_rows.plain WHERE a = -1").fetchone()[0] == "kept"
            )
    finally:
        _drop(pg, "pipeline_target_rows")


def test_a_failing_side_by_side_build_fails_the_copy_naming_the_table(
    pg: Cluster, source: str
) -> None:
    target = _db(pg, "pipeline_target_bad2")
    try:
        bundle = ddl.extract(source, ["shop"], "bad2")
        pre, keys = defer_primary_keys(bundle.pre)
        with psycopg.connect(target) as conn:
            ddl.apply(conn, pre, allowed_schemas={"shop_bad2"})
        groups, prefix = per_table_builds(keys + bundle.post, {"shop_bad2"}, "shop_bad2")
        groups["big"] = [*groups["big"], "CREATE UNIQUE INDEX big_bad ON shop_bad2.big (amount)"]
        with pytest.raises(CopyError, match=r"post builds of shop\.big into shop_bad2\.big"):
            copy_schema(
                source,
                target,
                "shop",
                "shop_bad2",
                workers=2,
                post=TablePost(groups, prefix),
                parallel_build_bytes=1,
            )
    finally:
        _drop(pg, "pipeline_target_bad2")


def test_primary_keys_are_deferred_past_a_function_body_without_group_by() -> None:
    pre = [
        "CREATE TABLE s.t (id integer NOT NULL, v text)",
        "ALTER TABLE ONLY s.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)",
        "CREATE FUNCTION s.n() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM s.t; END",
    ]
    assert defer_primary_keys(pre) == ([pre[0], pre[2]], [pre[1]])
    grouped = pre[2].replace("FROM s.t;", "FROM s.t GROUP BY id;")
    assert defer_primary_keys([*pre[:2], grouped]) == ([*pre[:2], grouped], [])


def test_a_foreign_key_onto_a_table_not_copied_is_left_to_post(pg: Cluster, source: str) -> None:
    target = _db(pg, "pipeline_target_fk")
    try:
        bundle = ddl.extract(source, ["shop"], "fk")
        pre, keys = defer_primary_keys(bundle.pre)
        with psycopg.connect(target) as conn:
            ddl.apply(conn, pre, allowed_schemas={"shop_fk"})
        groups, prefix = per_table_builds(keys + bundle.post, {"shop_fk"}, "shop_fk")
        assert any("FOREIGN KEY" in s for s in groups["small"])
        report = copy_schema(
            source, target, "shop", "shop_fk", tables=["small"], post=TablePost(groups, prefix)
        )
        assert report.post_applied and not any("FOREIGN KEY" in s for s in report.post_applied)
    finally:
        _drop(pg, "pipeline_target_fk")


def test_builds_start_no_parallel_workers_of_the_server(pg: Cluster, source: str) -> None:
    """The prefix of every group of post builds (the mover's builders and post use the same one)
    lets the server start no parallel maintenance workers: the restore's load is its own sessions'."""
    bundle = ddl.extract(source, ["shop"], "pw")
    groups, prefix = per_table_builds(bundle.post, {"shop_pw"}, "shop_pw")
    assert groups
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        default = conn.execute("SHOW max_parallel_maintenance_workers").fetchone()
        assert default is not None and default[0] != "0"  # the server allows them
        with conn.transaction():
            for statement in prefix:
                conn.execute(statement)
            assert conn.execute("SHOW max_parallel_maintenance_workers").fetchone() == ("0",)
        # SET LOCAL: the session is as it was after the group's transaction
        assert conn.execute("SHOW max_parallel_maintenance_workers").fetchone() == default
