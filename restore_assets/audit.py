"""The audit log: one record per restore with inputs, resources, phases, status and cause."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

STATUSES = ("running", "succeeded", "failed", "rejected", "cleaned")


def new_restore_id(prefix: str = "r") -> str:
    """A unique, sortable restore id such as r-20260102T030405Z-1a2b3c."""
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class AuditLog(Protocol):
    """Where every restore, its resources and its phases are recorded (SQLite locally, DynamoDB on AWS)."""

    def open(self, kind: str, inputs: dict[str, Any], restore_id: str | None = None) -> str:
        """Create the record of a new run and return its restore id (never reuses an id)."""
        ...

    def reject(
        self, kind: str, inputs: dict[str, Any], cause: str, restore_id: str | None = None
    ) -> str:
        """Record a request refused before anything was created."""
        ...

    def resource(
        self, restore_id: str, kind: str, identifier: str, details: dict[str, Any]
    ) -> None:
        """Record a resource before it is relied on, so cleanup can find it after a crash."""
        ...

    def resource_deleted(self, restore_id: str, kind: str, identifier: str) -> None:
        """Mark a recorded resource as removed."""
        ...

    def resources(self, restore_id: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The resources of a run that cleanup must remove (newest first)."""
        ...

    def phase(
        self,
        restore_id: str,
        phase: str,
        outcome: str,
        *,
        started_at: str,
        error: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Record one phase's start, end, outcome and metadata."""
        ...

    def update(self, restore_id: str, **fields: Any) -> None:
        """Set fields of the run record (restore_point, result, ...)."""
        ...

    def close(self, restore_id: str, status: str, cause: str | None = None) -> None:
        """Set the final status, the cause of a failure and the total duration."""
        ...

    def get(self, restore_id: str) -> dict[str, Any]:
        """The whole record of one run, with its phases and resources."""
        ...

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        ...


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


class SqliteAuditLog:
    """The local audit log: a SQLite file (by default `<fleet root>/audit.sqlite`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._db() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _db(self):
        with self._lock:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.row_factory = sqlite3.Row
            try:
                yield conn
                conn.commit()
            finally:
                conn.close()

    def open(self, kind: str, inputs: dict[str, Any], restore_id: str | None = None) -> str:
        """Create the record of a new run and return its restore id (never reuses an id)."""
        rid = restore_id or new_restore_id()
        with self._db() as db:
            try:
                db.execute(
                    "INSERT INTO restores (restore_id, kind, status, inputs, created_at) VALUES (?,?,?,?,?)",
                    (rid, kind, "running", json.dumps(inputs, default=str), _now()),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"restore id {rid} already exists in the audit log") from None
        return rid

    def reject(
        self, kind: str, inputs: dict[str, Any], cause: str, restore_id: str | None = None
    ) -> str:
        """Record a request refused before anything was created."""
        rid = restore_id or new_restore_id()
        now = _now()
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO restores (restore_id, kind, status, inputs, created_at, finished_at,"
                " duration_s, cause) VALUES (?,?,?,?,?,?,?,?)",
                (rid, kind, "rejected", json.dumps(inputs, default=str), now, now, 0.0, cause),
            )
        return rid

    def resource(
        self, restore_id: str, kind: str, identifier: str, details: dict[str, Any]
    ) -> None:
        """Record a resource before it is relied on, so cleanup can find it after a crash."""
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO resources (restore_id, kind, identifier, details, created_at)"
                " VALUES (?,?,?,?,?)",
                (restore_id, kind, identifier, json.dumps(details, default=str), _now()),
            )

    def resource_deleted(self, restore_id: str, kind: str, identifier: str) -> None:
        """Mark a recorded resource as removed."""
        with self._db() as db:
            db.execute(
                "UPDATE resources SET deleted_at = ? WHERE restore_id = ? AND kind = ? AND identifier = ?",
                (_now(), restore_id, kind, identifier),
            )

    def resources(self, restore_id: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The resources of a run that cleanup must remove (newest first)."""
        q = "SELECT * FROM resources WHERE restore_id = ?"
        if not include_deleted:
            q += " AND deleted_at IS NULL"
        with self._db() as db:
            rows = db.execute(q + " ORDER BY created_at DESC, rowid DESC", (restore_id,)).fetchall()
        return [{**dict(r), "details": json.loads(r["details"])} for r in rows]

    def phase(
        self,
        restore_id: str,
        phase: str,
        outcome: str,
        *,
        started_at: str,
        error: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Record one phase's start, end, outcome and metadata."""
        with self._db() as db:
            db.execute(
                "INSERT INTO phases (restore_id, phase, started_at, ended_at, outcome, error, metadata)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    restore_id,
                    phase,
                    started_at,
                    _now(),
                    outcome,
                    error,
                    json.dumps(metadata or {}, default=str),
                ),
            )

    def update(self, restore_id: str, **fields: Any) -> None:
        """Set fields of the run record (restore_point, result, ...)."""
        allowed = {"restore_point", "result", "status", "cause"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update audit fields {sorted(bad)}")
        with self._db() as db:
            for key, value in fields.items():
                if isinstance(value, dict | list):
                    value = json.dumps(value, default=str)
                db.execute(
                    f"UPDATE restores SET {key} = ? WHERE restore_id = ?", (value, restore_id)
                )  # noqa: S608 - key from allow-list

    def close(self, restore_id: str, status: str, cause: str | None = None) -> None:
        """Set the final status, the cause of a failure and the total duration."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = datetime.now(UTC)
        with self._db() as db:
            row = db.execute(
                "SELECT created_at FROM restores WHERE restore_id = ?", (restore_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"unknown restore id {restore_id}")
            duration = (now - datetime.fromisoformat(row["created_at"])).total_seconds()
            db.execute(
                "UPDATE restores SET status = ?, cause = COALESCE(?, cause), finished_at = ?, duration_s = ?"
                " WHERE restore_id = ?",
                (status, cause, now.isoformat(), duration, restore_id),
            )

    def get(self, restore_id: str) -> dict[str, Any]:
        """The whole record of one run, with its phases and resources."""
        with self._db() as db:
            row = db.execute(
                "SELECT * FROM restores WHERE restore_id = ?", (restore_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"unknown restore id {restore_id}")
            phases = db.execute(
                "SELECT * FROM phases WHERE restore_id = ? ORDER BY rowid", (restore_id,)
            ).fetchall()
        rec = dict(row)
        rec["inputs"] = json.loads(rec["inputs"])
        rec["result"] = json.loads(rec["result"]) if rec.get("result") else None
        rec["phases"] = [{**dict(p), "metadata": json.loads(p["metadata"] or "{}")} for p in phases]
        rec["resources"] = self.resources(restore_id, include_deleted=True)
        return rec

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT restore_id, kind, status, created_at, finished_at, duration_s, cause, restore_point, inputs"
                " FROM restores ORDER BY created_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [{**dict(r), "inputs": json.loads(r["inputs"])} for r in rows]
