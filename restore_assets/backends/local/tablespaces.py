"""Tablespaces of local clusters: mapped into a snapshot, relocated into a temporary copy.

A plain-format ``pg_basebackup`` writes each tablespace back to its original directory unless told
otherwise, which fails (the production directory is in use) and must never happen. A snapshot keeps
each tablespace inside its own directory (``<snapshot>/tablespaces/<oid>``), so it is one
self-contained tree; a temporary cluster copied from it gets its ``pg_tblspc`` links re-pointed at
its own copy before it starts, and refuses to start if any link still leads outside its directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from restore_assets.backends.local import pg
from restore_assets.core.errors import FleetError

SNAPSHOT_TABLESPACES = "tablespaces"


def _escape(path: str) -> str:
    """A path for pg_basebackup's OLDDIR=NEWDIR syntax ('=' is escaped with a backslash)."""
    return path.replace("\\", "\\\\").replace("=", "\\=")


def tablespace_mapping(dsn: str, snapshot_dir: Path) -> list[str]:
    """pg_basebackup --tablespace-mapping arguments putting every tablespace inside the snapshot."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT oid::int, pg_catalog.pg_tablespace_location(oid) FROM pg_catalog.pg_tablespace"
            " WHERE pg_catalog.pg_tablespace_location(oid) <> '' ORDER BY 1"
        ).fetchall()
    return [
        f"--tablespace-mapping={_escape(location)}="
        f"{_escape(str(snapshot_dir / SNAPSHOT_TABLESPACES / str(oid)))}"
        for oid, location in rows
    ]


def relocate_tablespaces(datadir: Path, snapshot_dir: Path) -> list[str]:
    """Re-point a copied cluster's pg_tblspc links from the snapshot to the copy's own tablespaces.

    Returns the new link targets. Raises FleetError, before the copy can start, when a link would
    still lead outside ``datadir`` (the copy would write into another cluster's tablespace).
    """
    links = datadir / "pg_tblspc"
    if not links.is_dir():
        return []
    own = datadir.resolve()
    moved = []
    for link in sorted(links.iterdir()):
        if not link.is_symlink():
            continue  # an in-place tablespace: a directory inside the data directory
        target = Path(os.readlink(link))
        inside_snapshot = target.is_relative_to(snapshot_dir)
        new = datadir / target.relative_to(snapshot_dir) if inside_snapshot else target
        if not new.resolve().is_relative_to(own):
            raise FleetError(
                f"tablespace link {link.name} of the temporary copy points to {target}, outside"
                f" {datadir}: refusing to start it (it would write into another cluster's"
                " tablespace); take a new snapshot with `restore-assets fleet snapshot`"
            )
        if inside_snapshot:
            pg.run_server_cmd(["ln", "-sfn", str(new), str(link)])
            moved.append(str(new))
    return moved
