"""Selective provisioning: a temporary copy of a plain base backup holding one database's data.

Only the restored database's relation files are copied; every other user database's files under
``base/<oid>/`` (and ``<tablespace>/PG_*/<oid>/``) are laid down as sparse zero-filled files of the
same size (``os.truncate`` on a new file), as pgBackRest's ``--db-include`` does. ``global/``,
``pg_xact``, ``pg_wal`` and everything else outside ``base/`` is copied, and so are the system
databases (template0, template1, postgres, and any database with an oid below 16384), and each
zero-filled database's ``PG_VERSION`` (pgBackRest keeps exactly these too).

Why recovery is safe (PostgreSQL 15; ``full_page_writes`` must be on, at the snapshot and at
provision, else the copy is full): replay starts at the backup's checkpoint, and the first change
to a page after a checkpoint carries a full-page image, which replay writes over the zero-filled
page before applying anything else to it. Relations created or extended after the snapshot are
built from WAL as in a full copy, and every file keeps its size. Some records carry no image of a
page they touch (VACUUM's all-visible marks, ``REGBUF_NO_IMAGE``): on a zero-filled page replay
cannot apply them and PostgreSQL stops with "WAL contains references to invalid pages" (tested).
So, as pgBackRest advises for ``--db-include``, a selective copy recovers with
``ignore_invalid_pages = on``, and after promotion the server log is read: an invalid page in any
database that was not zero-filled fails the provision (``pgbackrest.check_invalid_pages``).
Zero-filled databases may hold inconsistent pages afterwards: they are never read.

The restored database is always copied whole, so its data at T is the same as from a full copy.
The temporary instance admits only the tool (peer authentication on a private unix socket), the
tool connects only to the restored database, and after promotion every zero-filled database is
marked ``datallowconn = false`` (``ALTER DATABASE ... ALLOW_CONNECTIONS false`` is impossible
during recovery, so it is done right after). A connection to one is impossible either way: its
zero-filled relation map fails it ("pg_filenode.map contains invalid data"; tested).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.backends.local import pg
from restore_assets.core.errors import FleetError

SYSTEM_DATABASES = ("template0", "template1", "postgres")
FIRST_NORMAL_OID = 16384  # oids below are initdb's (template1 = 1, template0/postgres = 4/5)
KEEP_NAMES = ("PG_VERSION",)
# a database directory: base/<oid> or tablespaces/<tsoid>/PG_<version>_<catversion>/<oid>
DB_DIR = re.compile(r"^(?:base|tablespaces/\d+/PG_[^/]+)/(\d+)$")


def database_map(dsn: str) -> dict[str, Any]:
    """The databases (name -> oid) of a cluster and its full_page_writes setting."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        rows = conn.execute("SELECT datname, oid::bigint FROM pg_catalog.pg_database").fetchall()
        fpw = conn.execute("SHOW full_page_writes").fetchone()[0]
    return {"databases": {name: int(oid) for name, oid in rows}, "full_page_writes": fpw}


