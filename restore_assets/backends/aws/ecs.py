"""The pg tools task on ECS: a small launcher seam, and the DDL task and COPY mover that run in it.

The Dagster process never hands a password to the task: the task reads the temporary and the
production secrets itself (by name/ARN in its environment), reads its spec from S3 and writes its
result back to S3 (`<prefix><restore_id>/tasks/<mode>-<n>.result.json`).
"""

from __future__ import annotations

import json
import logging
import secrets as _random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from restore_assets.backends.aws.artifacts import S3Artifacts
from restore_assets.backends.aws.clients import error_code, is_not_found
from restore_assets.backends.aws.config import AwsConfig, tags, temp_secret_name
from restore_assets.backends.aws.ownership import OWNER_KEY, check_owned
from restore_assets.backends.aws.secrets import redact
from restore_assets.backends.protocols import RecordResource
from restore_assets.core.errors import CopyError, DdlError, RestoreError

log = logging.getLogger("restore_assets.aws")

TASK_RESOURCE = "ecs-task"
BUNDLE_ARTIFACT = "ddl/bundle.json"


class TaskFailed(RestoreError):
    """The ECS task stopped with a non-zero exit code, failed to start, or timed out."""

    def __init__(self, message: str, task_arn: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.task_arn = task_arn
        self.exit_code = exit_code


@dataclass
class TaskRun:
    """A finished task: its ARN and its container's exit code (0)."""

    task_arn: str | None
    exit_code: int | None
    metadata: dict[str, Any] | None = None


class TaskLauncher(Protocol):
    """Runs the pg tools container with a command and environment; raises TaskFailed unless it exits 0."""

    def run(
        self,
        command: list[str],
        environment: dict[str, str],
        *,
        restore_id: str,
        timeout: float,
        record: RecordResource | None = None,
    ) -> TaskRun:
        """Run one task to completion within the time limit."""
        ...


def run_task_params(
    cfg: AwsConfig, command: list[str], environment: dict[str, str], restore_id: str
) -> dict[str, Any]:
    """The ecs.run_task parameters: configured cluster, task definition, private subnets, tags."""
    return {
        "cluster": cfg.ecs_cluster,
        "taskDefinition": cfg.ecs_task_definition,
        "launchType": "FARGATE",
        "count": 1,
        "startedBy": "restore-assets",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(cfg.ecs_subnets),
                "securityGroups": list(cfg.ecs_security_group_ids),
                "assignPublicIp": "DISABLED",
            }
        },
        "overrides": {
            "containerOverrides": [
                {
                    "name": cfg.ecs_container_name,
                    "command": list(command),
                    "environment": [
                        {"name": k, "value": v} for k, v in sorted(environment.items())
                    ],
                }
            ]
        },
        "tags": tags(restore_id, style="key"),
        "enableECSManagedTags": True,
        "propagateTags": "TASK_DEFINITION",
    }


def check_stopped_task(task: dict[str, Any], container_name: str) -> int:
    """The exit code of a stopped task's container; TaskFailed when it failed to start or exited non-zero."""
    arn = task.get("taskArn")
    if task.get("stopCode") == "TaskFailedToStart":
        raise TaskFailed(f"ECS task {arn} failed to start: {task.get('stoppedReason')}", arn)
    containers = task.get("containers") or []
    chosen = [c for c in containers if c.get("name") == container_name] or containers
    if not chosen:
        raise TaskFailed(f"ECS task {arn} has no container {container_name!r}", arn)
    c = chosen[0]
    code = c.get("exitCode")
    if code is None:
        raise TaskFailed(
            f"ECS task {arn}: container {c.get('name')} has no exit code"
            f" ({c.get('reason') or task.get('stoppedReason') or 'unknown reason'})",
            arn,
        )
    if int(code) != 0:
        raise TaskFailed(
            f"ECS task {arn}: container {c.get('name')} exited with code {code}"
            f" ({c.get('reason') or task.get('stoppedReason') or 'see the task log'})",
            arn,
            int(code),
        )
    return 0


