"""pgBackRest as the backup source of an adopted local fleet: its stanza's backups and WAL archive.

The tool reads the repository only through pgBackRest's own commands (`info`, `check`,
`archive-get`, `restore`) and writes to it only through `pgbackrest backup` when a snapshot is
asked for. Every command runs as the PostgreSQL server user, with the stanza's config file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from restore_assets.backends.local import pg
from restore_assets.backends.protocols import RestoreTarget, Snapshot
from restore_assets.core.errors import FleetError, InvalidRequest

BACKUP_TYPES = ("full", "diff", "incr")
SNAPSHOT_KIND = "pgbackrest-{}"
ARCHIVE_PUSH = re.compile(r"\bpgbackrest\b.*\barchive-push\b")
RESTORE_PID = "pgbackrest-restore.pid"
# PostgreSQL's warnings for pages replay could not apply (log_invalid_page / report_invalid_page)
INVALID_PAGE = re.compile(
    r"WARNING:\s+page \d+ of relation (?:(?:base|pg_tblspc/\d+/[^/\s]+)/(?P<db>\d+)/|global/)"
    r"\S+ (?:is uninitialized|does not exist)|WARNING:\s+invalid page[^\n]*"
)
RELATION_IN_LOG = re.compile(r"of relation \S*/(\d+)(?:_[a-z]+)?(?:\.\d+)? ")
STANZA_OPTION = re.compile(r"--stanza[= ]([A-Za-z0-9_.-]+)")
# a line of a timeline history file: parent timeline, the LSN where its child branched off, reason
HISTORY_LINE = re.compile(r"^\s*(\d+)\s+([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\b")


def binary() -> str:
    """Path of the pgbackrest program; a clear error when it is not installed."""
    found = shutil.which("pgbackrest")
    if not found:
        raise FleetError(
            "pgbackrest is not installed on this machine: install the `pgbackrest` package"
            " (make setup does on Debian/Ubuntu)"
        )
    return found


def version() -> str:
    """`pgbackrest version` ('pgBackRest 2.45')."""
    return pg.run_server_cmd([binary(), "version"], timeout=30).stdout.strip()


def stop_restore(datadir: Path, timeout: float = 30) -> bool:
    """Kill the pgbackrest restore (process group) still writing into datadir, if any.

    Only a process whose pid the tool wrote next to datadir and whose command line is a
    pgbackrest restore into exactly this datadir is signalled. True when one was stopped.
    """
    pid_file = datadir.parent / RESTORE_PID
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    if not (
        args
        and Path(args[0]).name == "pgbackrest"
        and "restore" in args
        and f"--pg1-path={datadir}" in args
    ):
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child: reap it
        except ChildProcessError:
            pass
        time.sleep(0.05)
    raise FleetError(f"pgbackrest restore (pid {pid}) into {datadir} did not stop")


def excluded_oids(dsn: str, included: list[str]) -> list[int]:
    """Oids of the user databases a `--db-include` restore left as empty files (the copy's catalog).

    pgBackRest always restores the system databases (template0, template1, postgres).
    """
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT oid::bigint FROM pg_catalog.pg_database"
            " WHERE datname <> ALL(%s) AND datname NOT IN ('template0', 'template1', 'postgres')",
            (list(included),),
        ).fetchall()
    return [int(r[0]) for r in rows]


def check_invalid_pages(
    logfile: Path, left_out: set[int], zero_files: dict[int, set[int]] | None = None
) -> None:
    """Fail when replay reported an invalid page outside the databases --db-include left out
    (and, in a restored database, outside the relfilenodes zero_files names: other schemas').

    With ignore_invalid_pages on (pgBackRest's advice for a selective restore), PostgreSQL only
    warns about pages it could not replay; one in a restored relation means its copy is wrong.
    """
    try:
        text = logfile.read_text(errors="replace")
    except OSError as exc:
        raise FleetError(f"cannot read the temporary cluster's log {logfile}: {exc}") from None
    bad = []
    for m in INVALID_PAGE.finditer(text):
        oid = m.group("db")
        if oid is not None and int(oid) in left_out:
            continue
        f = RELATION_IN_LOG.search(m.group(0))
        if oid is not None and f and int(f.group(1)) in (zero_files or {}).get(int(oid), set()):
            continue
        bad.append(m.group(0).strip())
    if bad:
        raise FleetError(
            "recovery met invalid pages in a restored database (the selective restore is not"
            f" usable; rerun with --full-provision): {'; '.join(bad[:3])}"
        )


def next_older_segment(name: str, segment_bytes: int) -> str | None:
    """The WAL segment name before `name` on the same timeline (None for the first one)."""
    per_log = 0x100000000 // segment_bytes
    tli, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:24], 16)
    number = log * per_log + seg - 1
    if number < 0:
        return None
    return f"{tli:08X}{number // per_log:08X}{number % per_log:08X}"


def parse_lsn(text: str) -> int:
    """An LSN as PostgreSQL prints it ('16/B374D848') as a number."""
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def history_name(timeline: int) -> str:
    """The name of a timeline's history file in the WAL archive ('00000005.history')."""
    return f"{timeline:08X}.history"


def ancestry(current: int, history: str | None) -> dict[int, int | None]:
    """Timelines whose WAL recovery along `current` replays: timeline -> the LSN where the next
    one branched off it (None for `current` itself), from current's history file."""
    out: dict[int, int | None] = {}
    for line in (history or "").splitlines():
        m = HISTORY_LINE.match(line)
        if m:
            out[int(m.group(1))] = (int(m.group(2), 16) << 32) | int(m.group(3), 16)
    out[current] = None
    return out


def off_history(backups: list[dict[str, Any]], current: int, history: str | None) -> dict[str, str]:
    """Backups (label -> why) recovery along timeline `current` cannot start from: taken on a
    timeline that is not an ancestor of it, or on an ancestor past the point current branched off.

    `backups` are `info --output=json` entries: the stop WAL segment's first 8 hex digits name the
    timeline, `lsn.stop` is where the backup is consistent.
    """
    lineage = ancestry(current, history)
    refused = {}
    for b in backups:
        stop_wal = (b.get("archive") or {}).get("stop") or ""
        if len(stop_wal) < 8:
            continue  # no timeline to judge by: left to recovery
        timeline = int(stop_wal[:8], 16)
        label = b.get("label", "?")
        if timeline not in lineage:
            refused[label] = (
                f"backup {label} is on timeline {timeline}, which is not in the history of the"
                f" current timeline {current} (it was abandoned: a restore was rolled back or"
                f" replaced); recovery along timeline {current} cannot start from it"
            )
            continue
        switch = lineage[timeline]
        stop_lsn = (b.get("lsn") or {}).get("stop")
        if switch is not None and stop_lsn and parse_lsn(stop_lsn) > switch:
            refused[label] = (
                f"backup {label} ends at {stop_lsn} on timeline {timeline}, after timeline"
                f" {current}'s history left timeline {timeline}"
                f" (at {switch >> 32:X}/{switch & 0xFFFFFFFF:X}): recovery along timeline"
                f" {current} cannot start from it"
            )
    return refused


class PgBackRest:
    """The pgBackRest commands of one stanza, run as the server user with its config file."""

    def __init__(self, stanza: str, config: str | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", stanza or ""):
            raise InvalidRequest(
                f"stanza name {stanza!r} may hold only letters, digits, '.', '_' and '-'"
            )
        self.stanza = stanza
        self.config = config

    def args(self, command: str, *options: str, positional: tuple[str, ...] = ()) -> list[str]:
        """The command line of one pgBackRest command of this stanza (no secret on it)."""
        out = [binary()]
        if self.config:
            out.append(f"--config={self.config}")
        out += [f"--stanza={self.stanza}", "--log-level-console=error", "--log-level-file=off"]
        return [*out, *options, command, *positional]

    def run(self, command: str, *options: str, timeout: float = 3600) -> str:
        """Run one command; FleetError carrying pgBackRest's own message when it fails."""
        proc = pg.run_server_cmd(self.args(command, *options), check=False, timeout=timeout)
        if proc.returncode != 0:
            text = " ".join((proc.stderr or proc.stdout).split()) or f"exit {proc.returncode}"
            raise FleetError(f"pgbackrest {command} (stanza {self.stanza}) failed: {text}")
        return proc.stdout

    def info(self) -> dict[str, Any]:
        """The stanza's `info --output=json` entry; refused with pgBackRest's message when it is missing."""
        data = json.loads(self.run("info", "--output=json", timeout=120) or "[]")
        entry = next((s for s in data if s.get("name") == self.stanza), None)
        if entry is None:
            raise InvalidRequest(f"pgbackrest info does not know stanza {self.stanza!r}")
        status = entry.get("status", {})
        if status.get("code") not in (0, 2):  # 2: "no valid backups" (a stanza just created)
            raise InvalidRequest(
                f"pgbackrest stanza {self.stanza!r}: {status.get('message', 'unusable')}"
                f" (pgbackrest info status {status.get('code')})"
            )
        return entry

    def check(self) -> None:
        """`pgbackrest check`: the stanza exists and the server's WAL reaches the repository."""
        try:
            self.run("check", timeout=300)
        except FleetError as exc:
            raise InvalidRequest(str(exc)) from None

    def backup(self, backup_type: str) -> None:
        """`pgbackrest backup --type=...` (waits until it is done)."""
        if backup_type not in BACKUP_TYPES:
            raise InvalidRequest(
                f"backup type {backup_type!r} is not one of {', '.join(BACKUP_TYPES)}"
            )
        self.run("backup", f"--type={backup_type}", timeout=24 * 3600)

    def restore(
        self,
        datadir: Path,
        label: str,
        target: RestoreTarget,
        databases: list[str] | None,
        process_max: int,
        tablespace_dir: Path,
        delta: bool = False,
    ) -> None:
        """`pgbackrest restore` of one backup set into datadir (empty; or, with delta, holding a
        copy of the cluster that `--delta` checksums and rewrites where it differs)."""
        options = [
            *(["--delta"] if delta else []),
            f"--pg1-path={datadir}",
            f"--set={label}",
            "--archive-mode=off",
            f"--process-max={process_max}",
            # tablespaces into the temporary copy, never onto production's own directories
            f"--tablespace-map-all={tablespace_dir}",
            "--target-action=promote",
        ]
        if target.snapshot_id:
            options.append("--type=immediate")
        else:
            assert target.restore_time is not None
            stamp = target.restore_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
            options += ["--type=time", f"--target={stamp}"]
        options += [f"--db-include={d}" for d in databases or []]
        args = self.args("restore", *options)
        user = pg.server_user()
        extra: dict[str, Any] = {}
        if not user.is_current:
            extra = {"user": user.uid, "group": user.gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if not user.is_current:
            env["HOME"] = "/tmp"
        # its own process group, its pid next to the directory: a cleanup after a crash of this
        # process stops the restore (and its --process-max workers) before deleting what it wrote
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd="/",
            start_new_session=True,
            **extra,
        )
        pid_file = datadir.parent / RESTORE_PID
        pid_file.write_text(str(proc.pid))
        try:
            out, err = proc.communicate()
        except BaseException:
            stop_restore(datadir)
            raise
        pid_file.unlink(missing_ok=True)
        if proc.returncode != 0:
            text = " ".join((err or out).split()) or f"exit {proc.returncode}"
            raise FleetError(f"pgbackrest restore (stanza {self.stanza}) failed: {text}")

    def restore_command(self, datadir: Path) -> str:
        """The restore_command a temporary copy fetches WAL with (as pgBackRest writes it)."""
        parts = [pg.shell_arg(binary())]
        if self.config:
            parts.append("--config=" + pg.shell_arg(self.config))
        parts += ["--pg1-path=" + pg.shell_arg(datadir), "--stanza=" + pg.shell_arg(self.stanza)]
        return " ".join([*parts, "archive-get", "%f", '"%p"'])

    # ------------------------------------------------------------------ what the fleet reads
    def snapshots(self, info: dict[str, Any] | None = None) -> list[Snapshot]:
        """The stanza's backups as snapshots (id = label), oldest first."""
        info = info or self.info()
        out = []
        for b in info.get("backup", []):
            if b.get("error"):
                continue
            stamp = b["timestamp"]
            # stop is printed in whole seconds, truncated: consistent within the second after it
            out.append(
                Snapshot(
                    id=b["label"],
                    created_at=datetime.fromtimestamp(stamp["start"], UTC),
                    completed_at=datetime.fromtimestamp(stamp["stop"], UTC) + timedelta(seconds=1),
                    size_bytes=int(b.get("info", {}).get("size", 0)),
                    kind=SNAPSHOT_KIND.format(b.get("type", "full")),
                )
            )
        return sorted(out, key=lambda s: s.created_at)

    def newest_segment(self, info: dict[str, Any] | None = None) -> str | None:
        """Name of the newest WAL segment in the repository for the current database."""
        info = info or self.info()
        current = max((d["id"] for d in info.get("db", [])), default=None)
        names = [
            a["max"]
            for a in info.get("archive", [])
            if a.get("max") and a.get("database", {}).get("id") == current
        ]
        return max(names) if names else None

    def fetch_segments(self, names: list[str], dest: Path) -> list[str]:
        """archive-get each segment (or history file) into dest; return the ones the repository had."""
        got = []
        for name in names:
            proc = pg.run_server_cmd(
                self.args("archive-get", positional=(name, str(dest / name))),
                check=False,
                timeout=300,
            )
            if proc.returncode == 0 and (dest / name).exists():
                got.append(name)
        return got


def check_archive_command(archive_command: str, stanza: str) -> None:
    """Refuse a server whose archive_command is not `pgbackrest ... archive-push` for this stanza."""
    if not ARCHIVE_PUSH.search(archive_command or ""):
        raise InvalidRequest(
            f"the server's archive_command is {archive_command!r}, not `pgbackrest"
            f" --stanza={stanza} archive-push %p`: its WAL does not reach the stanza's repository"
        )
    named = STANZA_OPTION.search(archive_command)
    if named and named.group(1) != stanza:
        raise InvalidRequest(
            f"the server's archive_command pushes WAL to stanza {named.group(1)!r}, not {stanza!r}"
        )


# ---------------------------------------------------------------------- a stanza the tool manages
MANAGED_STANZA = "production"


def managed_paths(data_root: Path) -> dict[str, Path]:
    """Where a managed fleet keeps its own pgBackRest stanza (config, repository, socket, logs)."""
    base = data_root / "pgbackrest"
    return {
        "base": base,
        "config": base / "pgbackrest.conf",
        "repo": base / "repo",
        "socket": base / "socket",
        "log": base / "log",
        "lock": base / "lock",
    }


def managed_settings(data_root: Path) -> dict[str, str]:
    """Production settings archiving into the managed stanza (and a socket pgBackRest connects to)."""
    paths = managed_paths(data_root)
    push = (
        f"{pg.shell_arg(binary())} --config={pg.shell_arg(paths['config'])}"
        f" --stanza={pg.shell_arg(MANAGED_STANZA)} archive-push %p"
    )
    return {
        "archive_command": pg.quote_setting(push),
        "unix_socket_directories": pg.quote_setting(str(paths["socket"])),
        "unix_socket_permissions": "0700",
    }


def write_managed_config(data_root: Path, datadir: Path, port: int) -> Path:
    """Write the managed stanza's pgbackrest.conf for the production cluster on this port."""
    paths = managed_paths(data_root)
    text = (
        "[global]\n"
        f"repo1-path={paths['repo']}\n"
        f"log-path={paths['log']}\n"
        f"lock-path={paths['lock']}\n"
        "log-level-file=off\n"
        "compress-type=lz4\n"
        "start-fast=y\n"
        "repo1-retention-full=2\n"
        f"\n[{MANAGED_STANZA}]\n"
        f"pg1-path={datadir}\n"
        f"pg1-port={port}\n"
        f"pg1-socket-path={paths['socket']}\n"
    )
    config = paths["config"]
    config.write_text(text)
    os.chmod(config, 0o644)  # read by the server user; it holds no secret
    return config
