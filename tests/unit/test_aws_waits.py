"""The AWS wait helpers: botocore waiters (on moto) and the one bounded poll."""

from __future__ import annotations

import pytest
from moto import mock_aws

from restore_assets.backends.aws.clients import aws_client
from restore_assets.backends.aws.waits import WaitTimedOut, poll_until, run_waiter

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
