"""Live progress of a schema restore: the phases done (audit log) and each table's copy (the target
server's pg_stat_progress_copy and statistics), with an ETA from the live schemas' catalog estimates."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import psycopg

from restore_assets.core.mover.model import CopiedTotals
from restore_assets.core.schema_restore.services import PHASES

ESTIMATES = """
SELECT c.relname, greatest(c.reltuples, 0)::bigint, pg_catalog.pg_table_size(c.oid)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""

# rows committed into each table of the target schemas, plus the rows of COPYs still running
COPIED = """
SELECT n.nspname, c.relname,
       greatest(pg_catalog.pg_stat_get_tuples_inserted(c.oid), c.reltuples::bigint)
         + coalesce(p.tuples_processed, 0),
       CASE WHEN p.relid IS NULL THEN pg_catalog.pg_table_size(c.oid)
            ELSE p.bytes_processed END,
       p.relid IS NOT NULL
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_progress_copy p ON p.relid = c.oid AND p.command = 'COPY FROM'
WHERE n.nspname = ANY(%s) AND c.relkind = 'r'
"""


@dataclass
class TableProgress:
    """One table's copy: rows and bytes so far against the live table's catalog estimate."""

    schema: str
    table: str
    rows: int
    bytes: int
    estimated_rows: int
    copying: bool


@dataclass
class CopyProgress(CopiedTotals):
    """The copy of some schemas at one moment, with an ETA when a rate is known."""

    tables: list[TableProgress] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def estimated_rows(self) -> int:
        """Rows the live schemas hold by their catalog estimates."""
        return sum(max(t.estimated_rows, t.rows) for t in self.tables)

    def eta(self) -> float | None:
        """Seconds left at the rate so far; None before any row has moved."""
        rows = self.total_rows
        if rows <= 0 or self.seconds <= 0:
            return None
        return max(0.0, (self.estimated_rows - rows) / (rows / self.seconds))

    def summary(self) -> str:
        """One line: rows of estimated rows, bytes, ETA."""
        rows, estimated = self.total_rows, self.estimated_rows
        pct = f" ({100 * rows / estimated:.0f}%)" if estimated else ""
        eta = self.eta()
        left = f", ETA {eta:.0f}s" if eta is not None else ""
        return (
            f"{rows:,}/{estimated:,} rows{pct}, {_size(self.total_bytes)}"
            f" in {self.seconds:.0f}s{left}"
        )


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


class CopyWatcher:
    """Samples the copy of live schema -> restored schema pairs on the target database."""

    def __init__(self, dsn: str, targets: dict[str, str]) -> None:
        self.dsn = dsn
        self.targets = dict(targets)
        self.started = time.monotonic()
        self._estimates: dict[tuple[str, str], int] | None = None

    def _estimate(self, conn: psycopg.Connection) -> dict[tuple[str, str], int]:
        if self._estimates is None:
            self._estimates = {}
            for live, target in self.targets.items():
                for table, rows, _size_bytes in conn.execute(ESTIMATES, (live,)):
                    self._estimates[(target, table)] = int(rows)
        return self._estimates

    def sample(self) -> CopyProgress:
        """The copy's progress now (tables not created yet count as not started)."""
        with psycopg.connect(self.dsn, connect_timeout=5, autocommit=True) as conn:
            estimates = self._estimate(conn)
            rows = conn.execute(COPIED, (list(self.targets.values()),)).fetchall()
        seen = {(s, t): (int(r), int(b), bool(c)) for s, t, r, b, c in rows}
        tables = [
            TableProgress(
                schema,
                table,
                *seen.get((schema, table), (0, 0, False))[:2],
                est,
                seen.get((schema, table), (0, 0, False))[2],
            )
            for (schema, table), est in sorted(estimates.items())
        ]
        return CopyProgress(tables, round(time.monotonic() - self.started, 1))


def ticker(
    every: float, sample: Callable[[], Any], emit: Callable[[Any], None]
) -> Callable[[], None]:
    """Call emit(sample()) every `every` seconds in a daemon thread; returns the stop function."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                emit(sample())
            except Exception:  # noqa: BLE001, S112 - progress is best effort, never fails a restore
                continue

    thread = threading.Thread(target=loop, name="progress", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(timeout=every + 5)

    return halt


def phase_lines(record: dict[str, Any] | None) -> list[str]:
    """One line per phase of a restore's audit record: done (seconds), failed, or running."""
    if record is None:
        return ["validate: running"]
    done = {p["phase"].split(":")[0]: p for p in record.get("phases") or []}
    # the record exists once the request passed validation (a refusal is recorded `rejected`)
    rejected = record.get("status") == "rejected"
    done.setdefault("validate", {"outcome": "rejected" if rejected else "succeeded"})
    lines: list[str] = []
    for phase in PHASES:
        if phase in done:
            p = done[phase]
            seconds = (p.get("metadata") or {}).get("seconds")
            took = f" in {seconds:.1f}s" if isinstance(seconds, int | float) else ""
            lines.append(f"{phase}: {p['outcome']}{took}")
        elif record.get("status") == "running":
            lines.append(f"{phase}: running")
            break
    return lines


class LiveProgress:
    """Renders a restore's progress on a stream: redrawn in place on a TTY, plain lines otherwise."""

    def __init__(
        self,
        stream: TextIO,
        record: Callable[[], dict[str, Any] | None],
        watcher: Callable[[], CopyWatcher | None],
        every: float = 1.0,
    ) -> None:
        self.stream = stream
        self.record = record
        self.watcher = watcher
        self.tty = stream.isatty()
        self.every = every if self.tty else max(every, 5.0)
        self._drawn = 0
        self._last_plain: list[str] = []
        self._stop: Callable[[], None] | None = None

    def lines(self) -> list[str]:
        """The current progress lines: phases, then the copy per table while it runs."""
        rec = self.record()
        out = phase_lines(rec)
        watcher = self.watcher() if rec and rec.get("status") == "running" else None
        if watcher is not None and out and out[-1].startswith(("copy", "pre", "post")):
            progress = watcher.sample()
            if progress.total_rows:
                out.append(f"  copy: {progress.summary()}")
                for t in progress.tables:
                    state = "copying" if t.copying else ("done" if t.rows else "waiting")
                    out.append(
                        f"    {t.schema}.{t.table}: {t.rows:,}/{t.estimated_rows:,} rows,"
                        f" {_size(t.bytes)} {state}"
                    )
        return out

    def draw(self, lines: list[str]) -> None:
        """Write the lines: in place on a TTY; on other streams only what changed, once."""
        if self.tty:
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            body = "".join(f"\x1b[2K{line}\n" for line in lines)
            self.stream.write(up + body + "\x1b[J")
            self._drawn = len(lines)
        else:
            phases = [ln for ln in lines if not ln.startswith(" ")]
            new = [ln for ln in phases if ln not in self._last_plain]
            copy = [ln for ln in lines if ln.startswith("  copy:")]
            for line in new + copy:
                self.stream.write(line + "\n")
            self._last_plain = phases
        self.stream.flush()

    def __enter__(self) -> LiveProgress:
        self._stop = ticker(self.every, self.lines, self.draw)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._stop()
        try:
            self.draw(phase_lines(self.record()))
        except Exception:  # noqa: BLE001 - the outcome is printed by the caller anyway
            pass
