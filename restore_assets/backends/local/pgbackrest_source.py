"""The pgBackRest source of a local fleet: a stanza's backups and WAL, read through pgBackRest.

The commands themselves are in `pgbackrest.py`; this is what a fleet asks of them.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from restore_assets.backends.local import pg
from restore_assets.backends.local.archive import last_commit_in, reported_archived
from restore_assets.backends.local.pgbackrest import (
    PgBackRest,
    check_archive_command,
    excluded_oids,
    history_name,
    managed_settings,
    next_older_segment,
    off_history,
    stop_restore,
    write_managed_config,
)
from restore_assets.backends.local.sources import FleetSource, Materialization, Materialized
from restore_assets.backends.protocols import Snapshot
from restore_assets.core.errors import FleetError, InvalidRequest

if TYPE_CHECKING:
    from restore_assets.backends.local.cluster import FleetConfig
    from restore_assets.backends.local.fleet import LocalFleet


class PgBackRestSource(FleetSource):
    """The backup source of a fleet backed up by a pgBackRest stanza (adopted, or the tool's own)."""

    kind = "pgbackrest"
    topology = "pgbackrest-stanza"

    def __init__(self, fleet: LocalFleet, cfg: FleetConfig) -> None:
        super().__init__(fleet, cfg)
        self.repo = PgBackRest(cfg.pgbackrest_stanza or "", cfg.pgbackrest_config)
        self._histories: dict[int, str] = {}  # timeline -> its history file (never rewritten)

    @property
    def process_max(self) -> int:
        """Restore parallelism: the fleet's setting, else the CPU count (at most 8)."""
        return self.cfg.pgbackrest_process_max or max(1, min(8, os.cpu_count() or 1))

    # ------------------------------------------------------------------ production
    def production_settings(self) -> dict[str, str]:
        """archive_command pushing into the managed stanza (and the socket pgBackRest uses)."""
        return managed_settings(Path(self.cfg.data_dir or self.fleet.root))

    def production_configured(self, cluster: pg.Cluster, new: bool) -> None:
        """Write the managed stanza's config for this port; create the stanza when new."""
        write_managed_config(
            Path(self.cfg.data_dir or self.fleet.root), cluster.datadir, cluster.port
        )
        if new:
            self.repo.run("stanza-create", timeout=300)

    def check_adoptable(self, archive_command: str) -> None:
        """Refuse a server or stanza whose WAL does not reach the repository (pgBackRest's message)."""
        check_archive_command(archive_command, self.repo.stanza)
        self.repo.info()
        self.repo.check()

    def status(self) -> dict[str, Any]:
        """The stanza, its config file and the type of backup `snapshot` takes."""
        return {
            "pgbackrest": {
                "stanza": self.cfg.pgbackrest_stanza,
                "config": self.cfg.pgbackrest_config,
                "backup_type": self.cfg.pgbackrest_backup_type,
            }
        }

    def check_ready(self) -> None:
        """Refuse when the stanza has no backup (pgBackRest's own status)."""
        info = self.repo.info()
        if not self.repo.snapshots(info):
            message = info.get("status", {}).get("message", "no backups")
            raise InvalidRequest(
                f"pgbackrest stanza {self.repo.stanza!r}: {message}; take one with"
                " `restore-assets fleet snapshot` (pgbackrest backup)"
            )

    # ------------------------------------------------------------------ snapshots
    def snapshots(self) -> list[Snapshot]:
        """The stanza's backups, oldest first."""
        return self.repo.snapshots()

    def snapshot(self, backup_type: str | None = None) -> Snapshot:
        """`pgbackrest backup` (of the fleet's type unless given); return it as a snapshot."""
        before = {s.id for s in self.repo.snapshots()}
        self.repo.backup(backup_type or self.cfg.pgbackrest_backup_type)
        new = [s for s in self.repo.snapshots() if s.id not in before]
        if not new:
            raise FleetError("pgbackrest backup succeeded but no new backup is listed by info")
        return new[-1]

    def refused_bases(self) -> dict[str, str]:
        """Backups (label -> why) on a timeline recovery to the latest one does not pass through,
        or on an ancestor past its branch point (recovery_target_timeline 'latest' cannot use them)."""
        info = self.repo.info()
        newest = self.repo.newest_segment(info)
        if newest is None:
            return {}
        scratch = self.fleet.scratch_dir("wal")
        try:
            # the latest timeline as recovery finds it: the newest segment's, then every
            # history file above it in the archive (a promotion archives its history at once)
            current = int(newest[:8], 16)
            while self._history(current + 1, scratch) is not None:
                current += 1
            history = self._history(current, scratch) if current > 1 else None
        finally:
            self.fleet.manifest.remove(scratch)
        return off_history(info.get("backup", []), current, history)

    def _history(self, timeline: int, scratch: Path) -> str | None:
        """A timeline's history file from the repository (archive-get), None when it has none."""
        if timeline in self._histories:
            return self._histories[timeline]
        name = history_name(timeline)
        if not self.repo.fetch_segments([name], scratch):
            return None
        text = (scratch / name).read_text()
        self._histories[timeline] = text
        return text

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Refused: retention is pgBackRest's job."""
        raise InvalidRequest(
            f"snapshot {snapshot_id} is a backup of pgBackRest stanza {self.repo.stanza!r}:"
            " the tool never deletes from a pgBackRest repository; retention is pgBackRest's"
            " job (repo1-retention-full/diff, `pgbackrest expire`)"
        )

    # ------------------------------------------------------------------ archived WAL
    def is_archived(self, segment: str, last_archived_wal: str | None) -> bool:
        """Segments are pushed in order: archived once the server reports it or a later one."""
        return reported_archived(segment, last_archived_wal)

    def latest_archived_time(self) -> datetime | None:
        """Last commit in the newest WAL of the repository (fetched with archive-get, read with pg_waldump)."""
        newest = self.repo.newest_segment()
        if newest is None:
            return None
        with psycopg.connect(self.fleet.production_dsn(), connect_timeout=10) as conn:
            size = conn.execute(
                "SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size'"
            ).fetchone()[0]
        names = [newest]
        while len(names) < 8:
            older = next_older_segment(names[-1], int(size))
            if older is None:
                break
            names.append(older)
        scratch = self.fleet.scratch_dir("wal")
        try:
            got = self.repo.fetch_segments(names, scratch)
            return last_commit_in(scratch, sorted(got))
        finally:
            self.fleet.manifest.remove(scratch)

    # ------------------------------------------------------------------ temporary instances
    def plan_provisioning(
        self, base: Snapshot, databases: list[str] | None, schemas: list[str] | None = None
    ) -> dict[str, Any]:
        """--db-include of the restored database, or a full restore (schemas: database level)."""
        return {"mode": "selective" if databases else "full", "by": "pgbackrest"}

    def materialize(self, job: Materialization) -> Materialized:
        """pgbackrest restore of the base into the cluster's (new) directory."""
        datadir, databases = job.cluster.datadir, job.databases
        pg.give_to_server_user(datadir)
        os.chmod(datadir, 0o700)
        self.repo.restore(
            datadir,
            job.base.id,
            job.target,
            databases,
            self.process_max,
            datadir.parent / "tablespaces",
        )
        # pgBackRest's advice for --db-include: PostgreSQL >= 13 ignores the zeroed pages of
        # left-out databases (the log is checked for the restored one after promotion)
        provisioning = {
            "mode": "selective" if databases else "full",
            "by": "pgbackrest --db-include" if databases else "pgbackrest restore",
        }
        return Materialized(self.repo.restore_command(datadir), provisioning)

    def left_out_oids(self, dsn: str, databases: list[str] | None, made: Materialized) -> set[int]:
        """Every user database --db-include left out, by the restored copy's catalog."""
        return set(excluded_oids(dsn, databases or []))

    def stop_materializing(self, datadir: Path) -> None:
        """Stop a pgbackrest restore a crashed provision left running into datadir."""
        stop_restore(datadir)
