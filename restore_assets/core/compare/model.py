"""Typed results of a comparison between a restored schema and its live schema."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from restore_assets.core.errors import RestoreError

SAMPLE_KINDS = ("only_in_restored", "only_in_live", "changed")


class CompareError(RestoreError):
    """The comparison (or a copy-back) could not run, or refused to."""


class CopyBackRefused(CompareError):
    """A copy-back was refused: the live table no longer matches the restored one."""


@dataclass
class TableComparison:
    """Row-level differences of one table present on both sides."""

    table: str
    rows_restored: int
    rows_live: int
    only_in_restored: int
    only_in_live: int
    changed: int
    changed_columns: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in SAMPLE_KINDS})
    has_primary_key: bool = True
    key_columns: list[str] = field(default_factory=list)
    compared_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # rows of the sample keys

    @property
    def differs(self) -> bool:
        """True when any row is only on one side or changed."""
        return bool(self.only_in_restored or self.only_in_live or self.changed)

    def to_dict(self) -> dict[str, Any]:
        """The table's entry of the JSON report."""
        out = asdict(self)
        del out["table"]  # the report's key
        out["samples"] = {k: list(self.samples.get(k, [])) for k in SAMPLE_KINDS}
        out["seconds"] = round(self.seconds, 3)
        return out


@dataclass
class ObjectDrift:
    """Objects of one kind (constraints, indexes, ...) that differ between the two schemas."""

    only_in_restored: list[dict[str, Any]] = field(default_factory=list)
    only_in_live: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.only_in_restored) + len(self.only_in_live) + len(self.changed)

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """JSON form: side -> items."""
        return {
            "only_in_restored": list(self.only_in_restored),
            "only_in_live": list(self.only_in_live),
            "changed": list(self.changed),
        }


@dataclass
class SchemaDrift:
    """Structural differences: tables, columns, constraints, indexes, policies, triggers, RLS."""

    tables_only_in_restored: list[str] = field(default_factory=list)
    tables_only_in_live: list[str] = field(default_factory=list)
    columns: ObjectDrift = field(default_factory=ObjectDrift)
    constraints: ObjectDrift = field(default_factory=ObjectDrift)
    indexes: ObjectDrift = field(default_factory=ObjectDrift)
    policies: ObjectDrift = field(default_factory=ObjectDrift)
    triggers: ObjectDrift = field(default_factory=ObjectDrift)
    row_security: ObjectDrift = field(default_factory=ObjectDrift)

    @property
    def count(self) -> int:
        """Number of drift items over all kinds."""
        return (
            len(self.tables_only_in_restored)
            + len(self.tables_only_in_live)
            + len(self.columns)
            + len(self.constraints)
            + len(self.indexes)
            + len(self.policies)
            + len(self.triggers)
            + len(self.row_security)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form: kind -> side -> items."""
        return {
            "tables": {
                "only_in_restored": list(self.tables_only_in_restored),
                "only_in_live": list(self.tables_only_in_live),
            },
            "columns": self.columns.to_dict(),
            "constraints": self.constraints.to_dict(),
            "indexes": self.indexes.to_dict(),
            "policies": self.policies.to_dict(),
            "triggers": self.triggers.to_dict(),
            "row_security": self.row_security.to_dict(),
        }


@dataclass
class SequenceState:
    """One side of a sequence: its position and the largest key it has fed."""

    last_value: int | None
    is_called: bool
    increment: int
    columns: list[str]  # "table.column" using the sequence (identity, serial, default)
    max_key: int | None

    @property
    def next_value(self) -> int | None:
        """The value nextval() would return."""
        if self.last_value is None:
            return None
        return self.last_value + self.increment if self.is_called else self.last_value

    @property
    def ok(self) -> bool | None:
        """False when nextval() would hand out a key already in use (None: cannot tell)."""
        if self.max_key is None:
            return True
        nxt = self.next_value
        if nxt is None or self.increment < 0:
            return None
        return nxt > self.max_key


@dataclass
class SequenceCheck:
    """A sequence on both sides (either may be missing)."""

    name: str
    restored: SequenceState | None
    live: SequenceState | None

    @property
    def ok(self) -> bool | None:
        """False when either side would collide with existing keys."""
        states = [s.ok for s in (self.restored, self.live) if s is not None]
        if any(s is False for s in states):
            return False
        if any(s is None for s in states):
            return None
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON form, flat per side."""
        out: dict[str, Any] = {}
        for side, st in (("restored", self.restored), ("live", self.live)):
            out[f"{side}_present"] = st is not None
            out[f"{side}_last_value"] = st.last_value if st else None
            out[f"{side}_is_called"] = st.is_called if st else None
            out[f"{side}_columns"] = list(st.columns) if st else []
            out[f"{side}_max_key"] = st.max_key if st else None
            out[f"{side}_ok"] = st.ok if st else None
        out["ok"] = self.ok
        return out


@dataclass
class ComparisonResult:
    """Everything a comparison found, with its JSON rendering."""

    database: str
    schema: str  # live schema
    restored: str  # restored schema
    generated_at: str
    tables: dict[str, TableComparison]
    drift: SchemaDrift
    sequences: dict[str, SequenceCheck]
    seconds: float = 0.0

    @property
    def summary(self) -> dict[str, Any]:
        """Headline numbers over all tables."""
        tables = self.tables.values()
        return {
            "tables_compared": len(self.tables),
            "tables_with_differences": sum(1 for t in tables if t.differs),
            "rows_only_in_restored": sum(t.only_in_restored for t in tables),
            "rows_only_in_live": sum(t.only_in_live for t in tables),
            "rows_changed": sum(t.changed for t in tables),
            "tables_only_in_restored": len(self.drift.tables_only_in_restored),
            "tables_only_in_live": len(self.drift.tables_only_in_live),
            "drift_items": self.drift.count,
            "sequences_behind": sum(1 for s in self.sequences.values() if s.ok is False),
            "seconds": round(self.seconds, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON report as a dictionary."""
        return {
            "database": self.database,
            "schema": self.schema,
            "restored": self.restored,
            "generated_at": self.generated_at,
            "tables": {name: t.to_dict() for name, t in sorted(self.tables.items())},
            "drift": self.drift.to_dict(),
            "sequences": {name: s.to_dict() for name, s in sorted(self.sequences.items())},
            "summary": self.summary,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON report."""
        return json.dumps(self.to_dict(), indent=indent, default=str, sort_keys=False)
