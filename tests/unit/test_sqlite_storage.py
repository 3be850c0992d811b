"""The persistent instance's pooled SQLite event log (jobs/sqlite_storage.py): same files as Dagster's
stock storage, read back across instance objects and by the stock storage, synchronous=NORMAL."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from restore_assets.jobs import sqlite_storage
from restore_assets.jobs.in_process import _persistent
from restore_assets.jobs.sqlite_storage import (
    PooledSqliteEventLogStorage,
    RestoreSqliteStorage,
    pooled_storage_data,
)


@dg.op
def one() -> int:
    """An op with an output."""
    return 1


@dg.op
def two(value: int) -> int:
    """An op that adds one."""
    return value + 1


@dg.job
def tiny() -> None:
    """Two ops: a handful of events."""
    two(one())


def home_of(tmp_path: Path) -> Path:
    """A Dagster home with a settings file and no storage settings (the stock SQLite storage)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def run_tiny(home: Path) -> str:
    """Execute the tiny job on the home's persistent instance; its run id."""
    with _persistent(home) as instance:
        assert isinstance(instance.get_ref().storage, RestoreSqliteStorage)
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        result = tiny.execute_in_process(instance=instance)
        assert result.success
        return result.run_id


def event_types(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The Dagster event types of a run's log, in order."""
    return [e.dagster_event.event_type_value for e in instance.all_logs(run_id) if e.dagster_event]


def test_runs_are_read_back_by_a_second_instance_and_by_the_stock_storage(tmp_path: Path):
    home = home_of(tmp_path)
    first = run_tiny(home)
    second = run_tiny(home)  # a second instance object on the same home, same files
    with _persistent(home) as instance:
        pooled = {run_id: event_types(instance, run_id) for run_id in (first, second)}
        assert {r.run_id for r in instance.get_runs()} == {first, second}
        assert instance.get_run_by_id(first).status == dg.DagsterRunStatus.SUCCESS
    assert "PIPELINE_SUCCESS" in pooled[first] and "STEP_SUCCESS" in pooled[first]
    # what `dagster dev` on this home does: Dagster's stock storage from the same settings
    with dg.DagsterInstance.from_config(str(home)) as stock:
        assert type(stock.event_log_storage) is SqliteEventLogStorage
        assert {run_id: event_types(stock, run_id) for run_id in (first, second)} == pooled
        assert stock.get_run_by_id(second).status == dg.DagsterRunStatus.SUCCESS
        run_status = stock.event_log_storage.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.RUN_SUCCESS)
        )  # the index shard's mirror of run status events
        assert {r.run_id for r in run_status} == {first, second}
    # and the other way round: what the stock storage wrote, the pooled one reads
    with dg.DagsterInstance.from_config(str(home)) as stock:
        third = tiny.execute_in_process(instance=stock).run_id
        expected = event_types(stock, third)
    with _persistent(home) as instance:
        assert event_types(instance, third) == expected


def test_connections_are_synchronous_normal_on_wal_and_kept(tmp_path: Path):
    base = tmp_path / "runs"
    storage = PooledSqliteEventLogStorage(str(base))
    try:
        for _ in range(3):
            with storage.run_connection("abc") as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                level = conn.exec_driver_sql("PRAGMA synchronous").scalar()
        assert (mode, level) == ("wal", 1)  # 1 = NORMAL (Dagster's stock: 2 = FULL)
        with storage.index_connection() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
        engine = storage._engines["abc"]
        assert engine.pool.checkedin() == 1  # one connection, kept open between uses
    finally:
        storage.dispose()
    assert storage._engines == {}
    stock = SqliteEventLogStorage(str(base))
    with stock.run_connection("abc") as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2


def _layout(path: Path) -> tuple:
    """A SQLite file's tables, indexes, alembic revision and journal mode."""
    conn = sqlite3.connect(path)
    try:
        return (
            sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()),
            conn.execute("SELECT * FROM alembic_version").fetchall(),
            conn.execute("PRAGMA journal_mode").fetchall(),
        )
    finally:
        conn.close()


def test_new_run_files_are_copies_of_an_empty_one_dagster_made(tmp_path: Path):
    base = tmp_path / "runs"
    storage = PooledSqliteEventLogStorage(str(base))
    stock = SqliteEventLogStorage(str(tmp_path / "stock"))
    try:
        for run in ("a", "b"):
            with storage.run_connection(run):
                pass
        with stock.run_connection("a"):
            pass
        empty = base / f".empty-run-{dg.__version__}.db"
        assert empty.is_file() and not Path(f"{empty}-wal").exists()
        for run in ("a", "b"):
            assert _layout(base / f"{run}.db") == _layout(tmp_path / "stock" / "a.db")
        assert sorted(storage.get_all_run_ids()) == ["a", "b"]  # the empty file is no run
        # a run file that exists already is Dagster's to check, never replaced by a copy
        with stock.run_connection("c"):
            pass
        (tmp_path / "stock" / "c.db").rename(base / "c.db")
        inode = (base / "c.db").stat().st_ino
        with storage.run_connection("c"):
            pass
        assert (base / "c.db").stat().st_ino == inode
    finally:
        storage.dispose()
        stock.dispose()


def test_run_engines_are_bounded(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sqlite_storage, "MAX_RUN_ENGINES", 2)
    storage = PooledSqliteEventLogStorage(str(tmp_path / "runs"))
    try:
        for run_id in ("a", "b", "c"):
            with storage.run_connection(run_id):
                pass
        with storage.index_connection():
            pass
        assert sorted(storage._engines) == ["b", "c", "index"]
    finally:
        storage.dispose()


@pytest.mark.parametrize(
    ("module", "cls", "swapped"),
    [
        ("dagster._core.storage.sqlite_storage", "DagsterSqliteStorage", True),
        ("dagster_postgres", "DagsterPostgresStorage", False),
        ("mine", "DagsterSqliteStorage", False),
    ],
)
def test_only_the_stock_sqlite_storage_is_swapped(module: str, cls: str, swapped: bool):
    data = dg._serdes.ConfigurableClassData(module, cls, "base_dir: /x\n")
    out = pooled_storage_data(data)
    assert (out.class_name == "RestoreSqliteStorage") is swapped
    assert out.config_yaml == data.config_yaml
    assert pooled_storage_data(None) is None


def test_a_stock_watcher_sees_the_pooled_writes_live(tmp_path: Path):
    """The webserver's live view of a run (stock storage, watchdog on the run's .db file)."""
    base = str(tmp_path / "runs")
    pooled = PooledSqliteEventLogStorage(base)
    stock = SqliteEventLogStorage(base)
    seen: list[str] = []

    def entry(message: str) -> EventLogEntry:
        """A plain log entry of run `r1`."""
        return EventLogEntry(
            error_info=None,
            level=logging.INFO,
            user_message=message,
            run_id="r1",
            timestamp=time.time(),
        )

    try:
        pooled.store_event(entry("first"))
        stock.watch("r1", None, lambda event, _cursor: seen.append(event.user_message))
        time.sleep(0.5)  # the observer is running
        for message in ("second", "third"):
            pooled.store_event(entry(message))
            deadline = time.monotonic() + 10
            while message not in seen and time.monotonic() < deadline:
                time.sleep(0.05)
        assert seen[-2:] == ["second", "third"]
    finally:
        stock.dispose()
        pooled.dispose()
