"""The AWS wait helpers: botocore waiters (on moto) and the one bounded poll."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import WaiterError
from moto import mock_aws

from restore_assets.backends.aws.clients import aws_client
from restore_assets.backends.aws.waits import (
    WaitTimedOut,
    poll_until,
    run_waiter,
    timed_out,
    waiter,
)
from tests.aws.doubles import moto_instance

REGION = "us-east-1"


class GaveUp(Exception):
    """What the caller turns a give-up into."""


def test_poll_until_returns_the_first_value_that_is_done() -> None:
    values = iter([1, 2, 3, 4])
    slept: list[float] = []
    got = poll_until(
        lambda: next(values), lambda v: v >= 3, timeout=60, delay=5, sleep=slept.append
    )
    assert got == 3
    assert slept == [5, 5]


def test_poll_until_gives_up_with_the_last_value() -> None:
    calls: list[int] = []

    def probe() -> str:
        calls.append(1)
        return "creating"

    with pytest.raises(WaitTimedOut) as err:
        poll_until(probe, lambda v: v == "ready", timeout=0, delay=1, sleep=lambda _: None)
    assert err.value.last == "creating"
    assert len(calls) >= 1


def test_run_waiter_raises_the_callers_error_when_the_waiter_gives_up(monkeypatch) -> None:
    """A DMS task that does not exist never becomes ready: the caller's error, not WaiterError."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        dms = aws_client("dms", region_name=REGION)
        with pytest.raises(GaveUp, match="replication_task_ready"):
            run_waiter(
                dms,
                "replication_task_ready",
                1,
                1,
                lambda exc: GaveUp(f"replication_task_ready: {exc}"),
                Filters=[{"Name": "replication-task-arn", "Values": ["arn:aws:dms:x:1:task:NOPE"]}],
            )


def _rds_with_instance(state: str) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.rds.models import rds_backends

    rds = aws_client("rds", region_name=REGION)
    moto_instance(rds, "db1")
    rds_backends[DEFAULT_ACCOUNT_ID][REGION].databases["db1"].status = state
    return rds


def _timed_out_each(rds: Any, name: str, options: list[dict[str, Any]], **params: Any) -> list:
    """Run the waiter once per set of options (1 s limit); for each, whether it timed out
    (True) or gave up at once on a failure state or an unexpected error (False)."""
    out = []
    for option in options:

        def give_up(exc: WaiterError) -> GaveUp:
            out.append(timed_out(exc))
            return GaveUp(str(exc))

        with pytest.raises(GaveUp):
            run_waiter(rds, name, 1, 1, give_up, **option, **params)
    return out


def test_an_added_failure_state_ends_an_rds_waiter_at_once(monkeypatch) -> None:
    """botocore's db_instance_available does not list storage-full: added, it fails the wait
    (not a time-out); without it the waiter runs to its limit."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        rds = _rds_with_instance("storage-full")
        options: list[dict[str, Any]] = [{"fail_states": ("storage-full",)}, {}]
        got = _timed_out_each(rds, "db_instance_available", options, DBInstanceIdentifier="db1")
        assert got == [False, True]


def test_an_error_code_added_as_retry_keeps_the_waiter_waiting(monkeypatch) -> None:
    """A final snapshot not listed yet: DBSnapshotNotFound is botocore's 'unexpected error'
    (the wait fails at once) unless it is added as a retry (the wait runs to its limit)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        rds = aws_client("rds", region_name=REGION)
        options: list[dict[str, Any]] = [{}, {"retry_errors": ("DBSnapshotNotFound",)}]
        got = _timed_out_each(rds, "db_snapshot_available", options, DBSnapshotIdentifier="not-yet")
        assert got == [False, True]


def test_a_waiter_botocore_does_not_have_is_refused() -> None:
    with mock_aws():
        rds = aws_client("rds", region_name=REGION)
        with pytest.raises(ValueError, match="no waiter"):
            waiter(rds, "db_instance_renamed", fail_states=("failed",))
