"""PostgreSQL binaries and single clusters on this machine: find, initdb, start, stop, remove."""

from __future__ import annotations

import functools
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from restore_assets.core.errors import FleetError
from restore_assets.core.pgtools import pg_bin

RUN_AS_USER = os.environ.get("RESTORE_ASSETS_PG_USER", "postgres")


@dataclass(frozen=True)
class OsUser:
    """The OS account PostgreSQL server processes run as."""

    name: str
    uid: int
    gid: int

    @property
    def is_current(self) -> bool:
        """True when the server runs as the calling user (no privilege switch)."""
        return self.uid == os.geteuid()


@functools.cache
def server_user() -> OsUser:
    """The calling user, or an unprivileged account when the caller is root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return OsUser(pw.pw_name, pw.pw_uid, pw.pw_gid)
    try:
        pw = pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--home-dir", "/var/lib/postgresql", RUN_AS_USER],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(RUN_AS_USER)
    return OsUser(pw.pw_name, pw.pw_uid, pw.pw_gid)


def _as_server_user(env: dict | None = None) -> dict[str, Any]:
    """subprocess keyword arguments running a program as the server user (env, cwd, ids)."""
    user = server_user()
    full_env = {**os.environ, "LC_ALL": "C", "LANG": "C", **(env or {})}
    kwargs: dict[str, Any] = {"env": full_env, "cwd": "/"}
    if not user.is_current:
        full_env["HOME"] = "/tmp"
        kwargs.update(user=user.uid, group=user.gid, extra_groups=[])
    return kwargs


def run_server_cmd(
    args: list[str], *, check: bool = True, timeout: float | None = 600, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as the server user; failures raise FleetError with its stderr."""
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **_as_server_user(env),
        )
    except subprocess.TimeoutExpired as exc:
        raise FleetError(f"{Path(args[0]).name} did not finish within {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        tail = " | ".join(msg[-5:]) if msg else f"exit code {proc.returncode}"
        raise FleetError(f"{Path(args[0]).name} failed: {tail}")
    return proc


def give_to_server_user(path: Path) -> None:
    """Make a directory (created if missing) owned by the server user, and check it is reachable."""
    path.mkdir(parents=True, exist_ok=True)
    user = server_user()
    if user.is_current:
        return
    os.chown(path, user.uid, user.gid)
    for parent in path.resolve().parents:
        if not reachable_by(parent, user):
            mode = parent.stat().st_mode
            raise FleetError(
                f"{parent} is not reachable by the {user.name!r} user that runs PostgreSQL"
                f" (mode {oct(mode & 0o777)}): choose a directory under one others can enter,"
                f" such as /tmp or /var/tmp"
            )


def current_user_name() -> str:
    """The OS name of the calling user (by uid, not from the environment)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def reachable_by(path: Path, user: OsUser) -> bool:
    """True when the user can enter path and every directory above it (search permission)."""
    if user.is_current:
        return True
    for d in [path, *path.parents]:
        try:
            st = d.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == user.uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == user.gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def quote_setting(value: str) -> str:
    """A postgresql.conf string value, single-quoted."""
    return "'" + value.replace("'", "''") + "'"


def shell_arg(value: str | Path) -> str:
    """A path or value spliced into archive_command / restore_command: shell-quoted, % doubled."""
    return shlex.quote(str(value)).replace("%", "%%")


def quote_conf(name: str) -> str:
    """A pg_hba.conf / pg_ident.conf token, double-quoted (a role name is taken literally)."""
    return '"' + name.replace('"', '""') + '"'


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def dsn(
    port: int, dbname: str = "postgres", user: str = "postgres", host: str = "127.0.0.1"
) -> str:
    """A libpq connection string for a local cluster (no password: trust on 127.0.0.1 for the
    managed production, peer on a private unix socket for temporary clusters)."""
    return psycopg.conninfo.make_conninfo(host=host, port=port, dbname=dbname, user=user)


BASE_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "100",
    "shared_buffers": "'128MB'",
    "fsync": "on",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "max_logical_replication_workers": "0",
    "max_sync_workers_per_subscription": "0",
}


# wait_promoted: a query on its kept connection every 20 ms; a refused connection retried every 0.2 s
# (each refusal is a FATAL line in the server's log)
PROMOTION_POLL_SECONDS, CONNECT_RETRY_SECONDS = 0.02, 0.2
START_POLL_SECONDS = 0.01  # start: postmaster.pid read this often (pg_ctl -w: every 0.1 s)
PROMOTED = "SELECT NOT pg_catalog.pg_is_in_recovery()"
PAUSED_OR_PROMOTED = (
    "SELECT NOT pg_catalog.pg_is_in_recovery()"
    " OR pg_catalog.pg_get_wal_replay_pause_state() = 'paused'"
)

CONNECTION_REFUSALS = (
    "FATAL:  the database system is ",  # starting up, in recovery mode, shutting down, not (yet) accepting connections
    "FATAL:  sorry, too many clients already",
)


@dataclass
class Cluster:
    """One PostgreSQL cluster: a data directory, a port and a log file."""

    datadir: Path
    port: int
    host: str = "127.0.0.1"  # or the directory of its unix socket (temporary clusters)

    @property
    def logfile(self) -> Path:
        """Server log (kept beside the data directory so removing the cluster keeps it readable)."""
        return self.datadir.parent / f"{self.datadir.name}.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """Connection string to one database of this cluster."""
        return dsn(self.port, dbname, host=self.host)

    def initdb(self, settings: dict[str, str] | None = None) -> None:
        """Create the data directory with initdb and write this cluster's settings."""
        give_to_server_user(self.datadir.parent)
        run_server_cmd(
            [
                pg_bin("initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ]
        )
        pg_hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        pg_hba += "host replication all 127.0.0.1/32 trust\n"
        self.write_file("pg_hba.conf", pg_hba)
        self.configure({**BASE_SETTINGS, **(settings or {})})

    def write_file(self, name: str, text: str) -> None:
        """Write a file inside the data directory, owned by the server user."""
        path = self.datadir / name
        path.write_text(text)
        user = server_user()
        if not user.is_current:
            os.chown(path, user.uid, user.gid)
        os.chmod(path, 0o600)

    def configure(self, settings: dict[str, str]) -> None:
        """Write restore_assets.conf (included from postgresql.conf) with the given settings."""
        conf = self.datadir / "postgresql.conf"
        text = conf.read_text()
        include = "include_if_exists = 'restore_assets.conf'\n"
        if include not in text:
            user = server_user()
            conf.write_text(text + "\n" + include)
            if not user.is_current:
                os.chown(conf, user.uid, user.gid)
        body = "".join(f"{k} = {v}\n" for k, v in {"port": str(self.port), **settings}.items())
        self.write_file("restore_assets.conf", body)

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until it accepts connections (or fail with its log)."""
        began = time.time()
        # pg_ctl -w reads postmaster.pid every 100 ms: the same read every 10 ms here answers
        # sooner; pg_ctl's own wait still reports a server that fails to start
        proc = subprocess.Popen(
            [
                pg_bin("pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                f"-p {self.port}",
                "start",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **_as_server_user(),
        )
        deadline = time.monotonic() + timeout + 30
        while not self._ready_since(began):
            if proc.poll() is not None:
                out = proc.communicate()[0]
                if proc.returncode == 0:
                    return
                raise FleetError(
                    f"PostgreSQL on port {self.port} did not start:"
                    f" {self.last_log_error() or out.strip()}"
                )
            if time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                raise FleetError(f"pg_ctl did not finish within {timeout + 30:.0f}s")
            time.sleep(START_POLL_SECONDS)
        # pg_ctl ends at its next look (within 100 ms): reaped meanwhile
        threading.Thread(target=proc.communicate, daemon=True).start()

    def _ready_since(self, began: float) -> bool:
        """True once postmaster.pid, written by a postmaster started at `began` or later, says
        it accepts connections (ready, or standby: a hot standby's read-only ones)."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
            pid, started, status = int(lines[0]), int(lines[2]), lines[7].strip()
        except (OSError, IndexError, ValueError):
            return False
        if started < began - 2 or status not in ("ready", "standby"):  # as pg_ctl compares
            return False
        try:
            os.kill(pid, 0)  # not the file of an earlier server that stopped without removing it
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def is_running(self) -> bool:
        """True when a postmaster runs on this data directory."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if the file exists."""
        try:
            first = (self.datadir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server if it runs; kill the postmaster if pg_ctl cannot."""
        if not self.datadir.exists() or not self.is_running():
            return
        proc = run_server_cmd(
            [
                pg_bin("pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                mode,
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
            check=False,
            timeout=timeout + 30,
        )
        if proc.returncode != 0 and self.is_running():
            pid = self.pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                time.sleep(0.5)

    def remove(self) -> None:
        """Stop the server and delete its data directory and log (idempotent)."""
        self.stop(mode="immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.logfile.unlink(missing_ok=True)

    def last_log_error(self) -> str | None:
        """The last FATAL/PANIC/ERROR line of the server log, if any.

        A server refusing a client while it starts or stops logs FATAL lines of its own ("the
        database system is in recovery mode"); those answer a connection attempt, they are not
        why the server failed, so they are skipped.
        """
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            if any(k in line for k in ("FATAL:", "PANIC:", "ERROR:")):
                if any(r in line for r in CONNECTION_REFUSALS):
                    continue
                return line.strip()
        return lines[-1].strip() if lines else None

    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        """A psycopg connection to one database of this cluster."""
        return psycopg.connect(self.dsn(dbname), **kwargs)

    def wait_promoted(
        self,
        timeout: float,
        user: str | None = None,
        what: str = "cluster",
        dbname: str = "postgres",
        paused: bool = False,
    ) -> None:
        """Wait until the server left recovery (or, with paused, paused replay at its recovery
        target: recovery_target_action = pause); FleetError with its log if it stops or is late.
        A poll is a query on one kept connection to dbname (a hot standby admits it; promotion
        keeps it)."""
        done = PAUSED_OR_PROMOTED if paused else PROMOTED
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        conn: psycopg.Connection | None = None
        try:
            while time.monotonic() < deadline:
                if not self.is_running():
                    raise FleetError(f"{what} stopped during recovery: {self.last_log_error()}")
                try:
                    if conn is None or conn.closed:
                        conn = self.connect(dbname, user=user, connect_timeout=5, autocommit=True)
                    if conn.execute(done).fetchone()[0]:
                        return
                except psycopg.OperationalError as exc:
                    if f'database "{dbname}" does not exist' in str(exc):
                        # dropped before the point recovery reaches: waiting cannot help
                        raise FleetError(
                            f"{what}: database {dbname!r} does not exist at the restore point"
                        ) from exc
                    last = exc
                    if conn is not None:
                        conn.close()
                    conn = None
                time.sleep(CONNECT_RETRY_SECONDS if conn is None else PROMOTION_POLL_SECONDS)
        finally:
            if conn is not None:
                conn.close()
        raise FleetError(
            f"{what} on port {self.port} not {'at its target' if paused else 'promoted'}"
            f" within {timeout:.0f}s:"
            f" {self.last_log_error() or last}"
        )


def start_new_cluster(
    datadir: Path, settings: dict[str, str] | None = None, attempts: int = 5
) -> Cluster:
    """initdb and start a cluster on a free port, retrying on a port taken in the meantime."""
    last: Exception | None = None
    cluster = Cluster(datadir, free_port())
    cluster.initdb(settings)
    for _ in range(attempts):
        try:
            cluster.start()
            return cluster
        except FleetError as exc:
            last = exc
            if "could not bind" not in str(exc) and "Address already in use" not in str(exc):
                break
            cluster.port = free_port()
            cluster.configure({**BASE_SETTINGS, **(settings or {})})
    cluster.remove()
    raise FleetError(f"could not start a cluster in {datadir}: {last}")
