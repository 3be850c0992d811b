"""Selective provisioning: a temporary copy of a plain base backup holding one database's data.

Only the restored database's relation files are copied; every other database's files under
``base/<oid>/`` (and ``<tablespace>/PG_*/<oid>/``) are laid down as sparse zero-filled files of the
same size (``os.truncate`` on a new file), as pgBackRest's ``--db-include`` does (small relation
files are left out, below). ``global/``,
``pg_xact``, ``pg_wal`` and everything else outside ``base/`` is copied, and so is each
zero-filled database's ``PG_VERSION``. Unlike pgBackRest, which keeps them, template0, template1
and postgres are zero-filled too when not restored: nothing of the temporary instance connects to
them (the tool's own connections, the promotion wait included, go to the restored database).

Why recovery is safe (PostgreSQL 15; ``full_page_writes`` must be on, at the snapshot and at
provision, else the copy is full): replay starts at the backup's checkpoint, and the first change
to a page after a checkpoint carries a full-page image, which replay writes over the zero-filled
page before applying anything else to it. Relations created or extended after the snapshot are
built from WAL as in a full copy, and every file made keeps its size. Some records carry no image of a
page they touch (VACUUM's all-visible marks, ``REGBUF_NO_IMAGE``): on a zero-filled page replay
cannot apply them and PostgreSQL stops with "WAL contains references to invalid pages" (tested).
So, as pgBackRest advises for ``--db-include``, a selective copy recovers with
``ignore_invalid_pages = on``, and after promotion the server log is read: an invalid page in any
database that was not zero-filled, or of a relation that was not (the schema path, below), fails
the provision (``pgbackrest.check_invalid_pages``).
Zero-filled databases may hold inconsistent pages afterwards: they are never read.

Small relation files are not made at all. A zero-filled relation file (main, fsm or vm fork)
smaller than LEAVE_OUT_BELOW (256 kB) gets no file: if replay writes to it, PostgreSQL creates it
(redo creates a missing relation file) and extends it with zero pages up to the page written, fewer
than 32 of them; a page image is then written over a zero page, and a record without one finds an
invalid page, as above. So the data restored is the same as with every file made (tested both
ways), and a database of thousands of small tenants costs files for its large relations only, not
one per relation (making a file costs 0.03-1 ms of kernel time on ext4 here). Larger files stay
sparse files of their size, so replay never has to write zeros up to a page it rebuilds.

The restored database is always copied whole, so its data at T is the same as from a full copy.
The temporary instance admits only the tool (peer authentication on a private unix socket), the
tool connects only to the restored database, and the instance stays in recovery, paused at the
target (read-only: nothing is written to it after replay). A connection to a zero-filled database
is impossible: its zero-filled relation map fails it ("pg_filenode.map contains invalid data";
tested for each). A query of a left-out relation of another schema fails ("could not open file"),
a zero-filled one reads zero pages (no rows; both tested): the tool never reads another schema's
data, and nothing else can connect.

Other schemas of the restored database (the "schemas" path): the snapshot also records, per
database, relfilenode -> (schema, relkind, relation) of the relations with a file in base/<oid>/
and which schemas depend on another schema's objects (`relation_map`, read before and after the
backup; `<snapshot>.relmap.json`, 0600). Restoring schemas S then zero-fills the main/fsm/vm forks
of other schemas' relations in the map too; the catalogs, init forks, S's relations and anything
not in the map (created or rewritten since) are copied. Replay is as above, and an invalid page of
a relfilenode that was not zero-filled fails the provision. S depending on another schema, or no
map: the database is copied whole ("databases" path).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from restore_assets.backends.local import pg
from restore_assets.core.errors import FleetError

FIRST_NORMAL_OID = 16384  # oids below are initdb's (template1 = 1, template0/postgres = 4/5)
KEEP_NAMES = ("PG_VERSION",)
# a zero-filled relation file smaller than this is not made at all: if replay writes to it,
# PostgreSQL creates it and extends it with zero pages up to the page written, fewer than 32 (making
# a file costs 0.03-1 ms on ext4 here, by directory; 32 pages of replay's extension about as much)
LEAVE_OUT_BELOW = 256 * 1024
# a database directory: base/<oid> or tablespaces/<tsoid>/PG_<version>_<catversion>/<oid>
DB_DIR = re.compile(r"^(?:base|tablespaces/\d+/PG_[^/]+)/(\d+)$")


def database_map(dsn: str) -> dict[str, Any]:
    """The databases (name -> oid) of a cluster and its full_page_writes setting."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        rows = conn.execute("SELECT datname, oid::bigint FROM pg_catalog.pg_database").fetchall()
        fpw = conn.execute("SHOW full_page_writes").fetchone()[0]
    return {"databases": {name: int(oid) for name, oid in rows}, "full_page_writes": fpw}


