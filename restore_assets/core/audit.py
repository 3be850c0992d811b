"""The audit log: one record per restore with inputs, resources, phases, status and cause."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sqlite3
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from restore_assets.core.errors import InvalidRequest, RestoreError

STATUSES = ("running", "succeeded", "failed", "rejected", "cleaned")
UPDATABLE = ("restore_point", "result", "cause")  # never the status: only close() sets it
RESTORE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RESTORE_ID_RULE = (
    "1 to 64 characters: letters, digits, '-' and '_', starting with a letter or digit"
)
# Dagster run statuses after which a run owns nothing any more
TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


class AuditConflict(RestoreError, ValueError):
    """An audit write refused because it would change a record it does not own (or the id exists)."""


class ClaimConflict(AuditConflict):
    """A target another restore holds: the request is refused before anything is created."""

    def __init__(self, target: str, holder: str) -> None:
        super().__init__(
            f"target schema {target} is being restored by restore {holder}: wait until it"
            f" finishes (see `restore-assets history --restore-id {holder}`) or choose another"
            " --suffix"
        )
        self.target, self.holder = target, holder


class NotOwner(RestoreError):
    """A cleanup or drop refused: the record's owner is still running, or cannot be proven gone."""


def check_restore_id(value: Any) -> str:
    """The restore id itself when it is safe to use as a name (never a path), else InvalidRequest."""
    if isinstance(value, str) and RESTORE_ID_RE.fullmatch(value):
        return value
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    raise InvalidRequest(f"restore id {shown} is not valid: use {RESTORE_ID_RULE}")


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """An opaque start stamp of a process (boot id + start ticks), None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its closing ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie has ended: only its exit status is left
        return "ended"
    return f"{_boot_id()}:{fields[19]}"


def process_owner(dagster_run_id: str | None = None) -> dict[str, Any]:
    """The owner of a record opened by this process: host, pid, process start; the Dagster run id."""
    pid = os.getpid()
    return {
        "dagster_run_id": dagster_run_id,
        "host": socket.gethostname(),
        "pid": pid,
        "started": process_start(pid),
    }


def describe_owner(owner: dict[str, Any] | None) -> str:
    """The owner of a record in words, for messages."""
    if not owner:
        return "an unknown owner (a record without owner)"
    where = f"process {owner.get('pid')} on host {owner.get('host')}"
    if owner.get("dagster_run_id"):
        return f"Dagster run {owner['dagster_run_id']} ({where})"
    return where


def owner_gone(owner: dict[str, Any] | None, run_status: str | None = None) -> tuple[bool, str]:
    """Whether the owner of a running record has finished or is provably dead, and why.

    run_status is the Dagster status of the owner's run when the caller's instance knows that run
    (the jobs layer looks it up); otherwise the owner process is checked: same host, and its pid
    gone or reused (another start time). Anything else is not proof.
    """
    who = describe_owner(owner)
    if not owner:
        return False, f"the record has no owner: {who}"
    if run_status is not None:
        if run_status in TERMINAL_RUN_STATUSES:
            return True, f"{who} has ended ({run_status})"
        return False, f"{who} is {run_status}"
    if owner.get("host") != socket.gethostname():
        return False, f"{who} runs on another host: it cannot be checked from here"
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False, f"{who}: no process id recorded"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True, f"{who} is gone"
    except PermissionError:
        pass  # the pid exists, under another user
    now = process_start(pid)
    if now == "ended":
        return True, f"{who} has ended"
    if owner.get("started") and now and now != owner["started"]:
        return True, f"{who} is gone (its pid now belongs to another process)"
    return False, f"{who} is still running"


def new_restore_id(prefix: str = "r") -> str:
    """A unique, sortable restore id such as r-20260102T030405Z-1a2b3c."""
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class AuditLog(Protocol):
    """Where every restore, its resources and its phases are recorded (SQLite locally, DynamoDB on AWS)."""

    def open(
        self,
        kind: str,
        inputs: dict[str, Any],
        restore_id: str | None = None,
        owner: dict[str, Any] | None = None,
        claims: list[str] | tuple[str, ...] = (),
    ) -> str:
        """Create the record of a new run, owned by owner, holding claims; never reuses an id.

        A claim (such as `database.target_schema`) is held by one running record at a time and
        released by close(); an id that exists raises AuditConflict, a claim held by another
        restore raises ClaimConflict, and then nothing is written.
        """
        ...

    def reject(
        self, kind: str, inputs: dict[str, Any], cause: str, restore_id: str | None = None
    ) -> str:
        """Record a refused request; if restore_id already exists, under a fresh id (returned)."""
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
        """Set the final status of a running record (AuditConflict otherwise); release its claims."""
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


class SqliteAuditLog:
    """The local audit log: a SQLite file (by default `<fleet root>/audit.sqlite`)."""

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
    def _db(self):
        with self._lock:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.row_factory = sqlite3.Row
            try:
                yield conn
                conn.commit()
            finally:
                conn.close()

    def open(
        self,
        kind: str,
        inputs: dict[str, Any],
        restore_id: str | None = None,
        owner: dict[str, Any] | None = None,
        claims: list[str] | tuple[str, ...] = (),
    ) -> str:
        """Create the record of a new run, owned by owner, holding claims; never reuses an id."""
        rid = check_restore_id(restore_id or new_restore_id())
        owner = owner or process_owner()
        now = _now()
        with self._db() as db:  # one transaction: the record and its claims, or nothing
            try:
                db.execute(
                    "INSERT INTO restores (restore_id, kind, status, inputs, created_at, owner)"
                    " VALUES (?,?,?,?,?,?)",
                    (rid, kind, "running", json.dumps(inputs, default=str), now, json.dumps(owner)),
                )
            except sqlite3.IntegrityError:
                raise AuditConflict(
                    f"restore id {rid} already exists in the audit log: choose another"
                ) from None
            for target in claims:
                try:
                    db.execute(
                        "INSERT INTO claims (target, restore_id, created_at) VALUES (?,?,?)",
                        (target, rid, now),
                    )
                except sqlite3.IntegrityError:
                    holder = db.execute(
                        "SELECT restore_id FROM claims WHERE target = ?", (target,)
                    ).fetchone()
                    raise ClaimConflict(target, holder[0] if holder else "?") from None
        return rid

    def reject(
        self, kind: str, inputs: dict[str, Any], cause: str, restore_id: str | None = None
    ) -> str:
        """Record a refused request; if restore_id already exists, under a fresh id (returned)."""
        rid = restore_id if restore_id and RESTORE_ID_RE.fullmatch(restore_id) else None
        rid = rid or new_restore_id()
        now = _now()
        with self._db() as db:
            for attempt in (rid, new_restore_id()):
                record = dict(inputs)
                if attempt != restore_id and restore_id:
                    record["requested_restore_id"] = str(restore_id)[:80]
                try:
                    db.execute(
                        "INSERT INTO restores (restore_id, kind, status, inputs, created_at,"
                        " finished_at, duration_s, cause, owner) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            attempt,
                            kind,
                            "rejected",
                            json.dumps(record, default=str),
                            now,
                            now,
                            0.0,
                            cause,
                            json.dumps(process_owner()),
                        ),
                    )
                    return attempt
                except sqlite3.IntegrityError:
                    continue  # the id is another run's: its record stays as it is
        raise AuditConflict(f"could not record the refusal of {restore_id}")  # pragma: no cover

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
        bad = set(fields) - set(UPDATABLE)
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
        """Set the final status of a running record (AuditConflict otherwise); release its claims."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"unknown final status {status!r}")
        now = datetime.now(UTC)
        with self._db() as db:
            row = db.execute(
                "SELECT created_at, status FROM restores WHERE restore_id = ?", (restore_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"unknown restore id {restore_id}")
            duration = (now - datetime.fromisoformat(row["created_at"])).total_seconds()
            done = db.execute(
                "UPDATE restores SET status = ?, cause = COALESCE(?, cause), finished_at = ?,"
                " duration_s = ? WHERE restore_id = ? AND status = 'running'",
                (status, cause, now.isoformat(), duration, restore_id),
            )
            if done.rowcount != 1:
                raise AuditConflict(
                    f"restore {restore_id} is already {row['status']}: its record is not changed"
                )
            db.execute("DELETE FROM claims WHERE restore_id = ?", (restore_id,))

    def claims(self, restore_id: str) -> list[str]:
        """The targets a running record holds."""
        with self._db() as db:
            rows = db.execute(
                "SELECT target FROM claims WHERE restore_id = ? ORDER BY target", (restore_id,)
            ).fetchall()
        return [r[0] for r in rows]

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
        rec["owner"] = json.loads(rec["owner"]) if rec.get("owner") else None
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
