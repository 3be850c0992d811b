"""The rows behind a comparison's sample keys: deleted and added rows in full, changed rows side by side.

Read in the comparison's own snapshot, for the first sample keys of each kind only (the counts stay
the comparison's). Values are rendered as PostgreSQL prints them (`::text`) and cut in SQL past a
width, with a marker saying how much was left out, so a large value never leaves the server whole.
"""

from __future__ import annotations

import html
import json
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core.compare.catalog import Table
from restore_assets.core.compare.model import TableComparison
from restore_assets.core.compare.rows import RowTask, _from

DEFAULT_WIDTH = 200


def _cut(expr: sql.Composable, width: int) -> sql.Composable:
    text = sql.SQL("({})::text").format(expr)
    return sql.SQL(
        "CASE WHEN pg_catalog.length({t}) > {w} THEN pg_catalog.left({t}, {w}) || '… ['"
        " || (pg_catalog.length({t}) - {w})::text || ' more characters]' ELSE {t} END"
    ).format(t=text, w=sql.Literal(width))


def _object(alias: str, columns: list[str], width: int) -> sql.Composable:
    return sql.SQL("pg_catalog.jsonb_object(ARRAY[{}]::text[], ARRAY[{}]::text[])").format(
        sql.SQL(", ").join(sql.Literal(c) for c in columns),
        sql.SQL(", ").join(_cut(sql.Identifier(alias, c), width) for c in columns),
    )


def _keys(alias: str, table: Table, key: list[str], keys: list[dict[str, Any]]) -> sql.Composable:
    types = []
    for k in key:
        col = table.column(k)
        assert col is not None
        types.append(
            sql.SQL("{} {}").format(
                sql.Identifier(k), sql.Identifier(col.base_type_schema, col.base_type_name)
            )
        )
    return sql.SQL(
        "EXISTS (SELECT 1 FROM pg_catalog.jsonb_to_recordset({}::pg_catalog.jsonb) AS k({}) WHERE {})"
    ).format(
        sql.Literal(json.dumps(keys, default=str)),
        sql.SQL(", ").join(types),
        sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier(alias, k), sql.Identifier("k", k)) for k in key
        ),
    )


def cut_value(value: Any, width: int) -> Any:
    """The value as text, cut past width characters with a marker saying how many were left out."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= width:
        return text
    return text[:width] + f"… [{len(text) - width} more characters]"


def table_details(
    conn: psycopg.Connection, task: RowTask, tc: TableComparison, width: int = DEFAULT_WIDTH
) -> dict[str, Any]:
    """Deleted and added rows in full, changed rows (restored | live) for the table's sample keys."""
    out: dict[str, Any] = {
        "width": width,
        "columns": {  # in table order (a jsonb object orders its keys otherwise)
            "only_in_restored": [c.name for c in task.restored.columns],
            "only_in_live": [c.name for c in task.live.columns],
            "changed": list(task.columns),
        },
        "only_in_restored": [],
        "only_in_live": [],
        "changed": [],
    }
    if task.key is None or task.text_key:
        # multiset samples are whole rows already (keys of another type: shown as sampled)
        for kind in ("only_in_restored", "only_in_live"):
            out[kind] = [
                {c: cut_value(v, width) for c, v in r.items()} if isinstance(r, dict) else r
                for r in tc.samples.get(kind, [])
            ]
        return out
    key = task.key
    order = sql.SQL(", ").join(sql.Identifier("x", k) for k in key)
    for kind, schema, table in (
        ("only_in_restored", task.restored_schema, task.restored),
        ("only_in_live", task.live_schema, task.live),
    ):
        keys = tc.samples.get(kind) or []
        if not keys:
            continue
        stmt = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
            _object("x", [c.name for c in table.columns], width),
            _from(schema, table, "x"),
            _keys("x", table, key, keys),
            order,
        )
        out[kind] = [r[0] for r in conn.execute(stmt)]
    keys = tc.samples.get("changed") or []
    if keys:
        cols = task.columns
        stmt = sql.SQL(
            "SELECT {}, {}, ARRAY[{}] FROM {} JOIN {} ON {} WHERE {} ORDER BY {}"
        ).format(
            _object("x", cols, width),
            _object("y", cols, width),
            sql.SQL(", ").join(
                sql.SQL("({})::text IS DISTINCT FROM ({})::text").format(
                    sql.Identifier("x", c), sql.Identifier("y", c)
                )
                for c in cols
            ),
            _from(task.restored_schema, task.restored, "x"),
            _from(task.live_schema, task.live, "y"),
            sql.SQL(" AND ").join(
                sql.SQL("{} = {}").format(sql.Identifier("x", k), sql.Identifier("y", k))
                for k in key
            ),
            _keys("x", task.restored, key, keys),
            order,
        )
        for restored, live, flags in conn.execute(stmt):
            out["changed"].append(
                {
                    "key": {k: restored[k] for k in key},
                    "restored": restored,
                    "live": live,
                    "changed": [c for c, f in zip(cols, flags, strict=True) if f],
                }
            )
    return out


