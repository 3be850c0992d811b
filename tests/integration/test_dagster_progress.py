"""Progress: the copy watcher's rows/bytes/ETA on real PostgreSQL, the phase lines, the CLI's
plain-line output, and a restore window that is never backwards right after a snapshot."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from restore_assets.core.progress import CopyWatcher, LiveProgress, phase_lines
from tests.conftest import scratch_dir

pytestmark = pytest.mark.integration


def test_the_copy_watcher_counts_copied_rows_against_the_live_estimate(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for schema in ("s", "s_x"):
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"CREATE TABLE {schema}.t (id int PRIMARY KEY, v text)")
            conn.execute(f"CREATE TABLE {schema}.u (id int PRIMARY KEY)")
        conn.execute("INSERT INTO s.t SELECT g, 'x' FROM generate_series(1, 1000) g")
        conn.execute("INSERT INTO s.u SELECT g FROM generate_series(1, 10) g")
        conn.execute("ANALYZE s.t")
        conn.execute("ANALYZE s.u")
        watcher = CopyWatcher(fresh_db, {"s": "s_x"})
        with conn.cursor().copy("COPY s_x.t (id, v) FROM STDIN") as copy:
            for i in range(1, 401):
                copy.write_row((i, "x"))
        conn.execute("ANALYZE s_x.t")  # what the mover does once a table is copied
    time.sleep(0.05)
    progress = watcher.sample()
    by_table = {t.table: t for t in progress.tables}
    assert by_table["t"].schema == "s_x"
    assert (by_table["t"].rows, by_table["t"].estimated_rows) == (400, 1000)
    assert by_table["t"].bytes > 0 and not by_table["t"].copying
    assert (by_table["u"].rows, by_table["u"].estimated_rows) == (0, 10)
    assert progress.total_rows == 400 and progress.estimated_rows == 1010
    assert progress.eta() is not None and progress.eta() > 0
    assert "400/1,010 rows (40%)" in progress.summary()


def test_phase_lines_show_what_is_done_and_what_runs() -> None:
    record = {
        "status": "running",
        "phases": [
            {"phase": "topology", "outcome": "succeeded", "metadata": {"seconds": 0.1}},
            {"phase": "provision", "outcome": "succeeded", "metadata": {"seconds": 3.0}},
        ],
    }
    assert phase_lines(record) == [
        "validate: succeeded",
        "topology: succeeded in 0.1s",
        "provision: succeeded in 3.0s",
        "ddl: running",
    ]
    assert phase_lines(None) == ["validate: running"]


def test_progress_on_a_pipe_prints_each_phase_once() -> None:
    stream = io.StringIO()
    live = LiveProgress(stream, lambda: None, lambda: None)
    assert not live.tty
    live.draw(["validate: succeeded in 0.2s", "topology: running"])
    live.draw(["validate: succeeded in 0.2s", "topology: succeeded in 0.1s", "provision: running"])
    assert stream.getvalue().splitlines() == [
        "validate: succeeded in 0.2s",
        "topology: running",
        "topology: succeeded in 0.1s",
        "provision: running",
    ]
    assert "\x1b" not in stream.getvalue()


def test_the_cli_restore_prints_its_phases_as_plain_lines(demo_fleet) -> None:
    point = datetime.now(UTC)
    time.sleep(0.1)
    env = {**os.environ, "RESTORE_ASSETS_ROOT": str(demo_fleet.root)}
    res = subprocess.run(
        [sys.executable, "-m", "restore_assets.cli.main", "restore", "--database", "tenant_a"]
        + ["--schema", "customer_a2", "--restore-time", point.isoformat(), "--suffix", "prog"]
        + ["--no-compare", "--wait-cleanup"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    try:
        assert res.returncode == 0, res.stderr
        lines = res.stderr.splitlines()
        for phase in ("validate", "provision", "ddl", "pre", "post"):
            assert any(ln.startswith(f"{phase}: succeeded") for ln in lines), res.stderr
        assert "\x1b" not in res.stderr
    finally:
        with psycopg.connect(demo_fleet.production_dsn("tenant_a"), autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS customer_a2_prog CASCADE")


def test_the_restore_window_is_never_backwards_right_after_the_first_snapshot() -> None:
    from restore_assets.backends.local.fleet import LocalFleet

    root = scratch_dir("ra-window-")
    fleet = LocalFleet(root)
    try:
        fleet.up()
        fleet.snapshot()
        window = fleet.status()["window"]
        assert window["earliest"] is not None
        if window["latest"] is not None:
            assert window["latest"] >= window["earliest"]
    finally:
        fleet.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)
    assert not Path(root).exists()


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Yes."""
        return True


def test_progress_on_a_terminal_is_redrawn_in_place() -> None:
    stream = Terminal()
    live = LiveProgress(stream, lambda: None, lambda: None)
    assert live.tty and live.every == 1.0
    live.draw(["validate: succeeded", "topology: running"])
    first = stream.getvalue()
    assert "\x1b[F" not in first and first.count("\x1b[2K") == 2
    live.draw(["validate: succeeded", "topology: succeeded in 0.1s", "provision: running"])
    second = stream.getvalue()[len(first) :]
    assert second.startswith("\x1b[2F")  # back up over the 2 lines drawn before
    assert second.count("\x1b[2K") == 3 and second.endswith("\x1b[J")