class EcsTaskLauncher:
    """run_task in the configured cluster, then wait (bounded) until it stops and check the exit code."""

    def __init__(self, cfg: AwsConfig, client: Any) -> None:
        self.cfg = cfg
        self.client = client

    def submit(
        self,
        command: list[str],
        environment: dict[str, str],
        restore_id: str,
        record: RecordResource | None = None,
    ) -> str:
        """Start the task; record it (so cleanup can stop it) and return its ARN."""
        resp = self.client.run_task(**run_task_params(self.cfg, command, environment, restore_id))
        if resp.get("failures"):
            f = resp["failures"][0]
            raise TaskFailed(
                f"ECS could not start the task: {f.get('reason')} {f.get('detail') or ''}"
            )
        arn = resp["tasks"][0]["taskArn"]
        if record is not None:
            record(
                TASK_RESOURCE,
                arn,
                {"cluster": self.cfg.ecs_cluster, "command": command[:1], OWNER_KEY: restore_id},
            )
        return arn

    def wait(self, task_arn: str, timeout: float) -> TaskRun:
        """Wait until the task stops (at most timeout seconds; then stop it) and check its exit code."""
        try:
            self.client.get_waiter("tasks_stopped").wait(
                cluster=self.cfg.ecs_cluster,
                tasks=[task_arn],
                WaiterConfig=self.cfg.waiter_config(timeout),
            )
        except Exception as exc:
            if type(exc).__name__ != "WaiterError":
                raise
            stop_task(self.client, task_arn, {"cluster": self.cfg.ecs_cluster})
            raise TaskFailed(
                f"ECS task {task_arn} did not finish within {timeout:.0f}s: stopped it", task_arn
            ) from None
        tasks = self.client.describe_tasks(cluster=self.cfg.ecs_cluster, tasks=[task_arn])["tasks"]
        if not tasks:
            raise TaskFailed(
                f"ECS task {task_arn} vanished before its exit code was read", task_arn
            )
        code = check_stopped_task(tasks[0], self.cfg.ecs_container_name)
        return TaskRun(task_arn, code)

    def run(
        self,
        command: list[str],
        environment: dict[str, str],
        *,
        restore_id: str,
        timeout: float,
        record: RecordResource | None = None,
    ) -> TaskRun:
        """submit + wait."""
        arn = self.submit(command, environment, restore_id, record)
        return self.wait(arn, timeout)


def stop_task(client: Any, task_arn: str, details: dict[str, Any]) -> None:
    """Stop a task if it still runs (idempotent: stopped or unknown is success)."""
    try:
        client.stop_task(
            cluster=details.get("cluster"), task=task_arn, reason="restore-assets cleanup"
        )
    except Exception as exc:
        if is_not_found(exc) or error_code(exc) in ("InvalidParameterException",):
            return
        raise


def stop_owned_task(client: Any, task_arn: str, details: dict[str, Any], owner: str) -> None:
    """Stop a recorded task once its tags prove it is restore `owner`'s (NotOwned otherwise);
    a task already gone is success."""
    try:
        found = client.describe_tasks(
            cluster=details.get("cluster"), tasks=[task_arn], include=["TAGS"]
        ).get("tasks", [])
    except Exception as exc:
        if is_not_found(exc) or error_code(exc) in ("ClusterNotFoundException",):
            return
        raise
    if not found:
        return
    check_owned("ECS task", task_arn, found[0].get("tags"), owner)
    if found[0].get("lastStatus") == "STOPPED":
        return
    stop_task(client, task_arn, details)


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
            self.launcher.run(
                command, env, restore_id=rid, timeout=self.cfg.waiter_timeout_s, record=self.record
            )
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


