"""Comparison results without a database: drift of hand-made catalogs, sequences, JSON, merging."""

from __future__ import annotations

import json

from restore_assets.core.compare.catalog import Column, SchemaCatalog, Sequence, Table
from restore_assets.core.compare.drift import schema_drift
from restore_assets.core.compare.model import (
    ComparisonResult,
    SchemaDrift,
    SequenceCheck,
    SequenceState,
    TableComparison,
)
from restore_assets.core.compare.rows import PartialResult, RowTask, merge


def col(name: str, typ: str = "integer", generated: bool = False) -> Column:
    return Column(name, typ, generated, "", False, "pg_catalog", "int4", "pg_catalog", "int4")


def table(name: str, *cols: Column, rls: bool = False, pk: list[str] | None = None) -> Table:
    return Table(1, name, "r", False, rls, False, 0, list(cols), pk)


def catalog(schema: str, tables: list[Table], **defs: dict) -> SchemaCatalog:
    return SchemaCatalog(
        schema=schema,
        tables={t.name: t for t in tables},
        constraints=defs.get("constraints", {}),
        indexes=defs.get("indexes", {}),
        policies=defs.get("policies", {}),
        triggers=defs.get("triggers", {}),
        sequences={},
    )


def test_drift_tables_columns_and_objects() -> None:
    restored = catalog(
        "s_r",
        [
            table("a", col("id"), col("old"), col("n", "numeric")),
            table("gone", col("id")),
            table("sec", col("id"), rls=True),
        ],
        indexes={("a", "a_pkey"): "CREATE UNIQUE INDEX a_pkey ON s.a USING btree (id)"},
        constraints={("a", "a_check"): "CHECK ((n > 0))"},
    )
    live = catalog(
        "s",
        [
            table("a", col("id"), col("n", "text"), col("new")),
            table("added", col("id")),
            table("sec", col("id")),
        ],
        indexes={
            ("a", "a_pkey"): "CREATE UNIQUE INDEX a_pkey ON s.a USING btree (id)",
            ("a", "a_new_idx"): "CREATE INDEX a_new_idx ON s.a USING btree (new)",
        },
        constraints={("a", "a_check"): "CHECK ((n >= 0))"},
    )
    drift = schema_drift(restored, live)
    assert drift.tables_only_in_restored == ["gone"]
    assert drift.tables_only_in_live == ["added"]
    assert drift.columns.only_in_restored == [{"table": "a", "column": "old", "type": "integer"}]
    assert drift.columns.only_in_live == [{"table": "a", "column": "new", "type": "integer"}]
    assert drift.columns.changed == [
        {"table": "a", "column": "n", "restored": "numeric", "live": "text"}
    ]
    assert [i["name"] for i in drift.indexes.only_in_live] == ["a_new_idx"]
    assert drift.indexes.only_in_restored == [] and drift.indexes.changed == []
    assert drift.constraints.changed == [
        {"table": "a", "name": "a_check", "restored": "CHECK ((n > 0))", "live": "CHECK ((n >= 0))"}
    ]
    assert drift.row_security.changed == [
        {"table": "sec", "restored": "enabled", "live": "disabled"}
    ]
    assert drift.count == 1 + 1 + 3 + 1 + 1 + 1


def test_sequence_state_next_value_and_ok() -> None:
    fresh = SequenceState(last_value=1, is_called=False, increment=1, columns=[], max_key=None)
    assert fresh.next_value == 1 and fresh.ok is True
    behind = SequenceState(last_value=5, is_called=True, increment=1, columns=["t.id"], max_key=9)
    assert behind.next_value == 6 and behind.ok is False
    ahead = SequenceState(last_value=9, is_called=True, increment=1, columns=["t.id"], max_key=9)
    assert ahead.ok is True
    unused = SequenceState(last_value=9, is_called=False, increment=1, columns=["t.id"], max_key=9)
    assert unused.ok is False  # nextval() would return 9, which is taken
    down = SequenceState(last_value=9, is_called=True, increment=-1, columns=["t.id"], max_key=9)
    assert down.ok is None
    assert SequenceCheck("s", ahead, behind).ok is False
    assert SequenceCheck("s", ahead, None).ok is True
    flat = SequenceCheck("s", ahead, behind).to_dict()
    assert (flat["restored_last_value"], flat["live_max_key"], flat["ok"]) == (9, 9, False)
    assert flat["live_present"] and flat["live_columns"] == ["t.id"]


def test_result_json_and_summary() -> None:
    tables = {
        "a": TableComparison("a", 10, 9, 1, 0, 0, samples={"only_in_restored": [{"id": 3}]}),
        "b": TableComparison("b", 5, 5, 0, 0, 0),
    }
    result = ComparisonResult(
        database="db",
        schema="s",
        restored="s_r",
        generated_at="2024-01-01T00:00:00+00:00",
        tables=tables,
        drift=SchemaDrift(tables_only_in_live=["new"]),
        sequences={},
    )
    data = json.loads(result.to_json())
    assert data["tables"]["a"]["samples"] == {
        "only_in_restored": [{"id": 3}],
        "only_in_live": [],
        "changed": [],
    }
    assert data["summary"]["tables_compared"] == 2
    assert data["summary"]["tables_with_differences"] == 1
    assert data["summary"]["rows_only_in_restored"] == 1
    assert data["summary"]["tables_only_in_live"] == 1
    assert data["drift"]["tables"] == {"only_in_restored": [], "only_in_live": ["new"]}


def test_merge_sums_parts_in_key_order() -> None:
    t = table("t", col("id"), col("v"), pk=["id"])
    task = RowTask("t", t, t, "s_r", "s", ["id", "v"], ["id"])
    p1, p2 = (
        PartialResult(rows_restored=5, rows_live=4),
        PartialResult(rows_restored=6, rows_live=6),
    )
    p1.counts.update(only_in_restored=2, changed=1)
    p1.samples["only_in_restored"] = [{"id": 1}, {"id": 2}]
    p1.changed_columns = {"v": 1}
    p2.counts.update(only_in_restored=1, changed=2)
    p2.samples["only_in_restored"] = [{"id": 10}]
    p2.changed_columns = {"v": 2}
    merged = merge("t", [task, task], [p1, p2], sample_size=2)
    assert (merged.rows_restored, merged.rows_live) == (11, 10)
    assert (merged.only_in_restored, merged.changed) == (3, 3)
    assert merged.samples["only_in_restored"] == [{"id": 1}, {"id": 2}]
    assert merged.changed_columns == {"v": 3}
    assert merged.has_primary_key and merged.key_columns == ["id"]


def test_sequence_catalog_entry_defaults() -> None:
    assert Sequence(1, "s", 1).users == []
