"""Waiting on AWS: botocore's waiter where one exists, one bounded poll where none does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import WaiterError

from restore_assets.backends.aws.config import waiter_config

T = TypeVar("T")


def run_waiter(
    client: Any,
    name: str,
    timeout: float,
    delay: float,
    on_give_up: Callable[[WaiterError], Exception],
    **params: Any,
) -> None:
    """Wait with botocore's waiter `name` for about timeout seconds; raise on_give_up(error) if it
    gives up (a failure state, an unexpected error or the time limit)."""
    try:
        client.get_waiter(name).wait(**params, WaiterConfig=waiter_config(timeout, delay))
    except WaiterError as exc:
        raise on_give_up(exc) from None


class WaitTimedOut(Exception):
    """A bounded poll ran out of time; `last` is the last value seen."""

    def __init__(self, last: Any, timeout: float) -> None:
        super().__init__(f"not done after {timeout:.0f}s")
        self.last = last


def poll_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    delay: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call probe until done(value) holds (return that value), at most timeout seconds (then
    WaitTimedOut); for waits botocore has no waiter for."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise WaitTimedOut(value, timeout)
        sleep(delay)
