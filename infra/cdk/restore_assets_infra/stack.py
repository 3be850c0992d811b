"""The one stack of the app: network, production database, restore capability, backend role,
optional Dagster deployment, and the outputs that form the backend configuration.

The stack is environment-agnostic (no account or region at synthesis, no lookups), so
`python app.py` synthesizes offline; account and region come from the credentials at deploy.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import App, Aws, CfnOutput, Stack, Tags
from constructs import Construct

from .backend_role import BackendRole
from .backend_yaml import BACKEND_YAML_OUTPUT, OUTPUT_KEYS, render_backend_yaml
from .config import Settings
from .dagster import DagsterDeployment
from .database import ProductionDatabase
from .network import Network
from .restore import CONTAINER_NAME, RestoreCapability


class RestoreAssetsStack(Stack):
    """Everything the restore-assets AWS backend needs, in one deployable stack."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        Tags.of(self).add("project", "restore-assets")

        self.network = Network(self, "Network", settings=settings)
        self.database = ProductionDatabase(
            self, "Database", settings=settings, network=self.network
        )
        self.restore = RestoreCapability(
            self, "Restore", settings=settings, network=self.network, database=self.database
        )
        self.backend = BackendRole(
            self, "Backend", settings=settings, database=self.database, restore=self.restore
        )
        self.backend_values = self._backend_values()
        self.backend_yaml = render_backend_yaml(self.backend_values)
        self.dagster: DagsterDeployment | None = None
        if settings.deploy_dagster:
            self.dagster = DagsterDeployment(
                self,
                "Dagster",
                settings=settings,
                network=self.network,
                restore=self.restore,
                backend=self.backend,
                backend_yaml=self.backend_yaml,
            )
        self._outputs()

    def _backend_values(self) -> dict[str, Any]:
        net = self.network
        restore = self.restore
        settings = self.settings
        task_subnets = net.vpc.select_subnets(
            subnet_group_name=net.task_subnets.subnet_group_name
        ).subnet_ids
        return {
            "region_name": Aws.REGION,
            "source_identifier": self.database.identifier,
            "secret_arn": self.database.secret_arn,
            "restore_subnet_group": restore.restore_subnet_group.subnet_group_name,
            "restore_security_group_ids": [net.temp_db_sg.security_group_id],
            "temp_instance_class": settings.temp_instance_class,
            "parameter_group": None,
            "dms_subnet_group": restore.dms_subnet_group.ref,
            "dms_security_group_ids": [net.dms_sg.security_group_id],
            "dms_instance_class": settings.dms_instance_class,
            "dms_secrets_role_arn": self.restore.dms_secrets_role.role_arn,
            "ecs_cluster": restore.cluster.cluster_arn,
            "ecs_task_definition": restore.task_definition.task_definition_arn,
            "ecs_container_name": CONTAINER_NAME,
            "ecs_subnets": task_subnets,
            "ecs_security_group_ids": [net.task_sg.security_group_id],
            "artifact_bucket": restore.bucket.bucket_name,
            "artifact_prefix": settings.artifact_prefix,
            "audit_table": restore.table.table_name,
            "mover": settings.mover,
        }

    def _outputs(self) -> None:
        for output_key, yaml_key in OUTPUT_KEYS.items():
            value = self.backend_values[yaml_key]
            if value is None:
                continue
            if isinstance(value, list):
                value = ",".join(value)
            CfnOutput(self, output_key, value=value, description=f"backend config: {yaml_key}")
        CfnOutput(
            self,
            BACKEND_YAML_OUTPUT,
            value=self.backend_yaml,
            description="The whole backend configuration YAML (backend: aws)",
        )
        CfnOutput(
            self,
            "BackendRoleArn",
            value=self.backend.role.role_arn,
            description="IAM role for Dagster runs of the AWS backend",
        )
        if self.dagster is not None:
            CfnOutput(
                self,
                "DagsterService",
                value=self.dagster.service.service_name,
                description="ECS service running dagster-webserver and dagster-daemon",
            )


def build(app: App) -> RestoreAssetsStack:
    """Read the settings from the app's context and add the stack to `app`."""
    settings = Settings.from_node(app.node)
    return RestoreAssetsStack(
        app,
        settings.stack_name,
        settings=settings,
        description="restore-assets: tenant-level point-in-time restore for PostgreSQL on AWS",
    )
