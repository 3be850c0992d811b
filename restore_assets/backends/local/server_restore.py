"""Instance restore on the local fleet: the production cluster's data directory is the "instance".

Set aside = stop production and rename `<root>/production/data` to `data.old-<suffix>`; restore =
copy the base backup into its place with production's current configuration files, recover to the
consistent point (`recovery_target = 'immediate'`, on the snapshot's timeline) and promote (a new
timeline starts; archiving stays on), on the SAME port so the DSN is unchanged. A rollback stops and
removes the half-restored directory, moves the WAL of the abandoned timeline out of the archive (so
that later point-in-time restores, which follow the latest timeline, never take it), renames the
original back and starts it on the same port.

On a managed fleet backed up by its own pgBackRest stanza (`fleet up --pgbackrest`) the restore is
`pgbackrest restore --delta`: the set-aside directory is never written; the new data directory is
seeded with a copy of it (without its WAL), and --delta checksums that copy and rewrites only what
differs from the backup, then recovery runs to the backup's consistent point or to a point in time.
WAL archiving of the restored server is held (archive_command empty: PostgreSQL keeps the segments)
until it is verified, so a rollback before that leaves nothing of the abandoned timeline in the
repository; the tool never writes to the repository except through pgBackRest's commands, so after
a rollback that comes later the original is moved onto a new timeline above the abandoned one
(later restores follow the latest timeline: the original's).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from restore_assets.backends.local import pg
from restore_assets.backends.local.archive import base_for
from restore_assets.backends.local.fleet import LocalFleet
from restore_assets.backends.local.pgbackrest import stop_restore
from restore_assets.backends.protocols import RestoreTarget
from restore_assets.core.errors import FleetError, InvalidRequest
from restore_assets.core.server_restore.model import Described
from restore_assets.core.server_restore.protocols import Record

log = logging.getLogger("restore_assets.backends.local.server_restore")

IDENTIFIER = "production"
CONFIG_FILES = (
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
    "restore_assets.conf",
)
ASIDE_KIND = "local-set-aside"
RESTORED_KIND = "local-restored"
SNAPSHOT_KIND = "local-snapshot"
PGBACKREST_BACKUP_KIND = "pgbackrest-backup"
PGBACKREST_INSTANCE_RESTORE = (
    "a server restore is not available on a pgBackRest fleet that adopts a server the tool does"
    " not manage (it replaces the data directory; a managed fleet, `fleet up --pgbackrest`,"
    " restores by pgbackrest restore --delta): restore schemas, or run pgbackrest restore yourself"
)
PITR_NEEDS_PGBACKREST = (
    "a point-in-time server restore needs a fleet backed up by pgBackRest (`fleet up --pgbackrest`):"
    " on this fleet restore a snapshot by its id"
)
# what the seed copy of the set-aside directory leaves out: its WAL (pgBackRest restores none and
# --delta would delete it) and the files of a server that ran
SEED_SKIP = ("pg_wal", "postmaster.pid", "postmaster.opts")
LOCAL_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
FINAL_BACKUPS = "final-backups"
RECOVERY_MARK = "# restore-assets: instance restore recovery settings (removed after promotion)\n"
HOLD_MARK = "# restore-assets: WAL archiving held until the restored server is verified\n"


def parse_conf(text: str) -> dict[str, str]:
    """`name = value` lines of a PostgreSQL configuration file (comments and blanks ignored)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _mask_settings(settings: dict[str, str]) -> dict[str, str]:
    return {
        k: ("***" if any(s in k for s in ("password", "passphrase", "conninfo")) else v)
        for k, v in settings.items()
    }


def walfile_name(timeline: int, lsn: str, segment_size: int) -> str:
    """The WAL segment file name holding an LSN ('0/2000100') on a timeline."""
    hi, lo = (int(x, 16) for x in lsn.split("/"))
    segno = ((hi << 32) | lo) // segment_size
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