class EcsDdlTask:
    """The DdlTask protocol in the pg tools task: extract (pg_dump 15 + pglast), apply pre/post."""

    def __init__(
        self,
        cfg: AwsConfig,
        artifacts: S3Artifacts,
        launcher: TaskLauncher,
        restore_id: str | None = None,
        record: RecordResource | None = None,
        stage: str = "",
    ) -> None:
        self.cfg = cfg
        self.artifacts = artifacts
        self.launcher = launcher
        self.restore_id = restore_id
        self.record = record
        self.stage = stage

    def bind_restore(self, restore_id: str, record: RecordResource, stage: str = "") -> EcsDdlTask:
        """This DDL task bound to one restore and stage (extract, pre or post)."""
        return EcsDdlTask(self.cfg, self.artifacts, self.launcher, restore_id, record, stage)

    def _remote(self) -> RemoteTasks:
        if self.restore_id is None:
            raise DdlError("the ECS DDL task must be bound to a restore (phases bind it)")
        return RemoteTasks(self.cfg, self.artifacts, self.launcher, self.restore_id, self.record)

    def extract(self, dsn: str, schemas: list[str], suffix: str) -> Any:
        """Dump, split and rename in the task (from the temporary secret); the DdlBundle it stored."""
        from restore_assets.core.ddl import DdlBundle

        remote = self._remote()
        spec = {"database": database_of(dsn), "schemas": list(schemas), "suffix": suffix}
        remote.run("extract", spec, DdlError)
        data = json.loads(self.artifacts.get(remote.restore_id, BUNDLE_ARTIFACT))
        return DdlBundle(**data)

    def apply(
        self,
        dsn: str,
        statements: list[str],
        allowed_schemas: set[str],
        on_start: Callable[[int], None],
    ) -> None:
        """Guard here, then apply in the task with the production secret (one transaction)."""
        from restore_assets.core import ddl

        ddl.guard(statements, allowed_schemas)
        remote = self._remote()
        mode = "apply-post" if self.stage == "post" else "apply-pre"
        spec = {
            "database": database_of(dsn),
            "statements": list(statements),
            "allowed_schemas": sorted(allowed_schemas),
        }
        result = remote.run(mode, spec, DdlError)
        if result.get("xid") is not None:
            on_start(int(result["xid"]))

    def apply_post(
        self, dsn: str, statements: list[str], allowed_schemas: set[str]
    ) -> dict[str, int]:
        """Guard here, then apply post in the task (its apply-post mode)."""
        self.apply(dsn, statements, allowed_schemas, lambda _xid: None)
        return {"statements": len(statements)}


class EcsCopyMover:
    """The Mover protocol for `mover: copy`: the parallel COPY mover runs inside the task."""

    def __init__(
        self,
        cfg: AwsConfig,
        artifacts: S3Artifacts,
        launcher: TaskLauncher,
        restore_id: str | None = None,
        record: RecordResource | None = None,
    ) -> None:
        self.cfg = cfg
        self.artifacts = artifacts
        self.launcher = launcher
        self.restore_id = restore_id
        self.record = record

    def bind_restore(
        self, restore_id: str, record: RecordResource, stage: str = ""
    ) -> EcsCopyMover:
        """This mover bound to one restore."""
        return EcsCopyMover(self.cfg, self.artifacts, self.launcher, restore_id, record)

    def copy(
        self,
        source_dsn: str,
        target_dsn: str,
        schema: str,
        target_schema: str,
        tables: list[str] | None,
        progress: Callable[[Any], None] | None,
    ) -> Any:
        """Copy one schema in the task (temporary secret -> production secret); its CopyReport."""
        from restore_assets.core.mover import CopyReport, TableCopy

        if self.restore_id is None:
            raise CopyError("the ECS copy mover must be bound to a restore (phases bind it)")
        remote = RemoteTasks(self.cfg, self.artifacts, self.launcher, self.restore_id, self.record)
        spec = {
            "database": database_of(source_dsn),
            "schema": schema,
            "target_schema": target_schema,
            "tables": tables,
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
