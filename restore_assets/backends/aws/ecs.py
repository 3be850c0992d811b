"""Launching the pg tools task on ECS: a small launcher seam (TaskLauncher), the boto3 launcher
(run_task, the tasks_stopped waiter), and stopping a restore's task with proof of ownership.

What the task does for a restore (the DDL task, the COPY mover) is in `tools_task`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from restore_assets.backends.aws.clients import error_code, is_not_found
from restore_assets.backends.aws.config import AwsConfig, tags
from restore_assets.backends.aws.ownership import OWNER_KEY, check_owned
from restore_assets.backends.protocols import RecordResource
from restore_assets.core.errors import RestoreError

log = logging.getLogger("restore_assets.aws")

TASK_RESOURCE = "ecs-task"


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


@dataclass(frozen=True)
class TaskCall:
    """One run of the pg tools container: command, environment, restore, time limit, recorder."""

    command: list[str]
    environment: dict[str, str]
    restore_id: str
    timeout: float
    record: RecordResource | None = None  # records the task so cleanup can stop it


class TaskLauncher(Protocol):
    """Runs the pg tools container with a command and environment; raises TaskFailed unless it exits 0."""

    def run(self, call: TaskCall) -> TaskRun:
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

    def run(self, call: TaskCall) -> TaskRun:
        """submit + wait."""
        arn = self.submit(call.command, call.environment, call.restore_id, call.record)
        return self.wait(arn, call.timeout)


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