def stable_map(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The map of a snapshot: databases with the same oid before and after the backup."""
    dbs = {n: o for n, o in after["databases"].items() if before["databases"].get(n) == o}
    fpw = "on" if before["full_page_writes"] == after["full_page_writes"] == "on" else "off"
    return {"databases": dbs, "full_page_writes": fpw}


@dataclass
class Decision:
    """Which path a provision takes: selective (with the oids to zero-fill) or full (and why)."""

    mode: str  # "selective" | "full"
    reason: str = ""
    zero_oids: set[int] = field(default_factory=set)
    zero_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the plan and the audit record."""
        out: dict[str, Any] = {"mode": self.mode}
        if self.reason:
            out["reason"] = self.reason
        if self.mode == "selective":
            out["zero_filled_databases"] = sorted(self.zero_names)
        return out


def decide(
    snapshot_dir: Path, meta_file: Path, databases: list[str] | None, production_fpw: str | None
) -> Decision:
    """Selective when the snapshot's database map allows it, else full with the reason."""
    if not databases:
        return Decision("full", "full provisioning requested")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        meta = {}
    dbmap = meta.get("databases")
    if not isinstance(dbmap, dict) or not dbmap:
        return Decision("full", "the snapshot has no database map (not taken by this version)")
    if meta.get("full_page_writes") != "on" or production_fpw not in (None, "on"):
        return Decision("full", "full_page_writes is not on: replay could not rebuild zero pages")
    missing = [d for d in databases if d not in dbmap]
    if missing:
        return Decision("full", f"database(s) {', '.join(missing)} not in the snapshot's map")
    keep = {int(dbmap[d]) for d in databases}
    on_disk = _database_oids(snapshot_dir)
    if not keep <= on_disk:
        return Decision("full", "the snapshot lacks the restored database's directory")
    by_oid = {int(o): n for n, o in dbmap.items()}
    zero = {
        oid
        for oid in on_disk
        if oid in by_oid  # an oid not in the map (created during the backup) is copied
        and oid not in keep
        and oid >= FIRST_NORMAL_OID
        and by_oid[oid] not in SYSTEM_DATABASES
    }
    if not zero:
        return Decision("full", "no other user database to leave out")
    return Decision("selective", zero_oids=zero, zero_names=[by_oid[o] for o in zero])


def _database_oids(snapshot_dir: Path) -> set[int]:
    out: set[int] = set()
    base = snapshot_dir / "base"
    if base.is_dir():
        out |= {int(p.name) for p in base.iterdir() if p.name.isdigit()}
    for ts in (snapshot_dir / "tablespaces").glob("*/PG_*/*"):
        if ts.name.isdigit():
            out.add(int(ts.name))
    return out


def copy_snapshot(src: Path, dst: Path, zero_oids: set[int]) -> dict[str, int]:
    """Copy a snapshot directory, zero-filling (sparse) the files of the given databases.

    Whatever holds no zero-filled database is copied by `cp -a` as the server user (as a full
    copy is); symbolic links stay links (pg_tblspc is re-pointed afterwards); everything is owned
    by the server user. Returns bytes copied, bytes zero-filled and files zero-filled.
    """
    zero_dirs = {
        os.path.relpath(d, src)
        for d in [*(src / "base").glob("*"), *(src / "tablespaces").glob("*/PG_*/*")]
        if d.name.isdigit() and int(d.name) in zero_oids and not d.is_symlink() and d.is_dir()
    }
    ancestors = {str(Path(z).parents[i]) for z in zero_dirs for i in range(len(Path(z).parts) - 1)}
    counts = {"bytes_copied": 0, "bytes_zero_filled": 0, "files_zero_filled": 0}
    _copy_dir(src, dst, "", zero_dirs, ancestors, counts)
    return counts


def _own(path: Path) -> None:
    user = pg.server_user()
    if not user.is_current:
        os.lchown(path, user.uid, user.gid)


def _copy_dir(
    src: Path, dst: Path, rel: str, zero: set[str], ancestors: set[str], counts: dict[str, int]
) -> None:
    os.mkdir(dst, stat.S_IMODE(src.stat().st_mode) if rel else 0o700)
    _own(dst)
    batch = []
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        r = os.path.join(rel, entry.name) if rel else entry.name
        if entry.is_dir(follow_symlinks=False) and r in zero:
            _zero_fill(Path(entry.path), dst / entry.name, counts)
        elif entry.is_dir(follow_symlinks=False) and r in ancestors:
            _copy_dir(Path(entry.path), dst / entry.name, r, zero, ancestors, counts)
        else:
            batch.append(entry.path)
            counts["bytes_copied"] += _size(Path(entry.path))
    if batch:
        pg.run_server_cmd(["cp", "-a", "--", *batch, str(dst)])


def _zero_fill(src: Path, dst: Path, counts: dict[str, int]) -> None:
    """A database directory whose files are sparse zero-filled files of the same size."""
    os.mkdir(dst, stat.S_IMODE(src.stat().st_mode))
    _own(dst)
    for entry in os.scandir(src):
        st = entry.stat(follow_symlinks=False)
        d = dst / entry.name
        if not stat.S_ISREG(st.st_mode) or entry.name in KEEP_NAMES:
            pg.run_server_cmd(["cp", "-a", "--", entry.path, str(dst)])
            counts["bytes_copied"] += _size(Path(entry.path))
            continue
        fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IMODE(st.st_mode))
        try:
            os.ftruncate(fd, st.st_size)  # a hole: no block is written
        finally:
            os.close(fd)
        _own(d)
        counts["bytes_zero_filled"] += st.st_size
        counts["files_zero_filled"] += 1


def _size(path: Path) -> int:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0  # never a link's length
    return total


def close_zero_filled(dsn: str, zero_oids: set[int], databases: list[str]) -> list[str]:
    """After promotion: refuse a restored database that is zero-filled, and bar connections to
    every zero-filled one (datallowconn = false). Returns the names barred."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT datname, oid::bigint FROM pg_catalog.pg_database WHERE oid = ANY(%s)",
            (sorted(zero_oids),),
        ).fetchall()
        names = [n for n, _ in rows]
        clash = sorted(set(names) & set(databases))
        if clash:
            raise FleetError(
                f"database(s) {', '.join(clash)} at the restore point are not the ones the"
                " snapshot's map names (renamed since?): rerun with --full-provision"
            )
        for name in names:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
            )
    return sorted(names)
