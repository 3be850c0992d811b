"""Building blocks the report and runbook notebooks display: tables, charts and summaries (no Dagster)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any


def html_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], css_class: str = "ra-table"
) -> str:
    """An HTML table with escaped cells."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def table_has_differences(t: dict[str, Any]) -> bool:
    """True when a table's comparison found rows only on one side or changed rows."""
    return bool(t.get("only_in_restored") or t.get("only_in_live") or t.get("changed"))


def summary_rows(comparison: dict[str, Any]) -> list[tuple[str, Any]]:
    """The headline of a comparison as (label, value) rows."""
    tables = comparison.get("tables", {})
    differing = sorted(name for name, t in tables.items() if table_has_differences(t))
    return [
        ("database", comparison.get("database")),
        ("live schema", comparison.get("schema")),
        ("restored schema", comparison.get("restored")),
        ("compared at", comparison.get("generated_at")),
        ("tables compared", len(tables)),
        ("tables with differences", len(differing)),
        ("which", ", ".join(differing) or "none"),
        (
            "rows only in restored (deleted since)",
            sum(t.get("only_in_restored", 0) for t in tables.values()),
        ),
        ("rows only in live (added since)", sum(t.get("only_in_live", 0) for t in tables.values())),
        ("rows changed", sum(t.get("changed", 0) for t in tables.values())),
    ]


def per_table_rows(comparison: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One row per table: counts on each side, differences and changed columns."""
    out = []
    for name, t in sorted(comparison.get("tables", {}).items()):
        changed_cols = t.get("changed_columns") or {}
        out.append(
            (
                name,
                t.get("rows_restored"),
                t.get("rows_live"),
                t.get("only_in_restored"),
                t.get("only_in_live"),
                t.get("changed"),
                ", ".join(f"{c} ({n})" for c, n in changed_cols.items())
                if isinstance(changed_cols, dict)
                else changed_cols,
                "yes" if t.get("has_primary_key", True) else "no (multiset of row hashes)",
            )
        )
    return out


PER_TABLE_HEADERS = (
    "table",
    "rows restored",
    "rows live",
    "only in restored",
    "only in live",
    "changed",
    "changed columns",
    "primary key",
)


def difference_chart(comparison: dict[str, Any], ax: Any) -> None:
    """Horizontal bars per table: rows only-restored, only-live and changed."""
    names = sorted(comparison.get("tables", {}))
    tables = comparison.get("tables", {})
    kinds = (
        ("only_in_restored", "only in restored"),
        ("only_in_live", "only in live"),
        ("changed", "changed"),
    )
    height = 0.25
    for i, (key, label) in enumerate(kinds):
        ax.barh(
            [n + (i - 1) * height for n in range(len(names))],
            [tables[n].get(key, 0) for n in names],
            height,
            label=label,
        )
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_xlabel("rows")
    ax.legend()
    ax.set_title("Differences per table (restored vs live)")


def phase_timeline(phases: list[dict[str, Any]], ax: Any) -> None:
    """A Gantt chart of a restore's phases from the audit record."""
    if not phases:
        ax.text(0.5, 0.5, "no phase timings recorded", ha="center", va="center")
        ax.set_axis_off()
        return
    starts = [datetime.fromisoformat(p["started_at"]) for p in phases]
    ends = [datetime.fromisoformat(p["ended_at"]) for p in phases]
    t0 = min(starts)
    for i, (p, s, e) in enumerate(zip(phases, starts, ends, strict=True)):
        color = "tab:green" if p.get("outcome") == "succeeded" else "tab:red"
        ax.barh(i, max((e - s).total_seconds(), 0.01), left=(s - t0).total_seconds(), color=color)
    ax.set_yticks(range(len(phases)))
    ax.set_yticklabels([p["phase"] for p in phases])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the restore started")
    ax.set_title("Restore phases")


def drift_rows(comparison: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Schema drift flattened to (kind, side, items) rows."""
    rows = []
    for kind, value in sorted((comparison.get("drift") or {}).items()):
        if isinstance(value, dict):
            for side, items in sorted(value.items()):
                if items:
                    rows.append((kind, side, items))
        elif value:
            rows.append((kind, "", value))
    return rows


def sequence_rows(comparison: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Sequences: last value versus the max of the key it feeds, per side."""
    seqs = comparison.get("sequences") or {}
    rows = []
    items = seqs.items() if isinstance(seqs, dict) else ((s.get("name"), s) for s in seqs)
    for name, s in sorted(items, key=lambda kv: str(kv[0])):
        if isinstance(s, dict):
            rows.append(
                (
                    name,
                    *(
                        s.get(k)
                        for k in (
                            "restored_last_value",
                            "restored_max_key",
                            "live_last_value",
                            "live_max_key",
                            "ok",
                        )
                    ),
                )
            )
        else:
            rows.append((name, s, None, None, None, None))
    return rows


SEQUENCE_HEADERS = (
    "sequence",
    "restored last value",
    "restored max key",
    "live last value",
    "live max key",
    "ok",
)
