"""The local audit log: a SQLite file (by default `<fleet root>/audit.sqlite`), four tables.

Only storage lives here; what every audit log does alike is core/audit.AuditLog's.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from restore_assets.core import audit
from restore_assets.core.audit import AuditLog, ClaimConflict, now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS restores (
  restore_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  inputs TEXT NOT NULL,
  created_at TEXT NOT NULL,
  finished_at TEXT,
  duration_s REAL,
  cause TEXT,
  restore_point TEXT,
  result TEXT
);
CREATE TABLE IF NOT EXISTS resources (
  restore_id TEXT NOT NULL REFERENCES restores(restore_id),
  kind TEXT NOT NULL,
  identifier TEXT NOT NULL,
  details TEXT NOT NULL,
  created_at TEXT NOT NULL,
  deleted_at TEXT,
  PRIMARY KEY (restore_id, kind, identifier)
);
CREATE TABLE IF NOT EXISTS claims (
  target TEXT PRIMARY KEY,
  restore_id TEXT NOT NULL REFERENCES restores(restore_id),
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS phases (
  restore_id TEXT NOT NULL REFERENCES restores(restore_id),
  phase TEXT NOT NULL,
  started_at TEXT NOT NULL,
  ended_at TEXT NOT NULL,
  outcome TEXT NOT NULL,
  error TEXT,
  metadata TEXT
);
"""
# the columns a new record may set (an allow-list: column names are spliced into the INSERT)
INSERT_COLUMNS = (
    "restore_id",
    "kind",
    "status",
    "inputs",
    "created_at",
    "finished_at",
    "duration_s",
    "cause",
    "owner",
)
SUMMARY = (
    "restore_id, kind, status, created_at, finished_at, duration_s, cause, restore_point, inputs"
)


def _row(db: sqlite3.Connection, columns: str, restore_id: str) -> sqlite3.Row:
    """Columns (an allow-listed literal) of one run's row; KeyError when there is none."""
    row = db.execute(
        f"SELECT {columns} FROM restores WHERE restore_id = ?",  # noqa: S608
        (restore_id,),
    ).fetchone()
    if row is None:
        raise audit.unknown_record(restore_id)
    return row


class SqliteAuditLog(AuditLog):
    """The AuditLog protocol over one SQLite file, created owner-only (0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # created 0600 before SQLite opens it (its journals take the database file's mode)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._lock = threading.Lock()
        with self._db() as db:
            db.executescript(SCHEMA)
            columns = {r["name"] for r in db.execute("PRAGMA table_info(restores)")}
            if "owner" not in columns:  # a log written before records carried their owner
                try:
                    db.execute("ALTER TABLE restores ADD COLUMN owner TEXT")
                except sqlite3.OperationalError:  # another process added it meanwhile
                    pass

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.row_factory = sqlite3.Row
            try:
                yield conn
                conn.commit()
            finally:
                conn.close()

    # ------------------------------------------------------------ writes
    def _insert(self, record: dict[str, Any], claims: tuple[str, ...]) -> None:
        columns = [c for c in INSERT_COLUMNS if c in record]
        rid = record["restore_id"]
        with self._db() as db:  # one transaction: the record and its claims, or nothing
            try:
                db.execute(
                    f"INSERT INTO restores ({', '.join(columns)})"  # noqa: S608 - allow-list
                    f" VALUES ({', '.join('?' for _ in columns)})",
                    [record[c] for c in columns],
                )
            except sqlite3.IntegrityError:
                raise audit.exists_conflict(rid) from None
            for target in claims:
                try:
                    db.execute(
                        "INSERT INTO claims (target, restore_id, created_at) VALUES (?,?,?)",
                        (target, rid, record["created_at"]),
                    )
                except sqlite3.IntegrityError:
                    holder = db.execute(
                        "SELECT restore_id FROM claims WHERE target = ?", (target,)
                    ).fetchone()
                    raise ClaimConflict(target, holder[0] if holder else "?") from None

    def _set(self, restore_id: str, fields: dict[str, Any]) -> None:
        with self._db() as db:
            for key, value in fields.items():  # keys: UPDATABLE only (checked by update)
                db.execute(
                    f"UPDATE restores SET {key} = ? WHERE restore_id = ?",  # noqa: S608
                    (value, restore_id),
                )

    def _finish(self, restore_id: str, status: str, cause: str | None) -> None:
        now = datetime.now(UTC)
        with self._db() as db:
            row = _row(db, "created_at, status", restore_id)
            done = db.execute(
                "UPDATE restores SET status = ?, cause = COALESCE(?, cause), finished_at = ?,"
                " duration_s = ? WHERE restore_id = ? AND status = 'running'",
                (
                    status,
                    cause,
                    now.isoformat(),
                    audit.seconds_since(row["created_at"], now),
                    restore_id,
                ),
            )
            if done.rowcount != 1:
                raise audit.closed_conflict(restore_id, row["status"])
            db.execute("DELETE FROM claims WHERE restore_id = ?", (restore_id,))

    def resource(
        self, restore_id: str, kind: str, identifier: str, details: dict[str, Any]
    ) -> None:
        """Record a resource before it is relied on, so cleanup can find it after a crash."""
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO resources (restore_id, kind, identifier, details, created_at)"
                " VALUES (?,?,?,?,?)",
                (restore_id, kind, identifier, self.encode(details), now_iso()),
            )

    def resource_deleted(self, restore_id: str, kind: str, identifier: str) -> None:
        """Mark a recorded resource as removed."""
        with self._db() as db:
            db.execute(
                "UPDATE resources SET deleted_at = ? WHERE restore_id = ? AND kind = ? AND identifier = ?",
                (now_iso(), restore_id, kind, identifier),
            )

    def _add_phase(self, restore_id: str, entry: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO phases (restore_id, phase, started_at, ended_at, outcome, error, metadata)"
                " VALUES (:restore_id, :phase, :started_at, :ended_at, :outcome, :error, :metadata)",
                {"restore_id": restore_id, **entry},
            )

    # ------------------------------------------------------------ reads
    def claims(self, restore_id: str) -> list[str]:
        """The targets a running record holds."""
        with self._db() as db:
            rows = db.execute(
                "SELECT target FROM claims WHERE restore_id = ? ORDER BY target", (restore_id,)
            ).fetchall()
        return [r[0] for r in rows]

    def resources(self, restore_id: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The resources of a run that cleanup must remove (newest first)."""
        q = "SELECT * FROM resources WHERE restore_id = ?"
        if not include_deleted:
            q += " AND deleted_at IS NULL"
        with self._db() as db:
            rows = db.execute(q + " ORDER BY created_at DESC, rowid DESC", (restore_id,)).fetchall()
        return [{**dict(r), "details": json.loads(r["details"])} for r in rows]

    def _record(self, restore_id: str) -> dict[str, Any]:
        with self._db() as db:
            row = _row(db, "*", restore_id)
            phases = db.execute(
                "SELECT * FROM phases WHERE restore_id = ? ORDER BY rowid", (restore_id,)
            ).fetchall()
        return {**dict(row), "phases": [dict(p) for p in phases]}

    def _recent(self, limit: int) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {SUMMARY} FROM restores ORDER BY created_at DESC LIMIT ?",  # noqa: S608
                (limit,),
            ).fetchall()
        return [dict(r) for r in rows]
