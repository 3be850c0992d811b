"""first_failure on real in-process Dagster results: a failed step's error, or the run's failure
when no step failed (as when a refused request ends its run between steps)."""

from __future__ import annotations

import dagster as dg

from restore_assets.jobs.in_process import first_failure


@dg.op
def fails() -> None:
    """A step that fails."""
    raise ValueError("the step's own error")


@dg.resource
def broken(_context: dg.InitResourceContext) -> None:
    """A resource that cannot start: the run fails before any step."""
    raise RuntimeError("the resource's own error")


@dg.op(required_resource_keys={"broken"})
def needs_broken() -> None:
    """A step that never runs."""


@dg.job
def failing_step() -> None:
    """One failing step."""
    fails()


@dg.job(resource_defs={"broken": broken})
def failing_run() -> None:
    """A run that fails with no step failure."""
    needs_broken()


def test_a_step_failure_gives_the_steps_error() -> None:
    result = failing_step.execute_in_process(raise_on_error=False)
    assert not result.success
    assert 'executing op "fails"' in first_failure(result)


def test_a_run_failure_without_a_step_failure_gives_the_runs_message() -> None:
    result = failing_run.execute_in_process(raise_on_error=False)
    assert not result.success
    assert not any(e.is_step_failure for e in result.all_events)
    assert any(e.is_run_failure for e in result.all_events)
    message = first_failure(result)
    assert message != "failed" and "failing_run" in message, message
