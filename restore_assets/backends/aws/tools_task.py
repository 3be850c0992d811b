"""The pg tools task's two roles: the DDL task (extract, apply pre, apply post) and the COPY mover.

Each run writes a spec to S3, launches the task through the launcher (`ecs.TaskLauncher`) and reads
its result back. The Dagster process never hands a password to the task: the task reads the
temporary and the production secrets itself (by name/ARN in its environment), reads its spec from
S3 and writes its result back to S3 (`<prefix><restore_id>/tasks/<mode>-<n>.result.json`).
"""

from __future__ import annotations

import json
import logging
import secrets as _random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

import psycopg

from restore_assets.backends.aws.artifacts import S3Artifacts
from restore_assets.backends.aws.config import AwsConfig, temp_secret_name
from restore_assets.backends.aws.ecs import TaskCall, TaskFailed, TaskLauncher
from restore_assets.backends.aws.secrets import redact
from restore_assets.backends.protocols import RecordResource
from restore_assets.core.errors import CopyError, DdlError, RestoreError
from restore_assets.core.schema_restore.services import DdlBatch, SchemaCopy

log = logging.getLogger("restore_assets.aws")

BUNDLE_ARTIFACT = "ddl/bundle.json"


def task_environment(cfg: AwsConfig, restore_id: str) -> dict[str, str]:
    """What the task needs to find its spec, its secrets (by name, never values) and the audit table."""
    env = {
        "RESTORE_ASSETS_RESTORE_ID": restore_id,
        "RESTORE_ASSETS_ARTIFACT_BUCKET": cfg.artifact_bucket,
        "RESTORE_ASSETS_ARTIFACT_PREFIX": cfg.artifact_prefix,
        "RESTORE_ASSETS_ARTIFACT_SSE": cfg.artifact_sse,
        "RESTORE_ASSETS_AUDIT_TABLE": cfg.audit_table,
        "RESTORE_ASSETS_PROD_SECRET": cfg.secret_arn,
        "RESTORE_ASSETS_TEMP_SECRET": temp_secret_name(restore_id),
        "RESTORE_ASSETS_LOCK_TIMEOUT": cfg.lock_timeout,
    }
    if cfg.artifact_kms_key_id:
        env["RESTORE_ASSETS_ARTIFACT_KMS_KEY_ID"] = cfg.artifact_kms_key_id
    if cfg.region_name:
        env["AWS_REGION"] = cfg.region_name
        env["AWS_DEFAULT_REGION"] = cfg.region_name
    if cfg.endpoint_url:
        env["RESTORE_ASSETS_AWS_ENDPOINT_URL"] = cfg.endpoint_url
    return env


class RemoteTasks:
    """Writes a task spec to S3, launches the task, and reads its result back (one restore)."""

    def __init__(
        self,
        cfg: AwsConfig,
        artifacts: S3Artifacts,
        launcher: TaskLauncher,
        restore_id: str,
        record: RecordResource | None,
    ) -> None:
        self.cfg = cfg
        self.artifacts = artifacts
        self.launcher = launcher
        self.restore_id = restore_id
        self.record = record

    def run(self, mode: str, spec: dict[str, Any], error: type[RestoreError]) -> dict[str, Any]:
        """Run one mode of the task entry point with a spec; its result, or `error` with its cause."""
        rid = self.restore_id
        name = f"tasks/{mode}-{time.strftime('%Y%m%dT%H%M%S')}-{_random.token_hex(3)}"
        spec_name, result_name = f"{name}.spec.json", f"{name}.result.json"
        self.artifacts.put(rid, spec_name, json.dumps(spec))
        command = [mode, "--restore-id", rid, "--spec", spec_name, "--result", result_name]
        env = task_environment(self.cfg, rid)
        log.info("restore %s: running the pg tools task (%s)", rid, mode)
        try:
            self.launcher.run(TaskCall(command, env, rid, self.cfg.waiter_timeout_s, self.record))
        except TaskFailed as exc:
            cause = self._result_error(result_name)
            raise error(redact(f"{mode} task failed: {cause or exc}")) from None
        try:
            result = json.loads(self.artifacts.get(rid, result_name))
        except RestoreError:
            raise error(f"{mode} task finished without writing its result {result_name}") from None
        if not result.get("ok"):
            raise error(redact(f"{mode} task failed: {result.get('error')}"))
        return result

    def _result_error(self, result_name: str) -> str | None:
        try:
            return json.loads(self.artifacts.get(self.restore_id, result_name)).get("error")
        except Exception:  # noqa: BLE001 - the task may have died before writing a result
            return None