# Each relation with its own file in base/<db>/: its relfilenode, the schema it belongs to (a TOAST
# table and its index belong to their table's schema, an index to its table's), relkind and name.
RELATIONS = """
SELECT c.relfilenode::bigint, coalesce(own_n.nspname, n.nspname), c.relkind::text,
       n.nspname || '.' || c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_catalog.pg_class own ON own.reltoastrelid = coalesce(i.indrelid, c.oid)
LEFT JOIN pg_catalog.pg_namespace own_n ON own_n.oid = own.relnamespace
WHERE c.relfilenode <> 0 AND pg_catalog.pg_relation_filepath(c.oid) LIKE 'base/%'
"""
# Schemas whose user objects depend (pg_depend) on user objects of another schema: a type, a
# function, a sequence, a table a foreign key or an SQL-standard body references.
DEPENDS = """
SELECT DISTINCT o.schema, r.schema
FROM pg_catalog.pg_depend d,
     LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, 0) o,
     LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0) r
WHERE d.objid >= 16384 AND d.refobjid >= 16384 AND d.refclassid <> 0
  AND o.schema IS NOT NULL AND r.schema IS NOT NULL AND o.schema <> r.schema
  AND r.schema NOT IN ('pg_catalog', 'pg_toast', 'information_schema')
  AND o.schema NOT IN ('pg_catalog', 'pg_toast', 'information_schema')
"""
SYSTEM_SCHEMAS = ("pg_catalog", "pg_toast", "information_schema")
RELATION_FILE = re.compile(r"^(\d+)(?:_(?:fsm|vm))?(?:\.\d+)?$")  # main, fsm, vm forks (not _init)


def relation_map(dsn_of: Callable[[str], str], databases: dict[str, int]) -> dict[str, Any]:
    """Per database oid: relfilenode -> [schema, relkind, relation], and cross-schema dependencies."""
    out: dict[str, Any] = {}
    for name, oid in sorted(databases.items()):
        if name == "template0":
            continue
        try:
            with psycopg.connect(dsn_of(name), connect_timeout=10) as conn:
                rels = conn.execute(RELATIONS).fetchall()
                deps = conn.execute(DEPENDS).fetchall()
        except psycopg.Error:
            continue  # a database we cannot connect to or read: no map (copied whole)
        depends: dict[str, list[str]] = {}
        for schema, other in deps:
            depends.setdefault(schema, []).append(other)
        out[str(oid)] = {
            "relations": {str(f): [s, k, r] for f, s, k, r in rels},
            "depends": {s: sorted(o) for s, o in depends.items()},
        }
    return out


