"""Execute a job in this process on a persistent Dagster instance (what jobs/launch.py launches):
$DAGSTER_HOME's when it is set, else the fleet root's `<root>/dagster`."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.sqlite_storage import pooled_storage_data
from restore_assets.jobs.tags import RESTORE_ID_TAG

RESOURCE_FIELDS = ("root", "copy_workers", "provision_timeout_s", "lock_timeout", "keep_artifacts")


# The instance settings shipped with the package (the run queue and its concurrency limits)
INSTANCE_SETTINGS = Path(__file__).with_name("dagster.yaml")


def fleet_dagster_home(root: str | Path) -> Path:
    """The fleet root's Dagster home, `<root>/dagster`, created with the shipped dagster.yaml."""
    home = Path(root) / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():  # an operator's own settings are kept
        shutil.copyfile(INSTANCE_SETTINGS, settings)
    return home


class InProcessInstance(dg.DagsterInstance):
    """The persistent instance of the runs this process executes.

    At every run start Dagster applies the instance's `python_logs` settings with
    `logging.config.dictConfig`, even when there are none, and dictConfig closes every logging
    handler of the process: two restores executing in one process (threads) then deadlock on the
    logging locks. With no `python_logs` settings this instance skips that step; with some, it
    applies them as Dagster does."""

    def get_yaml_python_handlers(self) -> Sequence[logging.Handler]:
        """The handlers of the instance's python_logs settings (none when it has none)."""
        if not self.get_python_log_dagster_handler_config():
            return []
        return super().get_yaml_python_handlers()


_OPENING = threading.Lock()


def _persistent(home: str | Path) -> dg.DagsterInstance:
    """Open the instance of a Dagster home. Opening creates its SQLite tables the first time, which
    two openers at once would both try: one opener at a time, in this process and across processes.
    Dagster's stock SQLite storage is opened with the pooled event log of jobs/sqlite_storage.py."""
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import ConfigurableClassData

    with _OPENING, open(Path(home) / ".restore-assets-open.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ref = InstanceRef.from_dir(str(home))
        if ref.custom_instance_class_data is None:  # an instance_class of the operator's is kept
            cls = ConfigurableClassData(__name__, InProcessInstance.__name__, "{}\n")
            ref = ref._replace(custom_instance_class_data=cls)
        # Dagster's stock SQLite storage (the default) becomes the pooled one: same files
        ref = ref._replace(storage_data=pooled_storage_data(ref.storage_data))
        return dg.DagsterInstance.from_ref(ref)


@contextlib.contextmanager
def dagster_instance(root: str | Path | None = None) -> Iterator[dg.DagsterInstance]:
    """The persistent instance of $DAGSTER_HOME when it is set, else of the fleet root's home
    (`dagster dev` started on the same home shows the runs, its sensors see them); ephemeral only
    when neither is known."""
    home = os.environ.get("DAGSTER_HOME") or (fleet_dagster_home(root) if root else None)
    if home:
        with _persistent(home) as instance:
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


def backend_resource(config: dict[str, Any]) -> RestoreBackend:
    """The `backend` resource of a backend configuration mapping (unset values: the defaults)."""
    kwargs = {k: config[k] for k in RESOURCE_FIELDS if config.get(k) is not None}
    if "root" in kwargs:
        kwargs["root"] = str(kwargs["root"])
    return RestoreBackend(
        backend=config.get("backend") or "local",
        config_file=str(config.get("config_file") or ""),
        **kwargs,
    )


_FROZEN = threading.Event()


def _freeze_loaded_code() -> None:
    """Once per process, once the job's code is loaded: move the objects alive now (the loaded
    modules and definitions, some 200,000) out of the cyclic garbage collector's scans. Each
    full collection scanned them all again, 0.05-0.13 s apiece, a few times per restore;
    objects made later are collected as before."""
    if not _FROZEN.is_set():
        _FROZEN.set()
        gc.freeze()


def execute_schema_restore(
    run_config: dict[str, Any], backend_config: dict[str, Any], restore_id: str
) -> tuple[str, bool, str]:
    """Run the schema_restore job in process; its run id, success and first step failure."""
    from restore_assets.jobs.schema_restore import schema_restore

    _freeze_loaded_code()
    with dagster_instance(backend_config.get("root")) as instance:
        result = schema_restore.execute_in_process(
            run_config=run_config,
            resources={"backend": backend_resource(backend_config)},
            raise_on_error=False,
            tags={RESTORE_ID_TAG: restore_id},
            instance=instance,
        )
    return result.run_id, result.success, "" if result.success else first_failure(result)


def first_failure(result: Any) -> str:
    """The message of the first failed step, else of the run's failure ('failed' when none says)."""
    for event in result.all_events:
        # a run failure (a refused request ends its run between steps) has no step failure data
        if event.is_step_failure and event.step_failure_data is not None:
            return (
                event.step_failure_data.error.message.strip()
                if event.step_failure_data.error
                else "failed"
            )
    for event in result.all_events:
        if event.is_run_failure and event.message:
            return event.message.strip()
    return "failed"
