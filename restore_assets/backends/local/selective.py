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
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.backends.local import pg

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

    Symbolic links are copied as links (pg_tblspc is re-pointed afterwards); everything is owned
    by the server user. Returns bytes copied, bytes zero-filled and files zero-filled.
    """
    user = pg.server_user()
    chown = not user.is_current
    copied = skipped = zeroed = 0
    os.mkdir(dst, 0o700)
    if chown:
        os.chown(dst, user.uid, user.gid)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        rel = "" if rel == "." else rel
        target_dir = dst / rel
        match = DB_DIR.match(rel)
        zero_here = bool(match) and int(match.group(1)) in zero_oids
        for name in sorted(dirnames):
            s, d = Path(dirpath) / name, target_dir / name
            if s.is_symlink():
                os.symlink(os.readlink(s), d)
                dirnames.remove(name)  # copied as a link, never followed
            else:
                os.mkdir(d, stat.S_IMODE(s.stat().st_mode))
            if chown:
                os.lchown(d, user.uid, user.gid)
        for name in filenames:
            s, d = Path(dirpath) / name, target_dir / name
            st = s.lstat()
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif zero_here and name not in KEEP_NAMES:
                fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IMODE(st.st_mode))
                try:
                    os.ftruncate(fd, st.st_size)  # a hole: no block is written
                finally:
                    os.close(fd)
                skipped += st.st_size
                zeroed += 1
            else:
                shutil.copyfile(s, d, follow_symlinks=False)
                os.chmod(d, stat.S_IMODE(st.st_mode))
                copied += st.st_size
            if chown:
                os.lchown(d, user.uid, user.gid)
    return {"bytes_copied": copied, "bytes_zero_filled": skipped, "files_zero_filled": zeroed}


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
            from restore_assets.errors import FleetError

            raise FleetError(
                f"database(s) {', '.join(clash)} at the restore point are not the ones the"
                " snapshot's map names (renamed since?): rerun with --full-provision"
            )
        for name in names:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
            )
    return sorted(names)
