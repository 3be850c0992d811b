"""What a DMS task is told: selection and rename rules, full-load settings, and LOB settings sized
from the source's real largest values (truncation always fails the task)."""

from __future__ import annotations

import math
from typing import Any

import psycopg
from psycopg import sql

FULL_LOB_THRESHOLD_KB = 100 * 1024
MIN_LOB_KB = 32


def escape_name(name: str) -> str:
    """A schema or table name as a literal DMS pattern: `_`, `%` and `[` in brackets."""
    return "".join(f"[{c}]" if c in "_%[" else c for c in name)


def table_mappings(schema: str, target_schema: str, tables: list[str] | None = None) -> dict:
    """Selection rules for the schema (or listed tables) and a rename of the schema to its target."""
    rules: list[dict[str, Any]] = []
    for i, table in enumerate(tables or [None], start=1):
        rules.append(
            {
                "rule-type": "selection",
                "rule-id": str(i),
                "rule-name": f"include-{i}",
                "object-locator": {
                    "schema-name": escape_name(schema),
                    "table-name": escape_name(table) if table else "%",
                },
                "rule-action": "include",
            }
        )
    n = len(rules) + 1
    rules.append(
        {
            "rule-type": "transformation",
            "rule-id": str(n),
            "rule-name": "rename-schema",
            "rule-target": "schema",
            "object-locator": {"schema-name": escape_name(schema)},
            "rule-action": "rename",
            "value": target_schema,
        }
    )
    return {"rules": rules}


def task_settings(lob: dict[str, Any]) -> dict[str, Any]:
    """Full-load task settings: tables already created (DO_NOTHING), errors stop the task."""
    return {
        "TargetMetadata": {
            "TargetSchema": "",
            "SupportLobs": True,
            "FullLobMode": lob["FullLobMode"],
            "LobChunkSize": 64,
            "LimitedSizeLobMode": not lob["FullLobMode"],
            "LobMaxSize": 0 if lob["FullLobMode"] else lob["LobMaxSize"],
        },
        "FullLoadSettings": {
            "TargetTablePrepMode": "DO_NOTHING",
            "CreatePkAfterFullLoad": False,
            "StopTaskCachedChangesApplied": False,
            "StopTaskCachedChangesNotApplied": False,
            "MaxFullLoadSubTasks": 8,
            "CommitRate": 10000,
        },
        "Logging": {"EnableLogging": True},
        "ErrorBehavior": {
            "DataErrorPolicy": "STOP_TASK",
            "DataTruncationErrorPolicy": "STOP_TASK",
            "TableErrorPolicy": "STOP_TASK",
            "FailOnNoTablesCaptured": True,
            "FullLoadIgnoreConflicts": False,
        },
        "ValidationSettings": {"EnableValidation": False},
    }


_LOB_COLUMNS = """
SELECT c.relname, a.attname, t.typname, t.typcategory
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
 WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
   AND (t.typname IN ('text', 'bytea', 'json', 'jsonb', 'xml')
        OR t.typcategory = 'A'
        OR (t.typname IN ('varchar', 'bpchar') AND a.atttypmod < 0))
 ORDER BY c.relname, a.attnum
"""


def lob_settings(
    source_dsn: str, schema: str, tables: list[str] | None, mode: str = "limited"
) -> dict[str, Any]:
    """LOB settings from the source's real largest values: LimitedSizeLobMode sized to fit them,
    FullLobMode when they are too large (or when configured); truncation always fails the task."""
    if mode == "full":
        return {"FullLobMode": True, "LobMaxSize": 0, "largest_bytes": None}
    largest = 0
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        columns: dict[str, list[tuple[str, str, str]]] = {}
        for rel, col, typ, cat in conn.execute(_LOB_COLUMNS, (schema,)):
            if tables is None or rel in tables:
                columns.setdefault(rel, []).append((col, typ, cat))
        for rel, cols in columns.items():
            parts = []
            for col, typ, _cat in cols:
                expr = (
                    sql.Identifier(col)
                    if typ in ("text", "bytea", "varchar", "bpchar")
                    else (sql.SQL("{}::text").format(sql.Identifier(col)))
                )
                factor = 1 if typ == "bytea" else 2  # character LOBs travel as UTF-16 in DMS
                parts.append(
                    sql.SQL("coalesce(max(octet_length({})), 0) * {}").format(
                        expr, sql.Literal(factor)
                    )
                )
            row = conn.execute(
                sql.SQL("SELECT greatest({}, 0) FROM {}.{}").format(
                    sql.SQL(", ").join(parts), sql.Identifier(schema), sql.Identifier(rel)
                )
            ).fetchone()
            largest = max(largest, int(row[0] or 0))
    kb = max(MIN_LOB_KB, math.ceil(largest / 1024) + 1)
    if kb > FULL_LOB_THRESHOLD_KB:
        return {"FullLobMode": True, "LobMaxSize": 0, "largest_bytes": largest}
    return {"FullLobMode": False, "LobMaxSize": kb, "largest_bytes": largest}
