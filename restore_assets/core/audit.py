"""The audit log: one record per restore with inputs, resources, phases, status and cause.

Here: restore ids, owners (who may clean up), claims, and `AuditLog`, the protocol of every audit
log as an abstract class holding the logic they share (opening with claims, refusals, checked
updates and final statuses, decoded records). Where records are stored:
backends/local/audit.py (SQLite) and backends/aws/audit.py (DynamoDB).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def now_iso() -> str:
    """The current UTC time in ISO 8601 (the audit records' time stamps)."""
    return datetime.now(UTC).isoformat()


# ---------------------------------------------------------------------------- shared logic
OPTIONAL = ("finished_at", "duration_s", "cause", "restore_point")  # absent until set


def exists_conflict(restore_id: str) -> AuditConflict:
    """The refusal of an open() whose restore id is taken."""
    return AuditConflict(f"restore id {restore_id} already exists in the audit log: choose another")


def closed_conflict(restore_id: str, status: str) -> AuditConflict:
    """The refusal of a close() of a record that is not running any more."""
    return AuditConflict(f"restore {restore_id} is already {status}: its record is not changed")


def unknown_record(restore_id: str) -> KeyError:
    """The error of a read or write of a record that does not exist."""
    return KeyError(f"unknown restore id {restore_id}")


def check_final_status(status: str) -> str:
    """A status close() may set: a known one, never running."""
    if status not in STATUSES or status == "running":
        raise ValueError(f"unknown final status {status!r}")
    return status


def seconds_since(created_at: str, now: datetime) -> float:
    """The duration of a run from its record's created_at to now."""
    return (now - datetime.fromisoformat(created_at)).total_seconds()


def _loads(text: str | None, empty: Any = None) -> Any:
    return json.loads(text) if text else empty


def decode_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A stored run summary with its JSON fields decoded and absent optional fields None."""
    rec = {**row, "inputs": _loads(row.get("inputs"), {})}
    for key in OPTIONAL:
        rec.setdefault(key, None)
    return rec


class AuditLog(ABC):
    """Where every restore, its resources and its phases are recorded: the protocol of the audit
    logs (SQLite locally, DynamoDB on AWS) and the logic they share; a subclass stores and reads.

    A subclass writes a new record with its claims atomically (`_insert`, raising AuditConflict
    or ClaimConflict and writing nothing), sets fields (`_set`), closes a running record
    (`_finish`), reads a record (`_record`) and the recent summaries (`_recent`).
    """

    def encode(self, value: Any) -> str:
        """The JSON text a record stores for inputs, results, details and metadata."""
        return json.dumps(value, default=str)

    def text(self, value: str) -> str:
        """A free text (cause, error) as it is stored."""
        return value

    @abstractmethod
    def _insert(self, record: dict[str, Any], claims: tuple[str, ...]) -> None: ...

    @abstractmethod
    def _set(self, restore_id: str, fields: dict[str, Any]) -> None: ...

    @abstractmethod
    def _finish(self, restore_id: str, status: str, cause: str | None) -> None: ...

    @abstractmethod
    def _record(self, restore_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def _recent(self, limit: int) -> list[dict[str, Any]]: ...

    @abstractmethod
    def resources(self, restore_id: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The resources of a run that cleanup must remove (newest first)."""

    @abstractmethod
    def resource(
        self, restore_id: str, kind: str, identifier: str, details: dict[str, Any]
    ) -> None:
        """Record a resource before it is relied on, so cleanup can find it after a crash."""

    @abstractmethod
    def resource_deleted(self, restore_id: str, kind: str, identifier: str) -> None:
        """Mark a recorded resource as removed."""

    @abstractmethod
    def claims(self, restore_id: str) -> list[str]:
        """The targets a running record holds (released by close())."""

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
        rid = check_restore_id(restore_id or new_restore_id())
        record = {
            "restore_id": rid,
            "kind": kind,
            "status": "running",
            "inputs": self.encode(inputs),
            "created_at": now_iso(),
            "owner": json.dumps(owner or process_owner()),
        }
        self._insert(record, tuple(claims))
        return rid

    def reject(
        self, kind: str, inputs: dict[str, Any], cause: str, restore_id: str | None = None
    ) -> str:
        """Record a refused request; if restore_id already exists, under a fresh id (returned)."""
        rid = restore_id if restore_id and RESTORE_ID_RE.fullmatch(restore_id) else None
        now = now_iso()
        for attempt in (rid or new_restore_id(), new_restore_id()):
            record = dict(inputs)
            if attempt != restore_id and restore_id:
                record["requested_restore_id"] = str(restore_id)[:80]
            try:
                self._insert(
                    {
                        "restore_id": attempt,
                        "kind": kind,
                        "status": "rejected",
                        "inputs": self.encode(record),
                        "created_at": now,
                        "finished_at": now,
                        "duration_s": 0.0,
                        "cause": self.text(cause),
                        "owner": json.dumps(process_owner()),
                    },
                    (),
                )
                return attempt
            except AuditConflict:
                continue  # the id is another run's: its record stays as it is
        raise AuditConflict(f"could not record the refusal of {restore_id}")  # pragma: no cover

    @abstractmethod
    def _add_phase(self, restore_id: str, entry: dict[str, Any]) -> None: ...

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
        entry = {
            "phase": phase,
            "started_at": started_at,
            "ended_at": now_iso(),
            "outcome": outcome,
            "error": self.text(error) if error else None,
            "metadata": self.encode(metadata or {}),
        }
        self._add_phase(restore_id, entry)

    def update(self, restore_id: str, **fields: Any) -> None:
        """Set fields of the run record (restore_point, result, cause; never the status)."""
        bad = set(fields) - set(UPDATABLE)
        if bad:
            raise ValueError(f"cannot update audit fields {sorted(bad)}")
        if fields:
            self._set(
                restore_id,
                {
                    k: self.encode(v)
                    if isinstance(v, dict | list)
                    else self.text(v)
                    if isinstance(v, str)
                    else v
                    for k, v in fields.items()
                },
            )

    def close(self, restore_id: str, status: str, cause: str | None = None) -> None:
        """Set the final status of a running record (AuditConflict otherwise); release its claims."""
        check_final_status(status)
        self._finish(restore_id, status, None if cause is None else self.text(cause))

    def get(self, restore_id: str) -> dict[str, Any]:
        """The whole record of one run, with its phases and resources."""
        raw = self._record(restore_id)
        rec = decode_summary({k: v for k, v in raw.items() if k not in ("phases", "resources")})
        rec["result"] = _loads(raw.get("result"))
        rec["owner"] = _loads(raw.get("owner"))
        rec["phases"] = [
            {**p, "restore_id": restore_id, "metadata": _loads(p.get("metadata"), {})}
            for p in raw.get("phases") or []
        ]
        rec["resources"] = self.resources(restore_id, include_deleted=True)
        return rec

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        return [decode_summary(r) for r in self._recent(limit)]