class LocalInstanceBackend:
    """The managed production cluster of a LocalFleet, restored in place from its base backups."""

    name = "local"

    def __init__(
        self,
        fleet: LocalFleet,
        start_timeout: float = 120,
        post_restore_snapshot: bool = True,
        final_backup: bool = True,
    ) -> None:
        self.fleet = fleet
        self.start_timeout = start_timeout
        self.post_restore_snapshot = post_restore_snapshot
        self.final_backup = final_backup

    # ------------------------------------------------------------------ naming and checks
    def resolve_identifier(self, identifier: str | None) -> str:
        """The local fleet has one server, 'production'."""
        if identifier not in (None, "", IDENTIFIER):
            raise InvalidRequest(
                f"unknown identifier {identifier!r}: the local fleet has one server, {IDENTIFIER!r}"
            )
        return IDENTIFIER

    def _production(self) -> pg.Cluster:
        if not self.fleet.exists():
            raise InvalidRequest(
                f"no fleet under {self.fleet.root}: run `restore-assets fleet up --root {self.fleet.root}`"
            )
        if self.fleet.config().mode != "managed":
            raise InvalidRequest(
                "an instance restore replaces the server's data directory: it needs a managed fleet"
                " (this one adopts a cluster the tool does not manage)"
            )
        return self.fleet.production_cluster()

    @property
    def aside_root(self) -> Path:
        """Where WAL of abandoned or superseded timelines is moved (never deleted)."""
        return self.fleet.manifest.record(self.fleet.data_root / "archive-aside")

    @property
    def final_backups(self) -> Path:
        """Where the final backups of set-aside (and rolled-back) data directories are kept."""
        return self.fleet.data_root / FINAL_BACKUPS

    def check_names(self, identifier: str, suffix: str) -> dict[str, Any]:
        """The set-aside directory `data.old-<suffix>` beside the production data directory, and
        the final backup taken of it before it is removed (unless final_backup is off)."""
        datadir = self.fleet.data_root / "production" / "data"
        final = f"{IDENTIFIER}-final-{suffix}" if self.final_backup else None
        return {
            "identifier": identifier,
            "renamed": f"data.old-{suffix}",
            "renamed_dir": str(datadir.parent / f"data.old-{suffix}"),
            "datadir": str(datadir),
            "suffix": suffix,
            "final_snapshot": final,
            "rollback_snapshot": f"{IDENTIFIER}-rollback-{suffix}",
        }

    def _pgbackrest_stanza(self) -> str | None:
        return self.fleet.config().pgbackrest_stanza if self.fleet.exists() else None

    def _describe_pgbackrest(self, stanza: str) -> Described:
        """An adopted server backed up by a pgBackRest stanza: it can be snapshotted only."""
        from restore_assets.backends.local.fleet import mask_dsn

        dsn = self.fleet.production_dsn()
        details: dict[str, Any] = {"running": False, "pgbackrest": True, "snapshot_only": True}
        version = None
        try:
            with psycopg.connect(dsn, connect_timeout=10) as conn:
                num = int(conn.execute("SHOW server_version_num").fetchone()[0])
                version = str(num // 10000)
                details["running"] = True
        except psycopg.Error:
            pass
        config = {"dsn": mask_dsn(dsn), "pg_version": version, "pgbackrest_stanza": stanza}
        return Described(IDENTIFIER, "pgbackrest-stanza", config, [], details)

    def describe(self, identifier: str) -> Described:
        """Port, DSN, data directory and configuration files of the production cluster."""
        stanza = self._pgbackrest_stanza()
        if stanza and self.fleet.config().mode != "managed":
            return self._describe_pgbackrest(stanza)
        cluster = self._production()
        if not cluster.datadir.is_dir():
            raise InvalidRequest(f"production data directory missing: {cluster.datadir}")
        settings: dict[str, str] = {}
        for name in ("postgresql.conf", "restore_assets.conf", "postgresql.auto.conf"):
            path = cluster.datadir / name
            if path.exists():
                settings.update(parse_conf(path.read_text(errors="replace")))
        running = cluster.is_running()
        details: dict[str, Any] = {"running": running}
        if running:
            with psycopg.connect(cluster.dsn(), connect_timeout=10) as conn:
                row = conn.execute(
                    "SELECT system_identifier::text FROM pg_catalog.pg_control_system()"
                ).fetchone()
                details["system_identifier"] = row[0]
                details["timeline"] = conn.execute(
                    "SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()"
                ).fetchone()[0]
        config = {
            "port": cluster.port,
            "dsn": cluster.dsn(),
            "datadir": str(cluster.datadir),
            "pg_version": (cluster.datadir / "PG_VERSION").read_text().strip(),
            "config_files": [n for n in CONFIG_FILES if (cluster.datadir / n).exists()],
            "settings": _mask_settings(settings),
            "archive_dir": str(self.fleet.archive_dir),
        }
        if stanza:  # the fleet's own stanza: restored by pgbackrest restore --delta
            config["pgbackrest_stanza"] = stanza
            config.pop("archive_dir")
            details["pgbackrest"] = True
        return Described(IDENTIFIER, "local-cluster", config, [], details)

    def _snapshot_dict(self, snap_id: str) -> dict[str, Any]:
        snap = self.fleet.get_snapshot(snap_id)
        path = self.fleet.backup_dir / snap.id
        info = snap.to_dict()
        info["path"] = str(path)
        info["pg_version"] = (path / "PG_VERSION").read_text().strip()
        try:
            ranges = json.loads((path / "backup_manifest").read_text())["WAL-Ranges"]
            info["timeline"] = int(ranges[-1]["Timeline"])
            info["end_lsn"] = ranges[-1]["End-LSN"]
        except (OSError, KeyError, IndexError, ValueError):
            info["timeline"], info["end_lsn"] = None, None
        return info

    def check_snapshot(self, source: Described, snapshot_id: str) -> dict[str, Any]:
        """A base backup (or pgBackRest backup) of this fleet, of the same PostgreSQL major version."""
        if source.details.get("snapshot_only"):
            raise InvalidRequest(PGBACKREST_INSTANCE_RESTORE)
        if source.config.get("pgbackrest_stanza"):
            return self._pgbackrest_backup(self.fleet.get_snapshot(snapshot_id), source)
        info = self._snapshot_dict(snapshot_id)
        if info["pg_version"] != source.config["pg_version"]:
            raise InvalidRequest(
                f"snapshot {snapshot_id} is of PostgreSQL {info['pg_version']}, production runs"
                f" {source.config['pg_version']}: restore it into a temporary cluster instead"
            )
        return info

    def _pgbackrest_backup(self, snap: Any, source: Described) -> dict[str, Any]:
        """A pgBackRest backup (by label) of the stanza's current database, as a restore's base."""
        source_repo = self.fleet.pgbackrest
        assert source_repo is not None
        info = source_repo.repo.info()
        backup = next(b for b in info.get("backup", []) if b.get("label") == snap.id)
        db_id = backup.get("database", {}).get("id")
        versions = {d.get("id"): str(d.get("version")) for d in info.get("db", [])}
        current = max(versions, default=None)
        if db_id != current or versions.get(db_id) != source.config["pg_version"]:
            raise InvalidRequest(
                f"backup {snap.id} is of PostgreSQL {versions.get(db_id)} (stanza database"
                f" {db_id}), production runs {source.config['pg_version']}: restore it into a"
                " temporary cluster instead"
            )
        return {**snap.to_dict(), "pg_version": versions[db_id], "label": snap.id}

    def check_restore_time(self, source: Described, restore_time: str) -> dict[str, Any]:
        """A point in time inside the restore window of a pgBackRest fleet; its base backup."""
        if source.details.get("snapshot_only"):
            raise InvalidRequest(PGBACKREST_INSTANCE_RESTORE)
        if not source.config.get("pgbackrest_stanza"):
            raise InvalidRequest(PITR_NEEDS_PGBACKREST)
        t = datetime.fromisoformat(restore_time)
        self.fleet.check_target(RestoreTarget(restore_time=t))  # window, future, no backup
        base = base_for(t, self.fleet.snapshots())  # the base the fleet's restores take
        return {**self._pgbackrest_backup(base, source), "restore_time": t.isoformat()}

    def check_free(self, source: Described, names: dict[str, Any]) -> list[str]:
        """The set-aside directory must not exist; a new snapshot's name must be free."""
        warnings: list[str] = []
        task = names.get("task")
        if names.get("export_s3"):
            raise InvalidRequest("export to S3 needs the aws backend (--backend aws)")
        if source.details.get("pgbackrest"):
            if task != "create_snapshot_only" and source.details.get("snapshot_only"):
                raise InvalidRequest(PGBACKREST_INSTANCE_RESTORE)
            if names.get("snapshot_identifier"):
                raise InvalidRequest(
                    "pgBackRest names its backups by label: leave the snapshot identifier empty"
                )
        if task != "create_snapshot_only" and source.config.get("pgbackrest_stanza"):
            self._check_seedable(Path(names["datadir"]))
        if task != "create_snapshot_only" and Path(names["renamed_dir"]).exists():
            raise InvalidRequest(
                f"{names['renamed_dir']} already exists: choose another --suffix or remove it"
            )
        for key in ("final_snapshot", "rollback_snapshot"):
            if task != "create_snapshot_only" and names.get(key):
                if (self.final_backups / names[key]).exists():
                    raise InvalidRequest(
                        f"final backup {self.final_backups / names[key]} already exists:"
                        " choose another --suffix"
                    )
        if task != "db_restore" and not source.details.get("running"):
            raise InvalidRequest("production is not running: start it (`fleet up`) to snapshot it")
        wanted = names.get("snapshot_identifier")
        if wanted:
            if not LOCAL_SNAPSHOT_NAME.match(wanted):
                raise InvalidRequest(f"snapshot name {wanted!r} is not a valid directory name")
            if (self.fleet.backup_dir / wanted).exists():
                raise InvalidRequest(f"snapshot {wanted!r} already exists")
        if task != "create_snapshot_only" and not source.details.get("running"):
            warnings.append("production is not running: it is restored and started")
        return warnings

    # ------------------------------------------------------------------ snapshots
    def create_snapshot(
        self, source: Described, snapshot_identifier: str | None, record: Record, timeout: float
    ) -> dict[str, Any]:
        """A base backup of production (pg_basebackup; the fleet limits it to 600 s).

        On a pgBackRest fleet: `pgbackrest backup` of the fleet's type (default incr).
        """
        snap = self.fleet.snapshot()
        stanza = self._pgbackrest_stanza()
        if stanza:
            info = {**snap.to_dict(), "status": "available", "stanza": stanza}
            # a backup in the stanza's repository: pgBackRest's retention owns it, never the tool
            record(PGBACKREST_BACKUP_KIND, snap.id, {"stanza": stanza, "type": snap.kind})
            return info
        snap_id = snap.id
        if snapshot_identifier and snapshot_identifier != snap.id:
            backups = self.fleet.backup_dir
            # the fleet manifest follows the rename, so `fleet delete-snapshot` still owns it
            self.fleet.manifest.rename(backups / snap.id, backups / snapshot_identifier)
            meta_old = backups / f"{snap.id}.json"
            if meta_old.exists():
                meta = json.loads(meta_old.read_text())
                meta["id"] = snapshot_identifier
                meta_new = self.fleet.manifest.record(backups / f"{snapshot_identifier}.json")
                meta_new.write_text(json.dumps(meta))
                self.fleet.manifest.remove(meta_old)
            snap_id = snapshot_identifier
        info = self._snapshot_dict(snap_id)
        info["status"] = "available"
        record(SNAPSHOT_KIND, snap_id, {"path": info["path"]})
        return info

    def export_snapshot(self, snapshot: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Not available locally: an S3 export needs the aws backend."""
        raise InvalidRequest("export to S3 needs the aws backend (--backend aws)")

    # ------------------------------------------------------------------ restore in place
    def _archive_names(self, pattern: str) -> list[str]:
        archive = self.fleet.archive_dir
        return sorted(p.name for p in archive.glob(pattern)) if archive.is_dir() else []

    def set_aside(self, source: Described, names: dict[str, Any], record: Record) -> dict[str, Any]:
        """Archive the last WAL, stop production, rename its data directory to data.old-<suffix>."""
        cluster = self._production()
        aside = Path(names["renamed_dir"])
        if aside.exists():
            raise FleetError(f"{aside} already exists")
        running = cluster.is_running()
        details = {
            "datadir": str(cluster.datadir),
            "aside": str(aside),
            "port": cluster.port,
            "was_running": running,
            "history_before": self._archive_names("*.history"),
            "partial_before": self._archive_names("*.partial"),
        }
        record(ASIDE_KIND, IDENTIFIER, details)
        # recorded in the fleet manifest before the rename: the only set-aside directory (and log)
        # a later delete_old or rollback may remove
        self.fleet.manifest.record(aside)
        self.fleet.manifest.record(aside.parent / f"{aside.name}.log")
        if running:
            self.fleet.switch_wal()
            cluster.stop(mode="fast")
            if cluster.is_running():
                raise FleetError(f"production on port {cluster.port} did not stop")
        os.rename(cluster.datadir, aside)
        if cluster.logfile.exists():
            os.rename(cluster.logfile, aside.parent / f"{aside.name}.log")
        return {"aside": str(aside), "stopped": running}

    def _clear_partial_conflict(
        self, snapshot: dict[str, Any], datadir: Path, suffix: str
    ) -> str | None:
        """Move aside an archived `.partial` the promotion would archive again under the same name."""
        if not snapshot.get("end_lsn") or not snapshot.get("timeline"):
            return None
        out = pg.run_server_cmd([pg.pg_bin("pg_controldata"), "-D", str(datadir)]).stdout
        found = re.search(r"Bytes per WAL segment:\s+(\d+)", out)
        seg_size = int(found.group(1)) if found else 16 * 1024 * 1024
        name = walfile_name(int(snapshot["timeline"]), snapshot["end_lsn"], seg_size) + ".partial"
        path = self.fleet.archive_dir / name
        if not path.exists():
            return None
        target = self.aside_root / f"superseded-{suffix}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target / name)
        return name

    def restore(
        self, source: Described, snapshot: dict[str, Any], names: dict[str, Any], record: Record
    ) -> dict[str, Any]:
        """Copy the base backup in place, keep production's configuration, recover, promote.

        On a pgBackRest fleet: `pgbackrest restore --delta` into a copy of the set-aside directory.
        """
        if source.config.get("pgbackrest_stanza"):
            return self._restore_pgbackrest(source, snapshot, names, record)
        port = int(source.config["port"])
        datadir = Path(names["datadir"])
        aside = Path(names["renamed_dir"])
        if datadir.exists():
            raise FleetError(f"{datadir} exists: the original was not set aside")
        record(RESTORED_KIND, IDENTIFIER, {"datadir": str(datadir), "snapshot": snapshot["id"]})
        self.fleet.manifest.record(datadir)  # a rollback removes the restored directory only
        pg.run_server_cmd(["cp", "-a", snapshot["path"], str(datadir)])
        for name in CONFIG_FILES:
            if (aside / name).exists():
                pg.run_server_cmd(["cp", "-p", str(aside / name), str(datadir / name)])
        cluster = pg.Cluster(datadir, port)
        for name in ("postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal"):
            (datadir / name).unlink(missing_ok=True)
        moved = self._clear_partial_conflict(snapshot, datadir, names["suffix"])
        restore_cmd = f"cp {pg.shell_arg(self.fleet.archive_dir)}/%f %p"
        recovery = {
            "restore_command": pg.quote_setting(restore_cmd),
            "recovery_target": "'immediate'",
            "recovery_target_action": "'promote'",
            # the snapshot's own timeline: 'latest' could be a timeline that forked before it
            "recovery_target_timeline": "'current'",
        }
        timeline = self._recover_and_promote(cluster, recovery)
        return {
            "port": port,
            "timeline": timeline,
            "snapshot": snapshot["id"],
            "moved_partial": moved,
        }

    @staticmethod
    def _check_seedable(datadir: Path) -> None:
        """Refuse a data directory whose WAL or tablespaces live elsewhere: a copy of it would
        point at the original's own directories, and --delta would write into them."""
        if (datadir / "pg_wal").is_symlink():
            raise InvalidRequest(
                f"{datadir}/pg_wal is a link to another directory: a pgBackRest server restore"
                " cannot keep the original untouched; restore schemas instead"
            )
        tblspc = datadir / "pg_tblspc"
        if tblspc.is_dir() and any(tblspc.iterdir()):
            raise InvalidRequest(
                "production has tablespaces: a pgBackRest server restore would write into their"
                " directories, which the set-aside original still uses; restore schemas instead"
            )

    def _seed(self, aside: Path, datadir: Path) -> None:
        """A new data directory holding a copy of the set-aside one (no WAL), for --delta."""
        self._check_seedable(aside)
        os.mkdir(datadir, 0o700)
        pg.give_to_server_user(datadir)
        entries = sorted(str(p) for p in aside.iterdir() if p.name not in SEED_SKIP)
        if entries:
            pg.run_server_cmd(["cp", "-a", *entries, f"{datadir}/"], timeout=24 * 3600)
        pg.run_server_cmd(["mkdir", "-m", "700", "-p", str(datadir / "pg_wal" / "archive_status")])

    def _restore_pgbackrest(
        self, source: Described, snapshot: dict[str, Any], names: dict[str, Any], record: Record
    ) -> dict[str, Any]:
        """Seed a copy of the set-aside directory, `pgbackrest restore --delta` into it, recover
        to the backup's consistent point or to the point in time, promote; archiving held."""
        port = int(source.config["port"])
        datadir = Path(names["datadir"])
        aside = Path(names["renamed_dir"])
        label = snapshot["id"]
        restore_time = snapshot.get("restore_time")
        source_repo = self.fleet.pgbackrest
        if source_repo is None:
            raise FleetError("this fleet has no pgBackRest stanza any more")
        if os.path.lexists(datadir):
            raise FleetError(f"{datadir} exists: the original was not set aside")
        tablespaces = datadir.parent / f"tablespaces-{names['suffix']}"
        record(
            RESTORED_KIND,
            IDENTIFIER,
            {"datadir": str(datadir), "snapshot": label, "by": "pgbackrest restore --delta"},
        )
        # a rollback removes only these: the seeded directory, and what pgBackRest would put
        # for tablespaces of the backup (refused below)
        self.fleet.manifest.record(datadir)
        self.fleet.manifest.record(tablespaces)
        t0 = time.monotonic()
        self._seed(aside, datadir)
        seeded = time.monotonic()
        if restore_time:
            target = RestoreTarget(restore_time=datetime.fromisoformat(restore_time))
        else:
            target = RestoreTarget(snapshot_id=label)
        source_repo.repo.restore(
            datadir, label, target, None, source_repo.process_max, tablespaces, delta=True
        )
        delta = time.monotonic()
        if os.path.lexists(tablespaces):
            raise FleetError(
                f"backup {label} holds tablespaces: not restorable in place (restore schemas)"
            )
        for name in CONFIG_FILES:
            (datadir / name).unlink(missing_ok=True)  # pgBackRest's recovery settings included
            if (aside / name).exists():
                pg.run_server_cmd(["cp", "-p", str(aside / name), str(datadir / name)])
        for name in ("postmaster.pid", "postmaster.opts", "standby.signal"):
            (datadir / name).unlink(missing_ok=True)
        cluster = pg.Cluster(datadir, port)
        recovery = {
            "restore_command": pg.quote_setting(source_repo.repo.restore_command(datadir)),
            "recovery_target_action": "'promote'",
        }
        if restore_time:
            stamp = target.restore_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
            recovery["recovery_target_time"] = f"'{stamp}'"
            recovery["recovery_target_timeline"] = "'latest'"  # production's own lineage
        else:
            recovery["recovery_target"] = "'immediate'"
            recovery["recovery_target_timeline"] = "'current'"  # the backup's own timeline
        # PostgreSQL keeps the WAL (.ready) while archive_command is empty: nothing of the new
        # timeline reaches the repository before wait_restored has verified the server
        timeline = self._recover_and_promote(
            cluster, recovery, HOLD_MARK + "archive_command = ''\n"
        )
        recovered = time.monotonic()
        return {
            "port": port,
            "timeline": timeline,
            "snapshot": label,
            "restore_time": restore_time,
            "by": "pgbackrest restore --delta",
            "archiving": "held until verified",
            "timings_s": {
                "seed_copy": round(seeded - t0, 3),
                "pgbackrest_delta": round(delta - seeded, 3),
                "recovery": round(recovered - delta, 3),
            },
        }

    def _release_archiving(self, cluster: pg.Cluster) -> bool:
        """Drop the archiving hold of a verified restored server; True when there was one."""
        conf = cluster.datadir / "restore_assets.conf"
        text = conf.read_text() if conf.exists() else ""
        if HOLD_MARK not in text:
            return False
        cluster.write_file("restore_assets.conf", text.split(HOLD_MARK, 1)[0].rstrip("\n") + "\n")
        with psycopg.connect(cluster.dsn(), autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT pg_catalog.pg_reload_conf()")
        return True

    def _recover_and_promote(
        self, cluster: pg.Cluster, recovery: dict[str, str], keep: str = ""
    ) -> int:
        """Start a stopped data directory in archive recovery with these settings (a marked block
        of restore_assets.conf), wait for its promotion; return the new timeline. Afterwards
        restore_assets.conf is what it was, plus `keep` (settings that stay for a while)."""
        conf = cluster.datadir / "restore_assets.conf"
        original_conf = conf.read_text() if conf.exists() else ""
        block = RECOVERY_MARK + "".join(f"{k} = {v}\n" for k, v in recovery.items())
        cluster.write_file("restore_assets.conf", original_conf + "\n" + block + keep)
        cluster.write_file("recovery.signal", "")
        cluster.start(timeout=self.start_timeout)
        timeline = self._wait_promoted(cluster, self.start_timeout)
        cluster.write_file("restore_assets.conf", original_conf + ("\n" + keep if keep else ""))
        with psycopg.connect(cluster.dsn(), autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT pg_catalog.pg_reload_conf()")
        return timeline

    def _wait_promoted(self, cluster: pg.Cluster, timeout: float) -> int:
        """Wait until the cluster left recovery; return its new timeline."""
        cluster.wait_promoted(timeout, what="restored cluster")
        with psycopg.connect(cluster.dsn(), connect_timeout=10) as conn:
            wal = conn.execute(
                "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())"
            ).fetchone()[0]
        return int(wal[:8], 16)

    def wait_restored(
        self, source: Described, names: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Verify the restored production: same port, same cluster, every database, WAL archived."""
        port = int(source.config["port"])
        cluster = pg.Cluster(Path(names["datadir"]), port)
        self._wait_promoted(cluster, min(timeout, self.start_timeout))
        with psycopg.connect(cluster.dsn(), connect_timeout=10) as conn:
            sysid = conn.execute(
                "SELECT system_identifier::text FROM pg_catalog.pg_control_system()"
            ).fetchone()[0]
            dbs = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY 1"
                )
            ]
        expected = source.details.get("system_identifier")
        if expected and sysid != expected:
            raise FleetError(
                f"restored cluster has system identifier {sysid}, production had {expected}:"
                " the snapshot is not of this fleet"
            )
        for db in dbs:
            with psycopg.connect(cluster.dsn(db), connect_timeout=10) as conn:
                conn.execute("SELECT 1")
        out: dict[str, Any] = {"port": port, "dsn": cluster.dsn(), "databases": dbs}
        if self._release_archiving(cluster):
            # verified: the held WAL of the new timeline (its history file first) goes to the
            # repository now, through archive_command (pgbackrest archive-push)
            out["archiving"] = "released"
        self.fleet.switch_wal()  # proves archiving works on the new timeline
        if self.post_restore_snapshot:
            # a base backup (pgbackrest backup on a pgBackRest fleet) on the new timeline: later
            # point-in-time restores start from it
            out["post_restore_snapshot"] = self.fleet.snapshot().id
        return out

    @staticmethod
    def _control_state(datadir: Path) -> str | None:
        """pg_controldata's "Database cluster state" of a data directory (None if unreadable)."""
        if not (datadir / "global" / "pg_control").exists():
            return None
        proc = pg.run_server_cmd([pg.pg_bin("pg_controldata"), "-D", str(datadir)], check=False)
        found = re.search(r"Database cluster state:\s+(.+)", proc.stdout or "")
        return found.group(1).strip() if found else None

    def _final_backup(self, datadir: Path, name: str, names: dict[str, Any]) -> dict[str, Any]:
        """A copy of a STOPPED data directory into final-backups/<name> (the local twin of an RDS
        final snapshot). A copy, not pg_basebackup: the set-aside cluster is stopped, and starting
        it would archive WAL of its old timeline into the fleet's archive."""
        if pg.Cluster(datadir, 0).is_running():
            raise FleetError(f"{datadir} has a running server: not copied, not removed")
        root = self.final_backups
        if not root.exists():
            self.fleet.manifest.record(root)
            pg.give_to_server_user(root)
            os.chmod(root, 0o700)
        target = root / name
        if os.path.lexists(target):
            raise FleetError(f"final backup {target} already exists: nothing removed")
        self.fleet.manifest.record(target, keep=True)
        pg.run_server_cmd(["cp", "-a", str(datadir), str(target)])
        meta = {
            "name": name,
            "path": str(target),
            "copied_from": str(datadir),
            "restore_id": names.get("restore_id"),
            "taken_at": datetime.now(UTC).isoformat(),
            "cluster_state": self._control_state(target),
            "pg_version": (target / "PG_VERSION").read_text().strip(),
            "how_to_use": f"pg_ctl -D {target} -o '-p <free port> -c archive_mode=off' start",
        }
        meta_path = self.fleet.manifest.record(root / f"{name}.json", keep=True)
        meta_path.write_text(json.dumps(meta, indent=2))
        os.chmod(meta_path, 0o600)
        return meta

    def delete_old(
        self, source: Described, names: dict[str, Any], keep_old: bool, skip_final_snapshot: bool
    ) -> dict[str, Any]:
        """Back data.old-<suffix> up (the final snapshot), then remove it; or keep it. Only the
        directory the fleet manifest recorded at set_aside is removed."""
        aside = Path(names["renamed_dir"])
        if keep_old:
            return {"kept": str(aside)}
        if not self.fleet.manifest.owns(aside):
            raise FleetError(
                f"{aside} is not recorded in the fleet manifest as set aside by the tool: kept"
            )
        out: dict[str, Any] = {"removed": str(aside)}
        if names.get("final_snapshot") and not skip_final_snapshot and aside.exists():
            out["final_snapshot"] = self._final_backup(aside, names["final_snapshot"], names)
        self.fleet.manifest.remove(aside)
        log_file = aside.parent / f"{aside.name}.log"
        if self.fleet.manifest.owns(log_file):
            self.fleet.manifest.remove(log_file)
        return out

    def _quarantine_timelines(self, details: dict[str, Any], suffix: str) -> list[str]:
        """Move the WAL of timelines the half-restored cluster started out of the archive."""
        archive = self.fleet.archive_dir
        new_history = set(self._archive_names("*.history")) - set(details.get("history_before", []))
        new_partial = set(self._archive_names("*.partial")) - set(details.get("partial_before", []))
        timelines = {h.split(".")[0] for h in new_history}
        moved: list[str] = []
        target = self.aside_root / f"abandoned-{suffix}"
        for f in sorted(archive.iterdir()) if archive.is_dir() else []:
            if f.name[:8] in timelines or f.name in new_partial:
                target.mkdir(parents=True, exist_ok=True)
                shutil.move(str(f), target / f.name)
                moved.append(f.name)
        return moved

    def _above_abandoned_timeline(self, cluster: pg.Cluster) -> int:
        """Start the (stopped, put back) original through archive recovery to its own end and
        promote it: PostgreSQL picks a timeline above every one in the repository, so restores
        that follow the latest timeline follow the original, never the abandoned restore."""
        source_repo = self.fleet.pgbackrest
        assert source_repo is not None
        # no target: to the end of its own WAL (a clean shutdown: nothing to replay), then promote
        recovery = {
            "restore_command": pg.quote_setting(source_repo.repo.restore_command(cluster.datadir)),
            "recovery_target_timeline": "'current'",
        }
        timeline = self._recover_and_promote(cluster, recovery)
        self.fleet.switch_wal()  # its history file reaches the repository
        return timeline

    def rollback(
        self, source: Described, names: dict[str, Any], resources: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Stop and remove a half-restored directory, rename the original back, start it."""
        port = int(source.config["port"])
        datadir = Path(names["datadir"])
        aside = Path(names["renamed_dir"])
        pgbackrest = bool(source.config.get("pgbackrest_stanza"))
        released = False
        details = next((r["details"] for r in resources if r["kind"] == ASIDE_KIND), {})
        restored = any(
            r["kind"] == RESTORED_KIND and r["details"].get("datadir") == str(datadir)
            for r in resources
        )
        actions: list[str] = []
        if aside.exists():
            if datadir.exists():
                if not restored or not self.fleet.manifest.owns(datadir):
                    return {
                        "rolled_back": False,
                        "reason": f"{datadir} was not created by this run's restore step (not"
                        f" recorded): left in place; the original is still {aside}",
                    }
                if stop_restore(datadir):  # a pgbackrest restore a crashed run left writing
                    actions.append("stopped the pgbackrest restore still writing into it")
                promoted = self._control_state(datadir) == "in production"
                pg.Cluster(datadir, port).stop(mode="fast" if promoted else "immediate")
                if pgbackrest:
                    conf = datadir / "restore_assets.conf"
                    text = conf.read_text(errors="replace") if conf.exists() else ""
                    # archived only once released: the new timeline may be in the repository
                    released = promoted and HOLD_MARK not in text
                else:
                    moved = self._quarantine_timelines(details, names["suffix"])
                    if moved:
                        actions.append(
                            f"moved {len(moved)} WAL file(s) of the abandoned timeline aside"
                        )
                if promoted and self.final_backup and names.get("rollback_snapshot"):
                    # it was production (promoted, on the same port): keep what it held
                    meta = self._final_backup(datadir, names["rollback_snapshot"], names)
                    actions.append(f"final backup of the restored directory: {meta['path']}")
                self.fleet.manifest.remove(datadir)
                tablespaces = datadir.parent / f"tablespaces-{names['suffix']}"
                if self.fleet.manifest.owns(tablespaces):
                    self.fleet.manifest.remove(tablespaces)
                pg.Cluster(datadir, port).logfile.unlink(missing_ok=True)
                actions.append("removed the half-restored data directory")
            os.rename(aside, datadir)
            self.fleet.manifest.forget(aside)
            old_log = aside.parent / f"{aside.name}.log"
            if old_log.exists():
                os.rename(old_log, pg.Cluster(datadir, port).logfile)
            actions.append(f"renamed {aside.name} back to {datadir.name}")
        elif any(r["kind"] == RESTORED_KIND for r in resources) and datadir.exists():
            return {
                "rolled_back": False,
                "reason": f"{aside.name} was already removed: the restored production is kept",
            }
        elif not datadir.exists():
            raise FleetError(f"neither {datadir} nor {aside} exists: nothing to put back")
        cluster = pg.Cluster(datadir, port)
        was_running = details.get("was_running", source.details.get("running", True))
        if released and not cluster.is_running():
            timeline = self._above_abandoned_timeline(cluster)
            actions.append(
                f"the abandoned timeline had reached the pgBackRest repository (the tool never"
                f" deletes from it): the original was moved onto timeline {timeline} above it,"
                " so later restores follow the original"
            )
            if self.post_restore_snapshot:
                # the abandoned server's post-restore backup is the newest: later restores to a
                # time after the rollback must start from a backup of the original instead
                snap = self.fleet.snapshot()
                actions.append(f"pgbackrest backup {snap.id} of the original on its new timeline")
            if not was_running:
                cluster.stop(mode="fast")
        if was_running and not cluster.is_running():
            cluster.start(timeout=self.start_timeout)
            actions.append(f"started the original on port {port}")
        if was_running:
            with psycopg.connect(cluster.dsn(), connect_timeout=10) as conn:
                conn.execute("SELECT 1")
        return {"rolled_back": True, "actions": actions}
