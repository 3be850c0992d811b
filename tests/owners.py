"""Owners for audit records of runs the tests "crash" inside their own process.

A record opened by the test process belongs to a live process, so cleanup and recovery rightly
refuse it. A test that simulates a crash opens the record for an owner that has really ended: a
child process that ran and exited.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from restore_assets.core.audit import process_owner


def dead_owner(dagster_run_id: str | None = None) -> dict[str, Any]:
    """The owner record of a process on this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return {**process_owner(dagster_run_id), "pid": child.pid, "started": None}
