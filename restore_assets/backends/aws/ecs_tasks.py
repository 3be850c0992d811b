"""ECS task bookkeeping around a launcher: record each task started, stop a restore's tasks."""

from __future__ import annotations

from typing import Any

from restore_assets.backends.aws.config import RESTORE_ID_TAG
from restore_assets.backends.aws.ecs import TASK_RESOURCE, stop_task
from restore_assets.backends.aws.ownership import OWNER_KEY
from restore_assets.backends.protocols import RecordResource

DESCRIBE_BATCH = 100  # describe_tasks takes at most 100 task ARNs


class RecordingEcs:
    """An ECS client that records each task it starts (so cleanup can stop it after a crash)."""

    def __init__(
        self, client: Any, record: RecordResource | None, cluster: str, restore_id: str
    ) -> None:
        self._client = client
        self._record = record
        self._cluster = cluster
        self._restore_id = restore_id

    def run_task(self, **params: Any) -> Any:
        """run_task, then record the task before anything waits on it."""
        resp = self._client.run_task(**params)
        if self._record is not None:
            for task in resp.get("tasks", []):
                self._record(
                    TASK_RESOURCE,
                    task["taskArn"],
                    {"cluster": self._cluster, OWNER_KEY: self._restore_id},
                )
        return resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def stop_restore_tasks(client: Any, cluster: str, restore_id: str) -> list[str]:
    """Stop every running task of the cluster that carries this restore's tag."""
    pages = client.get_paginator("list_tasks").paginate(cluster=cluster, startedBy="restore-assets")
    arns = [arn for page in pages for arn in page.get("taskArns", [])]
    stopped: list[str] = []
    for i in range(0, len(arns), DESCRIBE_BATCH):
        batch = arns[i : i + DESCRIBE_BATCH]
        for task in client.describe_tasks(cluster=cluster, tasks=batch, include=["TAGS"])["tasks"]:
            tag = {t["key"]: t["value"] for t in task.get("tags", [])}.get(RESTORE_ID_TAG)
            if tag == restore_id and task.get("lastStatus") != "STOPPED":
                stop_task(client, task["taskArn"], {"cluster": cluster})
                stopped.append(task["taskArn"])
    return stopped
