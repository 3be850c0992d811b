"""Shared fixtures: real PostgreSQL clusters on free ports, removed at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from restore_assets.backends.local import cluster as fleet_cluster
from restore_assets.backends.local import pg as pg_module
from restore_assets.backends.local.pg import Cluster, start_new_cluster

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


# Test clusters are thrown away: they need not wait for the disk. Only clusters this test process
# creates get this (fixtures, fleets made in-process); the product's own settings keep fsync on, and
# a test that checks them creates its cluster inside `product_settings()`.
FAST_SETTINGS = {"fsync": "off"}  # commits still wait for their WAL write (tests read LSNs)
NO_SYNC_PROGRAMS = ("initdb", "pg_basebackup")  # both skip their final fsync with --no-sync
_SETTINGS = (pg_module.BASE_SETTINGS, fleet_cluster.PRODUCTION_SETTINGS)
_PRODUCT = ([dict(d) for d in _SETTINGS], pg_module.run_server_cmd)


def _run_without_sync(args: list[str], *rest, **kwargs):
    """pg.run_server_cmd, with --no-sync added to initdb and pg_basebackup."""
    if Path(args[0]).name in NO_SYNC_PROGRAMS and "--no-sync" not in args:
        args = [*args, "--no-sync"]
    return _PRODUCT[1](args, *rest, **kwargs)


def _use(settings: list[dict[str, str]], run) -> None:
    for target, values in zip(_SETTINGS, settings, strict=True):
        target.clear()
        target.update(values)
    pg_module.run_server_cmd = run


@contextlib.contextmanager
def product_settings() -> Iterator[None]:
    """Clusters created inside get the product's own settings (fsync on), not the test ones."""
    before = ([dict(d) for d in _SETTINGS], pg_module.run_server_cmd)
    _use(*_PRODUCT)
    try:
        yield
    finally:
        _use(*before)


@pytest.fixture(scope="session", autouse=True)
def fast_test_clusters() -> Iterator[None]:
    """Every cluster the session creates runs without fsync (throwaway data)."""
    _use([{**d, **FAST_SETTINGS} for d in _PRODUCT[0]], _run_without_sync)
    try:
        yield
    finally:
        _use(*_PRODUCT)


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
