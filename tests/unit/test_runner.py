"""The one phase runner (core/runner.py): skip after a failure, never raise, record, time, hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from restore_assets.backends.local.audit import SqliteAuditLog
from restore_assets.core import runner
from restore_assets.core.runner import (
    PhaseResult,
    close_run,
    first_failure,
    not_requested,
    run_phase,
    timings,
)
from restore_assets.core.schema_restore import phases
from restore_assets.core.server_restore import recovery, steps
from tests import faults


@pytest.fixture
def audit(tmp_path: Path) -> SqliteAuditLog:
    return SqliteAuditLog(tmp_path / "audit.sqlite")


def _open(audit: SqliteAuditLog) -> str:
    return audit.open("schema_restore", {"database": "tenant_a"}, "r-runner")


def test_a_phase_that_succeeds_is_recorded_with_its_metadata_and_time(audit) -> None:
    rid = _open(audit)
    result = run_phase(audit, rid, "topology", lambda: {"n": 2}, metadata=lambda v: v)
    assert result.ok and result.value == {"n": 2} and result.error is None
    assert result.started_at and result.seconds >= 0
    [rec] = audit.get(rid)["phases"]
    assert rec["phase"] == "topology" and rec["outcome"] == "succeeded"
    assert rec["metadata"]["n"] == 2 and "seconds" in rec["metadata"]


def test_a_failing_phase_never_raises_and_records_its_cause(audit) -> None:
    rid = _open(audit)

    def boom() -> None:
        raise RuntimeError("disk full")

    result = run_phase(audit, rid, "copy:s1", boom)
    assert not result.ok and not result.skipped
    assert result.error == "copy:s1: RuntimeError: disk full"
    [rec] = audit.get(rid)["phases"]
    assert rec["outcome"] == "failed" and rec["error"] == result.error


def test_after_an_upstream_failure_the_phase_is_skipped_and_not_run_or_recorded(audit) -> None:
    rid = _open(audit)
    ran: list[str] = []
    failed = PhaseResult("pre", ok=False, error="pre: X: y")
    result = run_phase(audit, rid, "post", lambda: ran.append("post"), [failed])
    assert result.skipped and not result.ok and result.error == "pre: X: y"
    assert ran == [] and audit.get(rid)["phases"] == []


def test_without_an_audit_log_or_id_nothing_is_recorded() -> None:
    assert run_phase(None, None, "copy", lambda: 1).value == 1
    assert run_phase(None, "r-x", "copy", lambda: 1).ok


def test_the_fault_hook_fires_before_and_after_each_phase() -> None:
    seen: list[tuple[str | None, str, str]] = []
    with faults.installed(lambda rid, phase, when: seen.append((rid, phase, when))):
        run_phase(None, "r-1", "wait", lambda: None)
    assert seen == [("r-1", "wait", "before"), ("r-1", "wait", "after")]
    with faults.fail_at("wait"):
        before = run_phase(None, "r-1", "wait", lambda: seen.append(("ran", "", "")))
    assert not before.ok and "injected failure in phase wait" in before.error
    assert ("ran", "", "") not in seen  # failed before its work
    assert runner.phase_hook(None, "wait", "before") is None  # restored


def test_first_failure_prefers_a_real_failure_to_a_skip() -> None:
    skipped = PhaseResult("a", ok=False, skipped=True, error="x")
    failed = PhaseResult("b", ok=False, error="y")
    assert first_failure([skipped, failed]) is failed
    assert first_failure([skipped]) is skipped
    assert first_failure([PhaseResult("c", ok=True)]) is None


def test_timings_mark_phases_not_requested() -> None:
    out = timings([PhaseResult("wait", ok=True, seconds=1.5), not_requested("export")])
    assert out == {
        "wait": {"ok": True, "skipped": False, "seconds": 1.5, "error": None},
        "export": {
            "ok": True,
            "skipped": False,
            "seconds": 0.0,
            "error": None,
            "not_requested": True,
        },
    }


def test_close_run_stores_the_summary_closes_and_notifies(audit) -> None:
    rid = _open(audit)
    sent: list[dict[str, Any]] = []

    class Notifier:
        def send(self, event: dict[str, Any]) -> None:
            sent.append(event)

    summary = {"status": "failed", "cause": "copy: X: y", "phases": {}}
    close_run(audit, rid, summary, Notifier(), {"status": "failed"})
    rec = audit.get(rid)
    assert rec["status"] == "failed" and rec["cause"] == "copy: X: y"
    assert rec["result"] == summary and sent == [{"status": "failed"}]
    rid2 = audit.open("snapshot", {}, "r-runner-2")
    close_run(audit, rid2, {"status": "succeeded", "cause": None}, Notifier(), None)
    assert audit.get(rid2)["status"] == "succeeded" and len(sent) == 1


def test_one_runner_serves_both_restores() -> None:
    """Neither the schema restore nor the server restore keeps a copy of the runner."""
    for module in (phases, steps, recovery):
        source = Path(module.__file__).read_text()
        assert "time.monotonic" not in source and "phase_hook(" not in source, module.__name__
        assert not hasattr(module, "run_step"), module.__name__
