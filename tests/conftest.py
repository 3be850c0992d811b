"""Shared fixtures: real PostgreSQL clusters on free ports, removed at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from restore_assets.backends.local.pg import Cluster, start_new_cluster

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def scratch_dir(prefix: str) -> Path:
    """A fresh directory the PostgreSQL server user can enter (pytest's tmp_path is 0700)."""
    base = os.environ.get("RESTORE_ASSETS_TEST_TMP", "/tmp")
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg() -> Iterator[Cluster]:
    """One plain PostgreSQL cluster for the whole test session (no archiving)."""
    root = scratch_dir("ra-pg-")
    cluster = start_new_cluster(root / "data")
    try:
        yield cluster
    finally:
        cluster.remove()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_db(pg: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new empty database on the session cluster; yields its DSN and drops it afterwards."""
    import psycopg
    from psycopg import sql

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg.dsn(name)
    finally:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def demo_fleet():
    """A local fleet with the demo tenants seeded (small) and one snapshot, shared by the session."""
    from restore_assets.backends.local.fleet import LocalFleet
    from restore_assets.demo import seed

    root = scratch_dir("ra-fleet-")
    fleet = LocalFleet(root)
    fleet.up()
    seed(fleet.production_dsn, rows=60)
    fleet.snapshot()
    try:
        yield fleet
    finally:
        fleet.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)
