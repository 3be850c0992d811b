"""Helpers the local fleet tests share: statements, an items history, running postmasters."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

import psycopg

from restore_assets.backends.local import pg

GAP = 0.2  # seconds between a commit and a restore point, so they never tie


def execute(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    """Run one statement in autocommit mode; return its rows (empty for a command)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def commit(dsn: str, label: str) -> None:
    """Commit one row of the items table."""
    execute(dsn, "INSERT INTO items (label) VALUES (%s)", (label,))


def mark(dsn: str, gap: float = GAP) -> datetime:
    """A restore point strictly between the commits before and after it (server clock, with zone)."""
    time.sleep(gap)
    point = execute(dsn, "SELECT clock_timestamp()")[0][0]
    time.sleep(gap)
    return point


def postmasters_under(path: Path) -> list[str]:
    """Command lines of running postmasters whose data directory lies under path."""
    out = subprocess.run(
        ["pgrep", "-u", pg.server_user().name, "-af", "postgres -D"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [line for line in out.splitlines() if f" -D {path}/" in line]
