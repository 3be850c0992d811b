"""Starting a cluster (real PostgreSQL): it answers once the server accepts connections, and a
server that cannot start fails at once with its own log line, not after the timeout."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from restore_assets.backends.local import pg
from restore_assets.core.errors import FleetError
from tests.conftest import scratch_dir

pytestmark = pytest.mark.integration


def test_start_answers_when_ready_and_fails_fast_on_a_taken_port() -> None:
    base = scratch_dir("ra-start-")
    cluster = pg.Cluster(base / "data", pg.free_port())
    try:
        cluster.initdb()
        cluster.start(timeout=60)
        with cluster.connect("postgres") as conn:  # accepting connections as soon as it returns
            assert conn.execute("SELECT 1").fetchone() == (1,)
        cluster.stop()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            cluster.port = taken.getsockname()[1]
            cluster.configure({**pg.BASE_SETTINGS, "port": str(cluster.port)})
            t0 = time.monotonic()
            with pytest.raises(
                FleetError, match="did not start: .*could not create any TCP/IP sockets"
            ):
                cluster.start(timeout=60)
            assert time.monotonic() - t0 < 30  # its failure, not the timeout
        assert not cluster.is_running()
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
