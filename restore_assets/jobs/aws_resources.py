"""Dagster side of the AWS backend (moved here from backends/aws/: the backend has no Dagster import).

- One AwsServiceResource per service (aws_rds, aws_dms, aws_ecs, aws_s3, aws_dynamodb,
  aws_secretsmanager), on dagster-aws's boto3 configuration (region, profile, endpoint URL,
  retries, credentials); `get_client()` returns the boto3 client.
- `PipesEcsLauncher`: the TaskLauncher used inside an op, through dagster-aws's PipesECSClient,
  so the task's log lines and its result message come back into the Dagster run.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster_aws.pipes import PipesCloudWatchMessageReader, PipesECSClient
from dagster_aws.utils import ResourceWithBoto3Configuration, construct_boto_client_retry_config
from pydantic import Field

from restore_assets.backends.aws.clients import SERVICES, AwsClients, aws_client
from restore_assets.backends.aws.config import AwsConfig
from restore_assets.backends.aws.ecs import (
    EcsTaskLauncher,
    TaskCall,
    TaskFailed,
    TaskRun,
    run_task_params,
)
from restore_assets.backends.aws.ecs_tasks import RecordingEcs, stop_restore_tasks


class AwsServiceResource(ResourceWithBoto3Configuration):
    """A boto3 client of one AWS service from dagster-aws's boto3 configuration."""

    service: str = Field(
        description="boto3 service name: rds, dms, ecs, s3, dynamodb or secretsmanager"
    )

    def get_client(self) -> Any:
        """The boto3 client of this resource's service."""
        return aws_client(
            self.service,
            profile_name=self.profile_name,
            region_name=self.region_name,
            use_ssl=self.use_ssl,
            verify=self.verify,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=construct_boto_client_retry_config(self.max_attempts),
        )


def aws_resources(config: dict[str, Any], prefix: str = "aws_") -> dict[str, Any]:
    """The six service resources from a backend mapping, keyed `aws_rds`, `aws_dms`, ..."""
    cfg = AwsConfig.from_mapping(config)
    common = {
        "region_name": cfg.region_name,
        "profile_name": cfg.profile_name,
        "endpoint_url": cfg.endpoint_url,
    }
    return {f"{prefix}{name}": AwsServiceResource(service=name, **common) for name in SERVICES}


def clients_from_resources(resources: dict[str, Any], prefix: str = "aws_") -> AwsClients:
    """AwsClients from the six service resources (as returned by `aws_resources`)."""
    return AwsClients(**{name: resources[f"{prefix}{name}"].get_client() for name in SERVICES})


class PipesEcsLauncher:
    """TaskLauncher through dagster-aws's PipesECSClient: task logs and results in the Dagster run."""

    def __init__(
        self,
        cfg: AwsConfig,
        ecs_client: Any,
        context: dg.OpExecutionContext,
        logs_client: Any | None = None,
    ) -> None:
        self.cfg = cfg
        self.client = ecs_client
        self.context = context
        self._logs_client = logs_client
        self.messages: list[Any] = []

    @property
    def logs_client(self) -> Any:
        """The CloudWatch Logs client Pipes reads the task's messages with (created on first use)."""
        if self._logs_client is None:
            self._logs_client = aws_client(
                "logs",
                profile_name=self.cfg.profile_name,
                region_name=self.cfg.region_name,
                endpoint_url=self.cfg.endpoint_url,
            )
        return self._logs_client

    def run(self, call: TaskCall) -> TaskRun:
        """Run the task through Pipes, bounded by timeout; TaskFailed on a non-zero exit code."""
        command, restore_id, timeout = call.command, call.restore_id, call.timeout
        ecs = RecordingEcs(self.client, call.record, self.cfg.ecs_cluster, restore_id)
        pipes = PipesECSClient(
            client=ecs,  # type: ignore[arg-type]
            message_reader=PipesCloudWatchMessageReader(client=self.logs_client),
            forward_termination=True,
        )
        params = run_task_params(self.cfg, command, call.environment, restore_id)
        try:
            invocation = pipes.run(
                context=self.context,
                run_task_params=params,  # type: ignore[arg-type]
                extras={"restore_id": restore_id, "mode": command[0] if command else ""},
                pipes_container_name=self.cfg.ecs_container_name,
                waiter_config=self.cfg.waiter_config(timeout),  # type: ignore[arg-type]
            )
        except RuntimeError as exc:
            raise TaskFailed(f"ECS task ({command[0] if command else '?'}) failed: {exc}") from None
        except Exception as exc:
            if type(exc).__name__ == "WaiterError":
                stop_restore_tasks(self.client, self.cfg.ecs_cluster, restore_id)
                raise TaskFailed(
                    f"ECS task did not finish within {timeout:.0f}s: stopped it"
                ) from None
            raise
        self.messages = list(invocation.get_custom_messages())
        return TaskRun(None, 0, metadata=dict(invocation.metadata))


def attach_pipes(components: tuple[Any, ...], context: dg.OpExecutionContext) -> None:
    """Inside an op: the AWS ECS task runners among components launch through Dagster Pipes."""
    for component in components:
        launcher = getattr(component, "launcher", None)
        if isinstance(launcher, EcsTaskLauncher):
            component.launcher = PipesEcsLauncher(component.cfg, launcher.client, context)