def stable_relations(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Relations with the same file before and after the backup (the others are not in the map,
    so they are copied in full); dependencies of either read."""
    out: dict[str, Any] = {}
    for oid, b in before.items():
        a = after.get(oid)
        if a is None:
            continue
        rels = {f: v for f, v in a["relations"].items() if b["relations"].get(f) == v}
        depends = {
            s: sorted(set(b["depends"].get(s, [])) | set(a["depends"].get(s, [])))
            for s in set(b["depends"]) | set(a["depends"])
        }
        out[oid] = {"relations": rels, "depends": depends}
    return out


def write_relation_map(path: Path, relmap: dict[str, Any]) -> None:
    """The relation map beside the snapshot, readable by its owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(relmap, fh)
    os.chmod(path, 0o600)


def stable_map(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The map of a snapshot: databases with the same oid before and after the backup."""
    dbs = {n: o for n, o in after["databases"].items() if before["databases"].get(n) == o}
    fpw = "on" if before["full_page_writes"] == after["full_page_writes"] == "on" else "off"
    return {"databases": dbs, "full_page_writes": fpw}


@dataclass
class Decision:
    """Which path a provision takes: other schemas and databases zero-filled ("schemas"), other
    databases only ("databases"), or a full copy ("full"); and why not a narrower one."""

    mode: str  # "selective" | "full"
    reason: str = ""
    zero_oids: set[int] = field(default_factory=set)
    zero_names: list[str] = field(default_factory=list)
    # database oid -> relfilenodes of other schemas' relations in base/<oid>/ (zero-filled)
    zero_files: dict[int, set[int]] = field(default_factory=dict)
    zero_schemas: int = 0
    schema_reason: str = ""  # why the other schemas are copied although schemas were given

    @property
    def path(self) -> str:
        """ "schemas", "databases" or "full"."""
        if self.mode != "selective":
            return "full"
        return "schemas" if self.zero_files else "databases"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the plan and the audit record."""
        out: dict[str, Any] = {"mode": self.mode, "path": self.path}
        if self.reason:
            out["reason"] = self.reason
        if self.mode == "selective":
            out["zero_filled_databases"] = sorted(self.zero_names)
        if self.zero_files:
            out["zero_filled_schemas"] = self.zero_schemas
            out["zero_filled_relations"] = sum(len(f) for f in self.zero_files.values())
        if self.schema_reason:
            out["schemas_copied_because"] = self.schema_reason
        return out


def decide(
    snapshot_dir: Path,
    meta_file: Path,
    databases: list[str] | None,
    production_fpw: str | None,
    schemas: list[str] | None = None,
    relmap_file: Path | None = None,
) -> Decision:
    """Selective when the snapshot's maps allow it, else full with the reason."""
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
    # every other database, template0, template1 and postgres included (the tool connects to the
    # restored one only); an oid not in the map (created during the backup) is copied
    zero = {oid for oid in on_disk if oid in by_oid and oid not in keep}
    zero_files, zero_schemas, why = _other_schemas(keep, schemas, relmap_file)
    if not zero and not zero_files:
        return Decision("full", "no other database to leave out" + (f" ({why})" if why else ""))
    return Decision(
        "selective",
        zero_oids=zero,
        zero_names=sorted(by_oid[o] for o in zero),
        zero_files=zero_files,
        zero_schemas=zero_schemas,
        schema_reason=why,
    )


def _other_schemas(
    keep: set[int], schemas: list[str] | None, relmap_file: Path | None
) -> tuple[dict[int, set[int]], int, str]:
    """The relfilenodes of other schemas' relations to zero-fill in the restored database, how
    many schemas they belong to, and the reason when none can be."""
    if not schemas:
        return {}, 0, ""
    if len(keep) != 1 or relmap_file is None:
        return {}, 0, "no relation map for these databases"
    try:
        relmap = json.loads(relmap_file.read_text())
    except (OSError, ValueError):
        return {}, 0, "the snapshot has no relation map (not taken by this version)"
    (oid,) = keep
    db = relmap.get(str(oid))
    if not isinstance(db, dict):
        return {}, 0, "the relation map does not hold the restored database"
    wanted = set(schemas)
    deps = sorted({o for s in wanted for o in db.get("depends", {}).get(s, [])} - wanted)
    if deps:
        return {}, 0, f"the restored schemas depend on schema(s) {', '.join(deps[:5])}"
    files, owners = set(), set()
    for f, (schema, _kind, _name) in db.get("relations", {}).items():
        # anything not in the map (created or rewritten after it was read) is copied
        if schema in wanted or schema in SYSTEM_SCHEMAS or int(f) < FIRST_NORMAL_OID:
            continue
        files.add(int(f))
        owners.add(schema)
    if not files:
        return {}, 0, "no relation of another schema in the map"
    return {oid: files}, len(owners), ""


def _database_oids(snapshot_dir: Path) -> set[int]:
    out: set[int] = set()
    base = snapshot_dir / "base"
    if base.is_dir():
        out |= {int(p.name) for p in base.iterdir() if p.name.isdigit()}
    for ts in (snapshot_dir / "tablespaces").glob("*/PG_*/*"):
        if ts.name.isdigit():
            out.add(int(ts.name))
    return out


def copy_snapshot(
    src: Path,
    dst: Path,
    zero_oids: set[int],
    zero_files: dict[int, set[int]] | None = None,
) -> dict[str, int]:
    """Copy a snapshot directory, zero-filling (sparse) the files of the given databases and, in
    `base/<oid>/`, the main/fsm/vm forks of the given relfilenodes (other schemas' relations).

    Whatever holds nothing zero-filled is copied by `cp -a` as the server user (as a full copy
    is); symbolic links stay links (pg_tblspc is re-pointed afterwards); everything is owned by
    the server user. A zero-filled relation file smaller than LEAVE_OUT_BELOW is not made at all.
    Returns bytes copied, bytes zero-filled, files zero-filled and files left out.
    """
    zero_dirs = {
        os.path.relpath(d, src)
        for d in [*(src / "base").glob("*"), *(src / "tablespaces").glob("*/PG_*/*")]
        if d.name.isdigit() and int(d.name) in zero_oids and not d.is_symlink() and d.is_dir()
    }
    some = {f"base/{oid}": files for oid, files in (zero_files or {}).items() if files}
    walk = zero_dirs | set(some)
    ancestors = {str(Path(z).parents[i]) for z in walk for i in range(len(Path(z).parts) - 1)}
    ancestors |= set(some)
    counts = {
        "bytes_copied": 0,
        "bytes_zero_filled": 0,
        "files_zero_filled": 0,
        "files_left_out": 0,
    }
    _copy_dir(src, dst, "", _Zero(zero_dirs, ancestors, some), counts)
    return counts


@dataclass
class _Zero:
    dirs: set[str]  # whole directories zero-filled
    ancestors: set[str]  # directories walked (they hold something zero-filled)
    files: dict[str, set[int]]  # directory -> relfilenodes whose forks are zero-filled


def _own(path: str | Path) -> None:
    user = pg.server_user()
    if not user.is_current:
        os.lchown(path, user.uid, user.gid)


def _copy_dir(src: Path, dst: Path, rel: str, zero: _Zero, counts: dict[str, int]) -> None:
    os.mkdir(dst, stat.S_IMODE(src.stat().st_mode) if rel else 0o700)
    _own(dst)
    batch = []
    some = zero.files.get(rel, set())
    out = str(dst)
    # plain strings, not Path objects, per entry: a database may hold 100,000s of files
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        r = f"{rel}/{entry.name}" if rel else entry.name
        if r in zero.dirs and entry.is_dir(follow_symlinks=False):
            _zero_fill(Path(entry.path), dst / entry.name, zero, counts)
        elif r in zero.ancestors and entry.is_dir(follow_symlinks=False):
            _copy_dir(Path(entry.path), dst / entry.name, r, zero, counts)
        elif some and _is_fork_of(entry, some):
            _zero_file(entry, f"{out}/{entry.name}", counts)
        else:
            batch.append(entry.path)
            counts["bytes_copied"] += _entry_size(entry)
    for i in range(0, len(batch), 500):
        pg.run_server_cmd(["cp", "-a", "--", *batch[i : i + 500], str(dst)])


def _is_fork_of(entry: os.DirEntry[str], relfilenodes: set[int]) -> bool:
    m = RELATION_FILE.match(entry.name)
    return bool(m) and int(m.group(1)) in relfilenodes and entry.is_file(follow_symlinks=False)


def _zero_fill(src: Path, dst: Path, zero: _Zero, counts: dict[str, int]) -> None:
    """A database directory whose files are to be sparse zero-filled files of the same size."""
    os.mkdir(dst, stat.S_IMODE(src.stat().st_mode))
    _own(dst)
    out, kept = str(dst), []
    for entry in os.scandir(src):
        if not entry.is_file(follow_symlinks=False) or entry.name in KEEP_NAMES:
            kept.append(entry.path)
            counts["bytes_copied"] += _entry_size(entry)
            continue
        _zero_file(entry, f"{out}/{entry.name}", counts)
    if kept:
        pg.run_server_cmd(["cp", "-a", "--", *kept, out])


def _zero_file(entry: os.DirEntry[str], d: str, counts: dict[str, int]) -> None:
    """A sparse file of the same size and mode, holding no block; none for a small relation file."""
    st = entry.stat(follow_symlinks=False)
    if st.st_size < LEAVE_OUT_BELOW and RELATION_FILE.match(entry.name):
        counts["files_left_out"] += 1  # replay makes it if it writes to it (see above)
        return
    fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IMODE(st.st_mode))
    try:
        os.ftruncate(fd, st.st_size)  # a hole: no block is written
    finally:
        os.close(fd)
    _own(d)
    counts["bytes_zero_filled"] += st.st_size
    counts["files_zero_filled"] += 1


def _entry_size(entry: os.DirEntry[str]) -> int:
    """Bytes of a directory entry: a file's size, a directory's files' total, 0 for a link."""
    if entry.is_dir(follow_symlinks=False):
        return _size(Path(entry.path))
    return 0 if entry.is_symlink() else entry.stat(follow_symlinks=False).st_size


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


def check_zero_filled(dsn: str, zero_oids: set[int], databases: list[str]) -> list[str]:
    """At the target: refuse a restored database that is zero-filled; the names of the
    zero-filled ones (a connection to any of them is refused: its relation map is zero)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_catalog.pg_database WHERE oid = ANY(%s)",
            (sorted(zero_oids),),
        ).fetchall()
    names = [n for (n,) in rows]
    clash = sorted(set(names) & set(databases))
    if clash:
        raise FleetError(
            f"database(s) {', '.join(clash)} at the restore point are not the ones the"
            " snapshot's map names (renamed since?): rerun with --full-provision"
        )
    return sorted(names)
