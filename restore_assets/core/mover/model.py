"""The mover's data: the builds it is given for each table (TablePost) and what it reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TableCopy:
    """What was copied for one table."""

    schema: str
    table: str
    target_schema: str
    rows: int
    bytes: int
    seconds: float
    format: str  # 'binary' | 'text'
    parts: int = 1  # block ranges copied in parallel
    post_statements: int = 0  # index/constraint builds run right after the copy
    post_seconds: float = 0.0  # their time plus VACUUM ANALYZE
    frozen: bool = False  # loaded with COPY FREEZE into the table truncated in its transaction


@dataclass
class TablePost:
    """The post builds of each table, run by the mover as soon as that table is copied."""

    statements: dict[str, list[str]]  # table name (in the target schema) -> statements
    prefix: list[str] = field(default_factory=list)  # session settings before each batch
    lock_timeout: str = "5s"
    vacuum: bool = True  # VACUUM (ANALYZE) each table after its builds


class CopiedTotals:
    """Sums over `tables`, each with `rows` and `bytes`: of a copy report or a progress sample."""

    tables: list[Any]

    @property
    def total_rows(self) -> int:
        """Rows copied over all tables."""
        return sum(t.rows for t in self.tables)

    @property
    def total_bytes(self) -> int:
        """COPY stream bytes moved over all tables."""
        return sum(t.bytes for t in self.tables)


@dataclass
class CopyReport(CopiedTotals):
    """The outcome of copying one schema."""

    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    post_applied: list[str] = field(default_factory=list)  # post statements the mover ran
    analyzed: list[str] = field(default_factory=list)  # tables it vacuumed and analyzed

    @property
    def table_count(self) -> int:
        """Number of tables copied."""
        return len(self.tables)

    def to_dict(self) -> dict:
        """A JSON-ready dictionary (for audit records and op metadata)."""
        return {
            "tables": [asdict(t) for t in self.tables],
            "seconds": self.seconds,
            "errors": list(self.errors),
            "post_applied": len(self.post_applied),
            "analyzed": len(self.analyzed),
            "total_rows": self.total_rows,
            "total_bytes": self.total_bytes,
            "table_count": self.table_count,
        }