DETAILS_STYLE = (
    "<style>.ra-rows td, .ra-rows th {padding: 2px 8px; text-align: left; vertical-align: top;"
    " font-family: monospace; white-space: pre-wrap} .ra-rows td.ra-diff {background: #fde2a7;"
    " font-weight: bold} .ra-rows td.ra-side {color: #666}</style>"
)


def _table(headers: list[str], rows: list[list[tuple[str, str]]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{cls}">{html.escape(text)}</td>'
            if cls
            else f"<td>{html.escape(text)}</td>"
            for text, cls in row
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="ra-rows"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def details_html(table: str, entry: dict[str, Any]) -> str:
    """One table's rows as HTML: changed rows side by side (changed cells marked), others in full."""
    details = entry.get("details") or {}
    parts: list[str] = []
    titles = {
        "changed": "changed since (restored | live)",
        "only_in_restored": "deleted since (only in the restored copy)",
        "only_in_live": "added since (only in live)",
    }

    def order(kind: str, row: dict[str, Any]) -> list[str]:
        listed = [c for c in (details.get("columns") or {}).get(kind) or [] if c in row]
        return listed + [c for c in row if c not in listed]

    for kind in ("changed", "only_in_restored", "only_in_live"):
        rows = details.get(kind) or []
        total = int(entry.get(kind) or 0)
        if not total:
            continue
        shown = f"first {len(rows)} of {total}" if len(rows) < total else f"all {total}"
        parts.append(f"<h4>{html.escape(table)}: {titles[kind]} — {shown}</h4>")
        if not rows:
            continue
        if kind == "changed":
            # the key, then only the columns that differ in the rows shown
            key = [c for c in entry.get("key_columns") or [] if c in rows[0]["restored"]]
            differing = {c for r in rows for c in r["changed"]}
            cols = key + [
                c for c in order(kind, rows[0]["restored"]) if c in differing and c not in key
            ]
            same = len(rows[0]["restored"]) - len(cols)
            if same:
                parts.append(
                    f"<p>{same} column(s) equal on both sides in these rows: not shown</p>"
                )
            out = []
            for r in rows:
                changed = set(r["changed"])
                for side in ("restored", "live"):
                    out.append(
                        [(side, "ra-side")]
                        + [(_text(r[side].get(c)), "ra-diff" if c in changed else "") for c in cols]
                    )
            parts.append(_table(["", *cols], out))
        else:
            cols = order(kind, rows[0]) if isinstance(rows[0], dict) else ["row"]
            parts.append(
                _table(
                    cols,
                    [
                        [(_text(r.get(c)), "") for c in cols]
                        if isinstance(r, dict)
                        else [(_text(r), "")]
                        for r in rows
                    ],
                )
            )
    return "".join(parts)
