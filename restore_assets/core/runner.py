"""The one phase runner of the schema restore and the server restore (no Dagster here).

A phase (or step) runs unless an upstream one failed, never raises, and is recorded in the audit
log with its start, duration, outcome and metadata. The tests' fault injection replaces
`phase_hook` (tests/faults.py); nothing in the product can set it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from restore_assets.backends.protocols import Notifier
from restore_assets.core.audit import AuditLog

log = logging.getLogger("restore_assets.core.runner")


@dataclass
class PhaseResult:
    """What a phase produced, or the error that stopped it (carried forward to cleanup)."""

    phase: str
    ok: bool
    value: Any = None
    error: str | None = None
    skipped: bool = False
    started_at: str = ""
    seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the value)."""
        d = asdict(self)
        d.pop("value")
        return d


def first_failure(results: list[PhaseResult]) -> PhaseResult | None:
    """The first failed (not merely skipped) phase among results."""
    for r in results:
        if not r.ok and not r.skipped:
            return r
    for r in results:
        if not r.ok:
            return r
    return None


def not_requested(phase: str) -> PhaseResult:
    """The result of a phase this run does not include."""
    return PhaseResult(phase, ok=True, value=None, metadata={"not_requested": True})


def phase_hook(restore_id: str | None, phase: str, when: str) -> None:
    """Called before (`when="before"`) and after (`"after"`) every phase and step; does nothing.

    The test suite's fault injection replaces this function (tests/faults.py) to fail or pause a
    chosen phase. No configuration, launchpad field or environment variable can set it.
    """


def run_phase(
    audit: AuditLog | None,
    restore_id: str | None,
    phase: str,
    fn: Callable[[], Any],
    upstream: list[PhaseResult] | tuple[PhaseResult, ...] = (),
    metadata: Callable[[Any], dict[str, Any]] | None = None,
) -> PhaseResult:
    """Run one phase unless an upstream one failed; record it in the audit log; never raise."""
    started = datetime.now(UTC).isoformat()
    failed = first_failure(list(upstream))
    if failed is not None:
        return PhaseResult(phase, ok=False, skipped=True, error=failed.error, started_at=started)
    t0 = time.monotonic()
    try:
        phase_hook(restore_id, phase, "before")
        value = fn()
        phase_hook(restore_id, phase, "after")
        meta = metadata(value) if metadata else {}
        result = PhaseResult(phase, True, value, started_at=started, metadata=meta)
    except Exception as exc:  # noqa: BLE001 - carried to cleanup / rollback, which fail the run
        result = PhaseResult(phase, False, error=failure_cause(phase, exc), started_at=started)
        log.error("phase %s failed: %s", phase, exc)
        log.debug("%s", traceback.format_exc())
    result.seconds = round(time.monotonic() - t0, 3)
    if audit is not None and restore_id:
        audit.phase(
            restore_id,
            phase,
            "succeeded" if result.ok else "failed",
            started_at=started,
            error=result.error,
            metadata={**result.metadata, "seconds": result.seconds},
        )
    return result


def failure_cause(phase: str, exc: BaseException) -> str:
    """The cause recorded for a failed phase: `<phase>: <ExceptionType>: <message>`."""
    return f"{phase}: {type(exc).__name__}: {exc}"


def timings(results: list[PhaseResult]) -> dict[str, Any]:
    """Per phase: ok, skipped, seconds and error (and `not_requested` for a phase not run)."""
    return {
        r.phase: {
            "ok": r.ok,
            "skipped": r.skipped,
            "seconds": r.seconds,
            "error": r.error,
            **({"not_requested": True} if r.metadata.get("not_requested") else {}),
        }
        for r in results
    }


def close_run(
    audit: AuditLog,
    restore_id: str,
    summary: Mapping[str, Any],
    notifier: Notifier | None = None,
    event: dict[str, Any] | None = None,
) -> None:
    """Store the run's summary, close its record with the summary's status and cause; send event."""
    audit.update(restore_id, result=dict(summary))
    audit.close(restore_id, summary["status"], summary["cause"])
    if notifier is not None and event is not None:
        notifier.send(event)
