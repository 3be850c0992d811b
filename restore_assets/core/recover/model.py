"""Row recovery: the plan's model (options, per-table plan, per-schema plan, the recovery plan)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from restore_assets.core.compare.model import CompareError

ON_CONFLICT = ("skip", "overwrite", "fail")

Key = tuple[str, ...]


class RecoveryRefused(CompareError):
    """A recovery plan cannot be applied as asked (conflicts with `fail`, live moved, a cycle)."""


@dataclass
class ForeignKey:
    """A foreign key between two tables of the live schema."""

    name: str
    child: str
    parent: str
    deferrable: bool
    child_columns: list[str]
    parent_columns: list[str]


@dataclass
class Options:
    """What to recover: the operator's choice."""

    deleted: bool = False
    changed: bool = False
    columns: list[str] | None = None  # `col` or `table.col`; None: every column
    on_conflict: str = "fail"
    tables: list[str] | None = None  # None: every table present on both sides
    triggers: bool = True  # False: session_replication_role=replica while applying
    lock_timeout: str = "10s"
    statement_timeout: str = "5min"

    def check(self) -> None:
        """Refuse a choice that recovers nothing or names an unknown policy."""
        if not (self.deleted or self.changed):
            raise CompareError("choose what to recover: --deleted, --changed, or both")
        if self.on_conflict not in ON_CONFLICT:
            raise CompareError(
                f"--on-conflict must be one of {', '.join(ON_CONFLICT)}, got {self.on_conflict!r}"
            )
        if self.columns is not None and not self.changed:
            raise CompareError("--columns applies to --changed: add --changed")


@dataclass
class TablePlan:
    """What the plan does to one live table."""

    table: str
    key: list[str]
    key_types: list[list[str]]  # [schema, type] of each key column in the live table
    restored_key_types: list[list[str]]
    insert_columns: list[str]
    update_columns: list[str]  # set back by `updates` (the chosen changed columns)
    all_columns: list[str]  # live columns, for row hashes and undo copies
    overriding: bool
    inserts: list[list[str]] = field(default_factory=list)
    updates: list[list[str]] = field(default_factory=list)
    update_hashes: list[int] = field(default_factory=list)  # live row hash when planned
    overwrites: list[list[str]] = field(default_factory=list)  # inserts turned into updates
    reasons: list[dict[str, Any]] = field(default_factory=list)  # why rows were added
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    depends: list[list[Any]] = field(default_factory=list)  # [child key, parent table, parent key]

    def counts(self) -> dict[str, int]:
        """Per-table numbers of the plan."""
        return {
            "inserts": len(self.inserts),
            "updates": len(self.updates) + len(self.overwrites),
            "conflicts": len(self.conflicts),
            "added_by_foreign_keys": sum(r["count"] for r in self.reasons if r.get("fk")),
            "skipped": len(self.skipped),
        }


@dataclass
class SchemaPlan:
    """The plan of one live schema against its restored copy."""

    live_schema: str
    restored_schema: str
    undo_schema: str
    order: list[str]  # tables, parents first
    defer: list[str]  # deferrable foreign keys set DEFERRED (they close a cycle)
    tables: dict[str, TablePlan]
    notes: list[str] = field(default_factory=list)
    sequences: list[dict[str, Any]] = field(default_factory=list)  # {name, table, column, inc}


@dataclass
class RecoveryPlan:
    """A recovery plan over the schemas of one restore: reviewed, then applied as one transaction."""

    recovery_id: str
    restore_id: str
    database: str
    options: Options
    schemas: list[SchemaPlan]
    generated_at: str = ""
    refused: str | None = None
    sql: str = ""

    def summary(self) -> dict[str, Any]:
        """Per-table counts (schema.table: inserts, updates, conflicts, ...) and totals."""
        tables = {
            f"{s.live_schema}.{t}": s.tables[t].counts() for s in self.schemas for t in s.order
        }
        totals = {
            k: sum(c[k] for c in tables.values())
            for k in ("inserts", "updates", "conflicts", "added_by_foreign_keys", "skipped")
        }
        return {"tables": tables, "totals": totals, "refused": self.refused}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plan (with its SQL), its summary first."""
        return {"summary": self.summary(), **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecoveryPlan:
        """The plan back from its JSON form."""
        schemas = []
        for s in data["schemas"]:
            tables = {n: TablePlan(**t) for n, t in s["tables"].items()}
            schemas.append(SchemaPlan(**{**s, "tables": tables}))
        return cls(
            recovery_id=data["recovery_id"],
            restore_id=data["restore_id"],
            database=data["database"],
            options=Options(**data["options"]),
            schemas=schemas,
            generated_at=data.get("generated_at", ""),
            refused=data.get("refused"),
            sql=data.get("sql", ""),
        )