def database_of(dsn: str) -> str:
    """The database name of a connection string ('postgres' when it names none)."""
    return str(psycopg.conninfo.conninfo_to_dict(dsn).get("dbname") or "postgres")


@dataclass
class TaskRole:
    """The pg tools task in one role, bound to a restore (and a stage) before it runs."""

    cfg: AwsConfig
    artifacts: S3Artifacts
    launcher: TaskLauncher
    restore_id: str | None = None
    record: RecordResource | None = None
    stage: str = ""
    what: ClassVar[str] = "the pg tools task"

    def bind_restore(self, restore_id: str, record: RecordResource, stage: str = "") -> Self:
        """This role bound to one restore and stage (a DDL task's extract, pre or post)."""
        return replace(self, restore_id=restore_id, record=record, stage=stage)

    def _remote(self, error: type[RestoreError]) -> RemoteTasks:
        if self.restore_id is None:
            raise error(f"{self.what} must be bound to a restore (phases bind it)")
        return RemoteTasks(self.cfg, self.artifacts, self.launcher, self.restore_id, self.record)


class EcsDdlTask(TaskRole):
    """The DdlTask protocol in the pg tools task: extract (pg_dump 15 + pglast), apply pre/post."""

    what = "the ECS DDL task"

    def extract(self, dsn: str, schemas: list[str], suffix: str) -> Any:
        """Dump, split and rename in the task (from the temporary secret); the DdlBundle it stored."""
        from restore_assets.core.ddl import DdlBundle

        remote = self._remote(DdlError)
        spec = {"database": database_of(dsn), "schemas": list(schemas), "suffix": suffix}
        remote.run("extract", spec, DdlError)
        data = json.loads(self.artifacts.get(remote.restore_id, BUNDLE_ARTIFACT))
        return DdlBundle(**data)

    def apply(self, batch: DdlBatch, on_start: Callable[[int], None]) -> None:
        """Guard here, then apply in the task with the production secret (one transaction)."""
        from restore_assets.core import ddl

        ddl.guard(batch.statements, batch.allowed_schemas)
        remote = self._remote(DdlError)
        mode = "apply-post" if self.stage == "post" else "apply-pre"
        spec = {
            "database": database_of(batch.dsn),
            "statements": list(batch.statements),
            "allowed_schemas": sorted(batch.allowed_schemas),
        }
        result = remote.run(mode, spec, DdlError)
        if result.get("xid") is not None:
            on_start(int(result["xid"]))

    def apply_post(self, batch: DdlBatch) -> dict[str, int]:
        """Guard here, then apply post in the task (its apply-post mode)."""
        self.apply(batch, lambda _xid: None)
        return {"statements": len(batch.statements)}


class EcsCopyMover(TaskRole):
    """The Mover protocol for `mover: copy`: the parallel COPY mover runs inside the task."""

    what = "the ECS copy mover"

    def copy(self, job: SchemaCopy, progress: Callable[[Any], None] | None) -> Any:
        """Copy one schema in the task (temporary secret -> production secret); its CopyReport."""
        from restore_assets.core.mover import CopyReport, TableCopy

        remote = self._remote(CopyError)
        spec = {
            "database": database_of(job.source_dsn),
            "schema": job.schema,
            "target_schema": job.target_schema,
            "tables": job.tables,
            "workers": self.cfg.copy_workers,
        }
        result = remote.run("copy", spec, CopyError)
        data = result["report"]
        report = CopyReport(
            tables=[TableCopy(**t) for t in data.get("tables", [])],
            seconds=float(data.get("seconds") or 0),
            errors=list(data.get("errors") or []),
        )
        if progress is not None:
            for t in report.tables:
                progress(t)
        return report
