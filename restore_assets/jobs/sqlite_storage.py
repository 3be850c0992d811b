"""The SQLite storage of the persistent Dagster instance the CLI and notebooks run on
(jobs/in_process.py): Dagster's own SQLite storage, same files, same schema, same migrations, with
an event log that is cheap per event.

Dagster's SqliteEventLogStorage builds a new SQLAlchemy engine and connection for every event and
commits with SQLite's default synchronous=FULL; closing the connection then checkpoints the WAL into
the run's file (more fsyncs). A small restore writes about 136 events, and that was 40-50% of its
wall time. PooledSqliteEventLogStorage keeps one engine (one pooled connection) per shard file and
sets `PRAGMA synchronous=NORMAL` on connections to files in WAL mode (every file Dagster creates is).
With WAL, NORMAL is durable against a crash of the process; an OS crash or power loss can lose the
last commits of this history of runs (what the Dagster UI shows), never corrupt it. The restore's
own audit log (backends/local/audit.py) is a separate SQLite file and is unchanged.

A run's own file (`<run id>.db`) is made by copying an empty one: Dagster's initialisation of a new
file (create the tables, switch to WAL, check and stamp the alembic revision, which parses every
migration script) took 0.15-0.2 s of each restore. The first new run file of a process is
initialised by Dagster itself into `.empty-run-<dagster version>.db` beside the runs, and each new
run's file is a copy of it (the same bytes Dagster's initialisation writes); an existing file, or
no usable template, takes Dagster's initialisation as before.

The Dagster webserver and daemon started on the same home keep Dagster's stock storage and read the
same files. Their live view of a run watches the run's `.db` file for changes; since the pooled
connection no longer checkpoints on every close, the file's mtime is touched after each event so
that view stays live.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster import __version__ as DAGSTER_VERSION
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    SqliteStorageConfig,
    _event_logs_directory,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, QueuePool

# Run shards whose engine (and open connection) a storage keeps at once, besides the index shard: a
# webserver reading many runs does not hold a file open per run.
MAX_RUN_ENGINES = 8

STOCK_STORAGE = ("dagster._core.storage.sqlite_storage", "DagsterSqliteStorage")


def _synchronous_normal_on_wal(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """At checkout, once per connection: synchronous=NORMAL when the file is in WAL mode."""
    if record.info.get("synchronous_set"):
        return
    cursor = dbapi_connection.cursor()
    try:
        (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
            record.info["synchronous_set"] = True
    finally:
        cursor.close()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log with one engine per shard file (per process) and
    synchronous=NORMAL on WAL files; same files and schema as SqliteEventLogStorage."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: SqliteStorageConfig
    ) -> PooledSqliteEventLogStorage:
        """The storage of a `base_dir` config (as SqliteEventLogStorage's)."""
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine, made once per process (caller holds self._db_lock)."""
        if self._engines_pid != os.getpid():  # forked: the parent's connections are not ours
            for engine in self._engines.values():
                engine.dispose(close=False)
            self._engines.clear()
            self._engines_pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = db.create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=-1,  # _initdb inspects on a second connection while holding one
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        db.event.listen(engine, "checkout", _synchronous_normal_on_wal)
        self._engines[shard] = engine
        runs = [name for name in self._engines if name != INDEX_SHARD_NAME]
        for name in runs[: max(0, len(runs) - MAX_RUN_ENGINES)]:
            self._engines.pop(name).dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # As SqliteEventLogStorage._connect (one connection at a time per storage, under its lock),
        # on the shard's kept engine instead of a new one.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                if shard == INDEX_SHARD_NAME or not self._copy_empty_run(shard):
                    self._initdb(engine)
                # close init's connections: kept, a new file's first connections (made before
                # its switch to WAL) read as not WAL and stayed synchronous=FULL (seen in tests)
                engine.dispose()
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _empty_run_file(self) -> str | None:
        """An empty run file initialised by Dagster (made once per Dagster version); None when it
        cannot be made whole (its WAL not checkpointed into it)."""
        path = os.path.join(self._base_dir, f".empty-run-{DAGSTER_VERSION}.db")
        if os.path.exists(path):
            return path
        name = f".empty-run-{os.getpid()}-{os.urandom(4).hex()}"
        tmp = os.path.join(self._base_dir, f"{name}.db")
        engine = db.create_engine(
            self.conn_string_for_shard(name),
            poolclass=NullPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        try:
            self._initdb(engine)
        finally:
            engine.dispose()
        if os.path.exists(f"{tmp}-wal") or not os.path.exists(tmp):
            for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
            return None
        os.replace(tmp, path)  # whole or not at all; a concurrent maker's copy is the same
        with contextlib.suppress(OSError):
            os.unlink(f"{tmp}-shm")
        return path

    def _copy_empty_run(self, shard: str) -> bool:
        """Make a new run's file as a copy of the empty one; False when the file exists already
        or there is no empty one (Dagster's initialisation then runs)."""
        path = self.path_for_shard(shard)
        if os.path.exists(path):
            return False
        empty = self._empty_run_file()
        if empty is None:
            return False
        tmp = f"{path}.{os.urandom(4).hex()}.tmp"
        shutil.copyfile(empty, tmp)
        try:
            os.link(tmp, path)  # never over an existing file
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def store_event(self, event: EventLogEntry) -> None:
        """Store the event, then touch the run's file: a webserver watching the run sees it."""
        super().store_event(event)
        with contextlib.suppress(OSError):
            os.utime(self.path_for_shard(event.run_id))

    def _dispose_engines(self, keep_index: bool) -> None:
        """Close the kept engines' connections (all, or all but the index shard's)."""
        with self._db_lock:
            for name in [n for n in self._engines if not (keep_index and n == INDEX_SHARD_NAME)]:
                self._engines.pop(name).dispose()

    def wipe(self) -> None:
        """Close the run shards' connections before their files are removed, then wipe."""
        self._dispose_engines(keep_index=True)
        super().wipe()

    def dispose(self) -> None:
        """Stop watching and close every kept connection."""
        super().dispose()
        self._dispose_engines(keep_index=False)


class RestoreSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage of a home (`base_dir`) with PooledSqliteEventLogStorage as its
    event log; the run and schedule storages are Dagster's."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: SqliteStorageConfig
    ) -> RestoreSqliteStorage:
        """The storage of a `base_dir` config (as DagsterSqliteStorage's)."""
        return cls.from_local(inst_data=inst_data, **config_value)


def pooled_storage_data(data: ConfigurableClassData | None) -> ConfigurableClassData | None:
    """RestoreSqliteStorage in place of Dagster's stock SQLite storage (same config); any other
    storage (an operator's Postgres, a custom class) unchanged."""
    if data is None or (data.module_name, data.class_name) != STOCK_STORAGE:
        return data
    return ConfigurableClassData(__name__, RestoreSqliteStorage.__name__, data.config_yaml)
