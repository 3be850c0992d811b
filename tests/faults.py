"""Fault injection for the tests: replace the core's no-op `runner.phase_hook` for a while.

The product has no fault switch (no launchpad field, YAML key or environment variable): a test
installs a hook here, in its own process (Dagster's in-process executor runs the ops there), or in a
child process it starts (`tests/run_paused.py`).

A selector names a phase or step (`copy` also matches `copy:customer_a1`); `<phase>:after` fires
after the phase's work instead of before it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from restore_assets.core import runner
from restore_assets.core.errors import RestoreError

Hook = Callable[[str | None, str, str], None]


class InjectedFault(RestoreError):
    """The error an injected failure raises."""


def parse(selector: str) -> tuple[str, str]:
    """(phase, when) of a selector: `wait:after` -> ("wait", "after"), `copy:x` -> ("copy:x", "before")."""
    if selector.endswith(":after"):
        return selector[: -len(":after")], "after"
    return selector, "before"


def matches(selector: str, phase: str, when: str) -> bool:
    """True when the selector names this phase (or its parent, for `copy:<schema>`) at this moment."""
    name, at = parse(selector)
    return at == when and (phase == name or phase.startswith(f"{name}:"))


@contextlib.contextmanager
def installed(hook: Hook) -> Iterator[None]:
    """Within the block, every phase and step calls `hook(restore_id, phase, when)`."""
    previous = runner.phase_hook
    runner.phase_hook = hook
    try:
        yield
    finally:
        runner.phase_hook = previous


def failing(selector: str) -> Hook:
    """A hook that raises InjectedFault at the selected phase."""

    def hook(restore_id: str | None, phase: str, when: str) -> None:
        if matches(selector, phase, when):
            where = "after step" if when == "after" else "in phase"
            raise InjectedFault(f"injected failure {where} {phase}")

    return hook


def fail_at(selector: str) -> contextlib.AbstractContextManager[None]:
    """Within the block, the selected phase or step fails with `injected failure ...`."""
    return installed(failing(selector))


def pausing(selector: str, marker: Path | None = None) -> Hook:
    """A hook that stops at the selected phase until the process is killed (writes `marker` first)."""

    def hook(restore_id: str | None, phase: str, when: str) -> None:
        if matches(selector, phase, when):
            if marker is not None:
                marker.write_text(f"{os.getpid()} {phase} {when}\n")
            while True:
                time.sleep(1)

    return hook
