"""Waiting on AWS: botocore's waiter where one exists, one bounded poll where none does."""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from botocore import xform_name
from botocore.exceptions import WaiterError
from botocore.loaders import create_loader
from botocore.waiter import WaiterModel, create_waiter_with_client

from restore_assets.backends.aws.config import waiter_config

T = TypeVar("T")


@functools.cache
def _waiter_models(service: str, api_version: str) -> dict[str, Any]:
    return create_loader().load_service_model(service, "waiters-2", api_version)["waiters"]


def _model(client: Any, name: str) -> tuple[str, dict[str, Any]]:
    """botocore's own model of the waiter `name` (snake_case, as client.get_waiter takes it)."""
    meta = client.meta.service_model
    models = _waiter_models(meta.service_name, meta.api_version)
    key = next((k for k in models if xform_name(k) == name), None)
    if key is None:
        raise ValueError(f"{meta.service_name} has no waiter {name!r}")
    return key, models[key]


def status_path(client: Any, name: str) -> str:
    """The JMESPath of the state botocore's waiter `name` watches (e.g. DBInstances[].Status)."""
    _key, model = _model(client, name)
    return next(
        (a["argument"] for a in model["acceptors"] if a["matcher"] in ("pathAll", "pathAny")),
        "",
    )


def waiter(
    client: Any, name: str, *, fail_states: Iterable[str] = (), retry_errors: Iterable[str] = ()
) -> Any:
    """botocore's waiter `name`, with more terminal states (fail fast) and error codes that mean
    "not there yet" (keep waiting) added to its own acceptors."""
    fail_states, retry_errors = tuple(fail_states), tuple(retry_errors)
    if not fail_states and not retry_errors:
        return client.get_waiter(name)
    key, model = _model(client, name)
    config = copy.deepcopy(model)
    path = status_path(client, name)
    config["acceptors"] = [
        *({"matcher": "error", "expected": code, "state": "retry"} for code in retry_errors),
        *config["acceptors"],
        *(
            {"matcher": "pathAny", "argument": path, "expected": state, "state": "failure"}
            for state in fail_states
        ),
    ]
    return create_waiter_with_client(
        key, WaiterModel({"version": 2, "waiters": {key: config}}), client
    )


def run_waiter(
    client: Any,
    name: str,
    timeout: float,
    delay: float,
    on_give_up: Callable[[WaiterError], Exception],
    *,
    fail_states: Iterable[str] = (),
    retry_errors: Iterable[str] = (),
    **params: Any,
) -> None:
    """Wait with botocore's waiter `name` for about timeout seconds; raise on_give_up(error) if it
    gives up (a failure state, an unexpected error or the time limit)."""
    w = waiter(client, name, fail_states=fail_states, retry_errors=retry_errors)
    try:
        w.wait(**params, WaiterConfig=waiter_config(timeout, delay))
    except WaiterError as exc:
        raise on_give_up(exc) from None


def timed_out(exc: WaiterError) -> bool:
    """True when a waiter gave up because its time (attempts) ran out, not on a failure state."""
    return "Max attempts exceeded" in str(exc.kwargs.get("reason", exc))


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
