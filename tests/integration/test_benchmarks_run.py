"""The benchmarks the README quotes still run to their verified outputs and their `ratio:` line,
at a tiny size (nothing here is timed: a ratio at this size means nothing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> list[str]:
    """Run one bench script as a user would; its output lines (the failure's output on failure)."""
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout.strip().splitlines()


def test_restore_bench_runs_its_three_tools_on_one_snapshot() -> None:
    # the baselines read a temporary instance, which stays paused in recovery: pgcopydb refuses a
    # hot standby, so the bench promotes that instance first (it failed there once)
    lines = run_bench("bench/restore_bench.py", "--rows", "500", "--rounds", "3", "--jobs", "2")
    assert any(re.match(r"round 3 pgcopydb +wall=", line) for line in lines), lines
    assert any("outputs verified" in line for line in lines), lines
    assert re.fullmatch(r"ratio: \d+\.\d{3}", lines[-1]), lines[-1]


def test_provision_bench_runs_both_paths_and_checks_they_restore_the_same() -> None:
    lines = run_bench(
        "bench/provision_bench.py",
        *("--tenant-mb", "1", "--other-mb", "2", "--same-db-mb", "2"),
        *("--rounds", "3", "--pause", "0"),
    )
    assert any(line.startswith("outputs: every restored schema equal") for line in lines), lines
    assert any(line.startswith("round 2 selective") for line in lines), lines
    assert any(line.startswith("round 2 full") for line in lines), lines
    # round 1's full restore is the one that follows a full restore (round 0's)
    assert any(line.startswith("full restores right after a full one (1):") for line in lines)
    assert re.fullmatch(r"ratio: \d+\.\d{3}", lines[-1]), lines[-1]
