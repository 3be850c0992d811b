"""The base-backup source of a local fleet: pg_basebackup directories and a flat WAL archive."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from restore_assets.backends.local import pg, selective
from restore_assets.backends.local.archive import (
    WalPrefetch,
    last_commit_in,
    reported_archived,
    segments_in,
    segments_to_prefetch,
)
from restore_assets.backends.local.dsn import connect, password_env, without_password
from restore_assets.backends.local.sources import FleetSource, Materialization, Materialized
from restore_assets.backends.local.tablespaces import relocate_tablespaces, tablespace_mapping
from restore_assets.backends.protocols import Snapshot
from restore_assets.core.errors import FleetError, InvalidRequest

BACKUP_HISTORY = re.compile(r"^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$")
LABEL_TIME = re.compile(r"^(START|STOP) TIME: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+)", re.M)


# the instants whose printing in the session's time zone (the server's log_timezone) is exactly the
# text: the wall clock read in that zone, or one hour either side where a DST change repeats it;
# the zone's abbreviation in the text picks the one (the server prints labels with pg_strftime)
SERVER_TIMES = """
SELECT (SELECT c FROM unnest(ARRAY[0, -1, 1]) AS h,
        LATERAL (SELECT substring(t FROM '^\\S+ \\S+')::timestamp
                        AT TIME ZONE current_setting('TimeZone')
                        + make_interval(hours => h) AS c) AS candidate
        WHERE to_char(c, 'YYYY-MM-DD HH24:MI:SS TZ') = t LIMIT 1)
FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n
"""


def server_times(dsn: str, texts: list[str]) -> list[datetime | None]:
    """Read back times a server printed in its log_timezone (backup labels, 'YYYY-MM-DD HH:MI:SS PST').

    The server parses them in its own log_timezone (no abbreviation table: 'CST' in Shanghai is
    not Chicago's); None for a text it did not print.
    """
    if not texts:
        return []
    with connect(dsn) as conn:
        conn.execute(
            "SELECT pg_catalog.set_config('TimeZone', current_setting('log_timezone'), false)"
        )
        rows = conn.execute(SERVER_TIMES, ([t.strip() for t in texts],)).fetchall()
    return [r[0].astimezone(UTC) if r[0] is not None else None for r in rows]


def dir_size(path: Path) -> int:
    """Bytes of the files below path (links counted by their own size)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


class BaseBackupSource(FleetSource):
    """Snapshots are plain-format base backups in backup_dir; WAL is copied into archive_dir."""

    kind = "base-backups"
    topology = "adopted-cluster"

    @property
    def archive_dir(self) -> Path:
        """Directory of archived WAL segments."""
        return Path(self.cfg.archive_dir)

    @property
    def backup_dir(self) -> Path:
        """Directory of base backups (one sub-directory each)."""
        return Path(self.cfg.backup_dir)

    # ------------------------------------------------------------------ production
    def production_settings(self) -> dict[str, str]:
        """archive_command copying each segment into the archive directory (never over one)."""
        dest = pg.shell_arg(self.archive_dir)
        return {"archive_command": pg.quote_setting(f"test ! -f {dest}/%f && cp %p {dest}/%f")}

    def production_configured(self, cluster: pg.Cluster, new: bool) -> None:
        """Nothing to do: the archive is a directory."""

    def status(self) -> dict[str, Any]:
        """The archive and backup directories."""
        return {"archive_dir": self.cfg.archive_dir, "backup_dir": self.cfg.backup_dir}

    def check_ready(self) -> None:
        """Refuse when the archive directory is missing."""
        if not self.archive_dir.is_dir():
            raise InvalidRequest(f"archive directory missing: {self.archive_dir}")

    # ------------------------------------------------------------------ snapshots
    def _backups(self) -> Path:
        if not self.backup_dir.is_dir():
            raise InvalidRequest(f"base-backup directory missing: {self.backup_dir}")
        return self.backup_dir

    def snapshot(self, backup_type: str | None = None) -> Snapshot:
        """Take a base backup of production (pg_basebackup, fast checkpoint, WAL streamed)."""
        backups = self._backups()
        now = datetime.now(UTC)
        snap_id = "snap-" + now.strftime("%Y%m%dT%H%M%S%fZ")
        target = backups / snap_id
        # an adopted cluster's backup directory is its owner's: a purge leaves what we put there
        keep = self.cfg.mode == "adopted"
        self.fleet.manifest.record(target, keep=keep)
        self.fleet.manifest.record(backups / f"{snap_id}.json", keep=keep)
        self.fleet.manifest.record(self._relmap_file(snap_id), keep=keep)
        started = datetime.now(UTC)
        dsn = self.fleet.production_dsn()
        # which oid is which database, for selective provisioning (before and after the backup)
        dbmap_before = selective.database_map(dsn)
        # and which relation file is which schema's, per database (the same, before and after)
        relmap_before = selective.relation_map(self.fleet.production_dsn, dbmap_before["databases"])
        env = password_env(dsn) if self.cfg.mode == "adopted" else {}
        try:
            pg.run_server_cmd(
                [
                    pg.pg_bin("pg_basebackup"),
                    "-d",
                    without_password(dsn),  # the password goes in PGPASSWORD
                    "-D",
                    str(target),
                    "-Fp",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-password",
                    # each tablespace into the snapshot itself, never onto production's directory
                    *tablespace_mapping(dsn, target),
                ],
                env=env,
            )
        except FleetError:
            self.fleet.manifest.remove(target)
            raise
        completed = datetime.now(UTC)
        start = self._label_times([(target / "backup_label").read_text()])[0].get("START")
        meta = {
            "id": snap_id,
            "start": (start or started).isoformat(),
            "stop": completed.isoformat(),
        }
        meta["size_bytes"] = dir_size(target)
        meta.update(selective.stable_map(dbmap_before, selective.database_map(dsn)))
        relmap_after = selective.relation_map(self.fleet.production_dsn, meta["databases"])
        selective.write_relation_map(
            self._relmap_file(snap_id), selective.stable_relations(relmap_before, relmap_after)
        )
        (backups / f"{snap_id}.json").write_text(json.dumps(meta))
        return self._from_sidecar(target)

    def _relmap_file(self, snap_id: str) -> Path:
        """The snapshot's relation map (relfilenode -> schema, per database), beside it."""
        return self.backup_dir / f"{snap_id}.relmap.json"

    def _label_times(self, texts: list[str]) -> list[dict[str, datetime]]:
        """START/STOP TIME of backup labels or history files, read back by the production server.

        The server prints them in its log_timezone's abbreviation (PST, CEST, CST): it reads
        them back itself, in that zone, all in one query.
        """
        found = [LABEL_TIME.findall(text) for text in texts]
        stamps = [value for pairs in found for _kind, value in pairs]
        times = iter(server_times(self.fleet.production_dsn(), stamps))
        out = []
        for pairs in found:
            parsed = {kind: next(times) for kind, _value in pairs}
            out.append({kind: t for kind, t in parsed.items() if t is not None})
        return out

    def _history_texts(self) -> list[str]:
        """The archive's backup history files (`*.backup`)."""
        texts = []
        if self.archive_dir.is_dir():
            for f in self.archive_dir.iterdir():
                if BACKUP_HISTORY.match(f.name):
                    try:
                        texts.append(f.read_text(errors="replace"))
                    except OSError:
                        continue
        return texts

    def _from_sidecar(self, path: Path) -> Snapshot:
        """A backup the tool took: its times and size are in `<id>.json` beside it."""
        meta = json.loads((path.parent / f"{path.name}.json").read_text())
        return Snapshot(
            id=path.name,
            created_at=datetime.fromisoformat(meta["start"]),
            completed_at=datetime.fromisoformat(meta["stop"]),
            size_bytes=int(meta["size_bytes"]),
        )

    def _from_labels(self, paths: list[Path]) -> list[Snapshot]:
        """Backups without a sidecar (an adopted cluster's own): start from the label, end from
        the archive's history file of the same start.

        STOP TIME is printed in whole seconds, truncated: the backup became consistent at some
        moment within the second after it, so the end is STOP TIME + 1 s (a restore to an
        earlier point could stop before the backup is consistent, and recovery would fail).
        """
        labels = [(p / "backup_label").read_text(errors="replace") for p in paths]
        times = self._label_times(labels + self._history_texts())
        stops = {
            t["START"]: t["STOP"] + timedelta(seconds=1)
            for t in times[len(labels) :]
            if "START" in t and "STOP" in t
        }
        out = []
        for path, t in zip(paths, times, strict=False):
            if "START" not in t:
                raise FleetError(f"cannot read the START TIME of {path / 'backup_label'}")
            out.append(
                Snapshot(
                    id=path.name,
                    created_at=t["START"],
                    completed_at=stops.get(t["START"]),
                    size_bytes=dir_size(path),
                )
            )
        return out

    def snapshots(self) -> list[Snapshot]:
        """Every base backup in the backup directory, oldest first."""
        found = [p for p in sorted(self._backups().iterdir()) if (p / "backup_label").is_file()]
        bare = [p for p in found if not (p.parent / f"{p.name}.json").exists()]
        out = [self._from_sidecar(p) for p in found if p not in bare]
        out += self._from_labels(bare) if bare else []
        return sorted(out, key=lambda s: s.created_at)

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete one base backup the tool took (the manifest lists it); refuse any other."""
        snap = self.fleet.get_snapshot(snapshot_id)
        path = self.backup_dir / snap.id
        if not self.fleet.manifest.owns(path):
            raise InvalidRequest(
                f"snapshot {snap.id} was not taken by this tool (the fleet manifest does not list"
                f" {path}): it is left in place"
            )
        self.fleet.manifest.remove(path)
        meta = self.backup_dir / f"{snap.id}.json"
        if self.fleet.manifest.owns(meta):
            self.fleet.manifest.remove(meta)
        if self.fleet.manifest.owns(self._relmap_file(snap.id)):
            self.fleet.manifest.remove(self._relmap_file(snap.id))

    # ------------------------------------------------------------------ archived WAL
    def is_archived(self, segment: str, last_archived_wal: str | None) -> bool:
        """True once the server reports the segment archived and its file is in the archive
        directory (the file appears as soon as archive_command's `cp` starts writing it: read
        then, it lacked its last commits, and a restore to a time just before was refused)."""
        return (
            reported_archived(segment, last_archived_wal) and (self.archive_dir / segment).exists()
        )

    def latest_archived_time(self) -> datetime | None:
        """Time of the last commit found in the archived WAL (pg_waldump over the newest segments)."""
        if not self.archive_dir.is_dir():
            raise InvalidRequest(f"archive directory missing: {self.archive_dir}")
        return last_commit_in(self.archive_dir, segments_in(self.archive_dir))

    # ------------------------------------------------------------------ temporary instances
    def _decide(
        self,
        base: Snapshot,
        databases: list[str] | None,
        fpw: str | None,
        schemas: list[str] | None = None,
    ) -> selective.Decision:
        src = self.backup_dir / base.id
        meta, relmap = self.backup_dir / f"{base.id}.json", self._relmap_file(base.id)
        return selective.decide(src, meta, databases, fpw, schemas, relmap)

    def plan_provisioning(
        self, base: Snapshot, databases: list[str] | None, schemas: list[str] | None = None
    ) -> dict[str, Any]:
        """Selective (other schemas, other databases) or full copy of the snapshot, and why."""
        return self._decide(base, databases, None, schemas).to_dict()

    def materialize(self, job: Materialization) -> Materialized:
        """Copy a plain snapshot into the data directory: selectively when it can, else in full."""
        cluster, base = job.cluster, job.base
        src = self.backup_dir / base.id
        fpw = None
        if job.databases:
            try:
                fpw = selective.database_map(self.fleet.production_dsn())["full_page_writes"]
            except psycopg.Error:
                fpw = None  # production down: the snapshot's record decides
        decision = self._decide(base, job.databases, fpw, job.schemas)
        t0 = time.monotonic()
        if decision.mode == "selective":
            counts = selective.copy_snapshot(
                src, cluster.datadir, decision.zero_oids, decision.zero_files
            )
        else:
            pg.run_server_cmd(["cp", "-a", str(src), str(cluster.datadir)])
            counts = {"bytes_copied": base.size_bytes, "bytes_zero_filled": 0}
        provisioning = {
            **decision.to_dict(),
            **counts,
            "copy_seconds": round(time.monotonic() - t0, 3),
        }
        relocate_tablespaces(cluster.datadir, src)
        restore_command = f"cp {pg.shell_arg(self.archive_dir)}/%f %p"
        prefetch = self._prefetch(src, job)
        if prefetch is not None:
            restore_command = prefetch.restore_command(restore_command)
        return Materialized(
            restore_command,
            provisioning,
            set(decision.zero_oids),
            decision.zero_files,
            prefetch,
        )

    def _prefetch(self, src: Path, job: Materialization) -> WalPrefetch | None:
        """The WAL replay reads first, to copy beside the instance while it replays (in
        `<temp dir>/wal-stage`, the server user's); None when there is nothing to name."""
        try:
            label = (src / "backup_label").read_text(errors="replace")
        except OSError:
            return None
        segments = segments_to_prefetch(self.archive_dir, label, job.target.restore_time)
        if not segments:
            return None
        stage = job.cluster.datadir.parent / "wal-stage"
        pg.give_to_server_user(stage)
        os.chmod(stage, 0o700)
        return WalPrefetch(segments, stage, job.cluster.datadir / "pg_wal")

    def left_out_oids(self, dsn: str, databases: list[str] | None, made: Materialized) -> set[int]:
        """The databases the copy zero-filled (known from the snapshot's map)."""
        return made.zero_oids

    def stop_materializing(self, datadir: Path) -> None:
        """Nothing runs on after a copy: it is a child of the provision."""
