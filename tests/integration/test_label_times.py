"""Backup label times are read back by the server that printed them, in its log_timezone."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from restore_assets.backends.local import pg
from restore_assets.backends.local.basebackups import server_times
from tests.conftest import scratch_dir
from tests.integration.fleet_helpers import execute

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[pg.Cluster]:
    """A cluster whose log_timezone the tests set."""
    base = scratch_dir("ra-label-times-")
    cluster = pg.start_new_cluster(base / "data")
    try:
        yield cluster
    finally:
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


def set_log_timezone(cluster: pg.Cluster, zone: str) -> None:
    execute(cluster.dsn(), f"ALTER SYSTEM SET log_timezone = '{zone}'")
    execute(cluster.dsn(), "SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while execute(cluster.dsn(), "SHOW log_timezone") != [(zone,)]:
        assert time.monotonic() < deadline, "the server did not reload its log_timezone"
        time.sleep(0.05)


def test_an_abbreviation_is_read_in_the_servers_zone(server: pg.Cluster):
    """'CST' printed by a server in Shanghai is UTC+8, not Chicago's UTC-6 (PostgreSQL's table)."""
    set_log_timezone(server, "Asia/Shanghai")
    [shanghai, pacific] = server_times(
        server.dsn(), ["2026-01-02 03:04:05 CST", "2026-01-02 03:04:05 PST"]
    )
    assert shanghai == datetime(2026, 1, 1, 19, 4, 5, tzinfo=UTC)
    assert pacific is None  # not a text this server prints


def test_the_repeated_hour_of_a_dst_change_is_told_apart_by_its_abbreviation(
    server: pg.Cluster,
):
    set_log_timezone(server, "America/Los_Angeles")
    times = server_times(
        server.dsn(),
        ["2026-11-01 01:30:00 PDT", "2026-11-01 01:30:00 PST", "2026-07-01 12:00:00 PDT "],
    )
    assert times == [
        datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
        datetime(2026, 7, 1, 19, 0, tzinfo=UTC),
    ]
