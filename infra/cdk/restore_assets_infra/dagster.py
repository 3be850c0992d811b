"""Optional (`-c deployDagster=true`): Dagster itself on ECS Fargate.

One service task runs dagster-webserver and dagster-daemon side by side; the EcsRunLauncher
starts every run as a task of a separate task definition whose task role is the backend role.
Run and event storage is a small private PostgreSQL instance. The webserver is not exposed: the
VPC has no internet gateway, so reach it with ECS Exec port forwarding (see README.md).

The image (context `dagsterImageUri`, default the pg tools image) must contain restore_assets,
dagster-webserver, dagster-aws and dagster-postgres.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from .backend_role import BackendRole, ecs_run_statements
from .config import Settings
from .database import instance_type
from .logs import retention
from .network import Network
from .restore import RestoreCapability

DAGSTER_HOME = "/opt/dagster/dagster_home"
WEBSERVER_PORT = 3000
RUN_CONTAINER = "run"
CODE_MODULE = "restore_assets.jobs.definitions"


def dagster_yaml(
    *,
    storage_host: str,
    run_task_definition_arn: str,
    cluster_arn: str,
    subnet_ids: list[str],
    security_group_ids: list[str],
) -> str:
    """dagster.yaml of the deployment: Postgres storage and the EcsRunLauncher."""
    network = {
        "awsvpcConfiguration": {
            "subnets": subnet_ids,
            "securityGroups": security_group_ids,
            "assignPublicIp": "DISABLED",
        }
    }
    # JSON is YAML; json.dumps keeps CDK tokens inside plain strings, resolved at deploy time.
    return "\n".join(
        [
            "storage:",
            "  postgres:",
            "    postgres_db:",
            f"      hostname: {json.dumps(storage_host)}",
            "      port: 5432",
            "      db_name: dagster",
            "      username: {env: DAGSTER_PG_USERNAME}",
            "      password: {env: DAGSTER_PG_PASSWORD}",
            "      params: {sslmode: require}",
            "run_launcher:",
            "  module: dagster_aws.ecs",
            "  class: EcsRunLauncher",
            "  config:",
            f"    task_definition: {json.dumps(run_task_definition_arn)}",
            f"    container_name: {RUN_CONTAINER}",
            "    secrets_tag: null",
            "    use_current_ecs_task_config: false",
            "    run_task_kwargs:",
            f"      cluster: {json.dumps(cluster_arn)}",
            "      launchType: FARGATE",
            f"      networkConfiguration: {json.dumps(network)}",
            "run_monitoring:",
            "  enabled: true",
            "",
        ]
    )


def _start(command: str) -> list[str]:
    """Write dagster.yaml from $DAGSTER_YAML, then exec `command`."""
    return [
        "sh",
        "-c",
        'mkdir -p "$DAGSTER_HOME" && printf "%s" "$DAGSTER_YAML" > "$DAGSTER_HOME/dagster.yaml"'
        f" && exec {command}",
    ]


class DagsterDeployment(Construct):
    """Dagster webserver + daemon service, the run task definition, the storage database."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        network: Network,
        restore: RestoreCapability,
        backend: BackendRole,
        backend_yaml: str,
    ) -> None:
        super().__init__(scope, construct_id)
        log_retention = retention(settings.log_retention_days)

        storage_sg = network.security_group("StorageSg", "Dagster storage: from Dagster only")
        network.allow_postgres(network.dagster_sg, storage_sg)
        self.storage = rds.DatabaseInstance(
            self,
            "Storage",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_15),
            instance_type=instance_type("db.t4g.micro"),
            credentials=rds.Credentials.from_generated_secret("dagster"),
            database_name="dagster",
            vpc=network.vpc,
            vpc_subnets=network.database_subnets,
            security_groups=[storage_sg],
            publicly_accessible=False,
            storage_encrypted=True,
            allocated_storage=20,
            backup_retention=Duration.days(7),
            deletion_protection=settings.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        assert self.storage.secret is not None
        pg_secrets = {
            "DAGSTER_PG_USERNAME": ecs.Secret.from_secrets_manager(self.storage.secret, "username"),
            "DAGSTER_PG_PASSWORD": ecs.Secret.from_secrets_manager(self.storage.secret, "password"),
        }
        self.log_group = logs.LogGroup(self, "Log", retention=log_retention)

        # Runs: one task per run, task role = the backend role.
        self.run_task = ecs.FargateTaskDefinition(
            self,
            "RunTask",
            family=f"{settings.stack_name}-dagster-run",
            cpu=1024,
            memory_limit_mib=2048,
            task_role=backend.role,
        )
        task_subnet_ids = network.vpc.select_subnets(
            subnet_group_name=network.task_subnets.subnet_group_name
        ).subnet_ids
        yaml_text = dagster_yaml(
            storage_host=self.storage.db_instance_endpoint_address,
            run_task_definition_arn=self.run_task.task_definition_arn,
            cluster_arn=restore.cluster.cluster_arn,
            subnet_ids=task_subnet_ids,
            security_group_ids=[network.dagster_sg.security_group_id],
        )
        # Run workers get their instance configuration from the launcher (the instance ref in
        # their command), so they need no dagster.yaml; the service writes one at start-up.
        run_environment = {
            **restore.environment(),
            "DAGSTER_HOME": DAGSTER_HOME,
            "RESTORE_ASSETS_BACKEND_CONFIG_YAML": backend_yaml,
        }
        environment = {**run_environment, "DAGSTER_YAML": yaml_text}
        self.run_task.add_container(
            "Run",
            container_name=RUN_CONTAINER,
            image=self._image(settings, restore, self.run_task),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="run", log_group=self.log_group),
            environment=run_environment,
            secrets=pg_secrets,
        )

        # The long-running service: webserver and daemon.
        service_task = ecs.FargateTaskDefinition(
            self,
            "ServiceTask",
            family=f"{settings.stack_name}-dagster",
            cpu=1024,
            memory_limit_mib=4096,
        )
        image = self._image(settings, restore, service_task)
        service_task.add_container(
            "Webserver",
            container_name="webserver",
            image=image,
            command=_start(f"dagster-webserver -h 0.0.0.0 -p {WEBSERVER_PORT} -m {CODE_MODULE}"),
            port_mappings=[ecs.PortMapping(container_port=WEBSERVER_PORT)],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="webserver", log_group=self.log_group),
            environment=environment,
            secrets=pg_secrets,
        )
        service_task.add_container(
            "Daemon",
            container_name="daemon",
            image=image,
            command=_start(f"dagster-daemon run -m {CODE_MODULE}"),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="daemon", log_group=self.log_group),
            environment=environment,
            secrets=pg_secrets,
        )
        for statement in ecs_run_statements(
            self,
            cluster_arn=restore.cluster.cluster_arn,
            cluster_name=restore.cluster.cluster_name,
            family=self.run_task.family,
            pass_roles=[
                backend.role.role_arn,
                self.run_task.obtain_execution_role().role_arn,
            ],
            log_group_arn=self.log_group.log_group_arn,
            sid_prefix="DagsterRuns",
        ):
            service_task.add_to_task_role_policy(statement)

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=restore.cluster,
            task_definition=service_task,
            desired_count=1,
            # The daemon must never run twice: stop the old task before starting the new one.
            min_healthy_percent=0,
            max_healthy_percent=100,
            security_groups=[network.dagster_sg],
            vpc_subnets=network.task_subnets,
            assign_public_ip=False,
            enable_execute_command=True,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )
        self.service.node.add_dependency(self.storage)

    @staticmethod
    def _image(
        settings: Settings, restore: RestoreCapability, task_definition: ecs.TaskDefinition
    ) -> ecs.ContainerImage:
        if settings.dagster_image_uri:
            return ecs.ContainerImage.from_registry(settings.dagster_image_uri)
        return restore.tools_image(task_definition)
