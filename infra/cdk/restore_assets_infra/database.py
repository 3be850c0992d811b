"""The production database the restores read from and write to.

Either a demo database created here (context `selectedDatabase` = SingleAz, MultiAz,
AuroraProvisioned, AuroraServerless), loaded with the demo tenants by a custom resource, or an
existing database named by context `sourceIdentifier` (`selectedDatabase=None`, the default).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, CustomResource, Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from .config import ConfigError, Settings
from .demo_sql import stage_loader_asset
from .logs import retention
from .network import Network

MASTER_USERNAME = "postgres"
BACKUP_RETENTION_DAYS = 7
DEMO_DATABASE = "tenant_a"
DEMO_SCHEMAS = ("customer_a1", "customer_a2")
UNSET = "UNSET"

_DEFAULT_INSTANCE_CLASS = {
    "SingleAz": "db.t4g.medium",
    "MultiAz": "db.t4g.medium",
    "AuroraProvisioned": "db.r6g.large",
}


def instance_type(instance_class: str) -> ec2.InstanceType:
    """`db.r6g.large` -> the EC2 instance type CDK expects (`r6g.large`)."""
    return ec2.InstanceType(instance_class.removeprefix("db."))


def layer_is_built(layer_dir: Path) -> bool:
    """True when the pg8000 Lambda layer directory was built (see build_layer.py)."""
    return (layer_dir / "python" / "pg8000" / "__init__.py").is_file()


class ProductionDatabase(Construct):
    """The source database of restores: created here (demo) or referenced by identifier."""

    identifier: str
    kind: str  # "instance", "cluster" or "unknown" (an existing database: IAM covers both)
    secret: secretsmanager.ISecret | None
    security_group: ec2.ISecurityGroup | None
    resource: rds.DatabaseInstance | rds.DatabaseCluster | None

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, network: Network
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.network = network
        self.resource = None
        self.secret = None
        self.security_group = None
        if settings.has_demo_database:
            self._create_demo_database()
        else:
            self._reference_existing_database()

    @property
    def secret_arn(self) -> str | None:
        """ARN of the secret holding the production credentials, when known."""
        return self.secret.secret_arn if self.secret is not None else None

    def _clients(self) -> list[ec2.ISecurityGroup]:
        net = self.network
        clients: list[ec2.ISecurityGroup] = [net.dms_sg, net.task_sg]
        if self.settings.deploy_dagster:
            clients.append(net.dagster_sg)
        return clients

    # -- existing database -------------------------------------------------------------------
    def _reference_existing_database(self) -> None:
        settings = self.settings
        self.kind = "unknown"
        self.identifier = settings.source_identifier or UNSET
        warnings = []
        if not settings.source_identifier:
            warnings.append(
                (
                    "no-source",
                    "selectedDatabase=None and no sourceIdentifier: the backend configuration will"
                    " say source_identifier: UNSET. Pass -c sourceIdentifier=<db instance or"
                    " cluster id> (plus sourceSecretArn and sourceSecurityGroupId), or deploy a"
                    " demo database with -c selectedDatabase=SingleAz.",
                )
            )
        else:
            if not settings.source_secret_arn:
                warnings.append(
                    (
                        "no-source-secret",
                        "no sourceSecretArn: nothing may read the production credentials, and the"
                        " backend configuration will say secret_arn: null.",
                    )
                )
            if not settings.source_security_group_id:
                warnings.append(
                    (
                        "no-source-sg",
                        "no sourceSecurityGroupId: DMS, the ECS tasks and Dagster get no"
                        " PostgreSQL path to the production database; open 5432 to their"
                        " security groups yourself.",
                    )
                )
        for warning_id, message in warnings:
            Annotations.of(self).add_warning_v2(f"restore-assets:{warning_id}", message)

        if settings.source_secret_arn:
            self.secret = secretsmanager.Secret.from_secret_complete_arn(
                self, "SourceSecret", settings.source_secret_arn
            )
        if settings.source_security_group_id:
            self.security_group = ec2.SecurityGroup.from_security_group_id(
                self, "SourceSg", settings.source_security_group_id, mutable=True
            )
            for client in self._clients():
                self.network.allow_postgres(client, self.security_group)

    # -- demo database -----------------------------------------------------------------------
    def _create_demo_database(self) -> None:
        settings = self.settings
        net = self.network
        base_name = f"{settings.stack_name.lower()}-demo"
        self.identifier = base_name
        self.security_group = net.security_group(
            "DatabaseSg", "Production (demo) database: PostgreSQL from DMS, ECS tasks, Dagster"
        )
        for client in self._clients():
            net.allow_postgres(client, self.security_group)

        credentials = rds.Credentials.from_generated_secret(MASTER_USERNAME)
        removal = RemovalPolicy.SNAPSHOT
        log_retention = retention(settings.log_retention_days)

        if settings.is_aurora:
            self.kind = "cluster"
            log_group = logs.LogGroup(
                self,
                "PostgresLog",
                log_group_name=f"/aws/rds/cluster/{base_name}/postgresql",
                retention=log_retention,
                removal_policy=RemovalPolicy.DESTROY,
            )
            if settings.selected_database == "AuroraServerless":
                writer = rds.ClusterInstance.serverless_v2("Writer", publicly_accessible=False)
                readers: list[rds.IClusterInstance] = []
            else:
                klass = settings.db_instance_class or _DEFAULT_INSTANCE_CLASS["AuroraProvisioned"]
                writer = rds.ClusterInstance.provisioned(
                    "Writer", instance_type=instance_type(klass), publicly_accessible=False
                )
                readers = [
                    rds.ClusterInstance.provisioned(
                        "Reader", instance_type=instance_type(klass), publicly_accessible=False
                    )
                ]
            cluster = rds.DatabaseCluster(
                self,
                "Cluster",
                cluster_identifier=base_name,
                engine=rds.DatabaseClusterEngine.aurora_postgres(
                    version=rds.AuroraPostgresEngineVersion.VER_15_10
                ),
                credentials=credentials,
                writer=writer,
                readers=readers,
                serverless_v2_min_capacity=0.5,
                serverless_v2_max_capacity=4,
                vpc=net.vpc,
                vpc_subnets=net.database_subnets,
                security_groups=[self.security_group],
                storage_encrypted=True,
                backup=rds.BackupProps(retention=Duration.days(BACKUP_RETENTION_DAYS)),
                deletion_protection=settings.deletion_protection,
                removal_policy=removal,
                cloudwatch_logs_exports=["postgresql"],
                copy_tags_to_snapshot=True,
            )
            cluster.node.add_dependency(log_group)
            self.resource = cluster
            self.secret = cluster.secret
            self.rotation = cluster.add_rotation_single_user(
                automatically_after=Duration.days(30),
                endpoint=net.endpoints["SecretsManager"],
                vpc_subnets=net.task_subnets,
                security_group=self._lambda_sg("RotationSg", "Secret rotation Lambda"),
            )
        else:
            if settings.selected_database not in _DEFAULT_INSTANCE_CLASS:
                raise ConfigError(f"unknown selectedDatabase {settings.selected_database}")
            self.kind = "instance"
            log_group = logs.LogGroup(
                self,
                "PostgresLog",
                log_group_name=f"/aws/rds/instance/{base_name}/postgresql",
                retention=log_retention,
                removal_policy=RemovalPolicy.DESTROY,
            )
            klass = (
                settings.db_instance_class or _DEFAULT_INSTANCE_CLASS[settings.selected_database]
            )
            instance = rds.DatabaseInstance(
                self,
                "Instance",
                instance_identifier=base_name,
                engine=rds.DatabaseInstanceEngine.postgres(
                    version=rds.PostgresEngineVersion.VER_15
                ),
                instance_type=instance_type(klass),
                credentials=credentials,
                multi_az=settings.selected_database == "MultiAz",
                vpc=net.vpc,
                vpc_subnets=net.database_subnets,
                security_groups=[self.security_group],
                publicly_accessible=False,
                storage_encrypted=True,
                storage_type=rds.StorageType.GP3,
                allocated_storage=20,
                max_allocated_storage=100,
                backup_retention=Duration.days(BACKUP_RETENTION_DAYS),
                deletion_protection=settings.deletion_protection,
                removal_policy=removal,
                cloudwatch_logs_exports=["postgresql"],
                copy_tags_to_snapshot=True,
                auto_minor_version_upgrade=True,
            )
            instance.node.add_dependency(log_group)
            self.resource = instance
            self.secret = instance.secret
            self.rotation = instance.add_rotation_single_user(
                automatically_after=Duration.days(30),
                endpoint=net.endpoints["SecretsManager"],
                vpc_subnets=net.task_subnets,
                security_group=self._lambda_sg("RotationSg", "Secret rotation Lambda"),
            )

        if settings.load_demo_data:
            self._demo_loader()

    def _lambda_sg(self, construct_id: str, description: str) -> ec2.SecurityGroup:
        """A Lambda security group: PostgreSQL to the database, HTTPS to the VPC endpoints."""
        net = self.network
        sg = net.security_group(construct_id, description)
        assert self.security_group is not None
        net.allow_postgres(sg, self.security_group)
        sg.add_egress_rule(net.endpoint_sg, ec2.Port.tcp(443), "AWS APIs via VPC endpoints")
        net.endpoint_sg.add_ingress_rule(sg, ec2.Port.tcp(443), "HTTPS from Lambda")
        return sg

    def _demo_loader(self) -> None:
        """Custom resource: create database tenant_a and load the demo tenant schemas."""
        settings = self.settings
        net = self.network
        if not layer_is_built(settings.pg8000_layer_dir):
            raise ConfigError(
                f"the demo loader needs the pg8000 Lambda layer in {settings.pg8000_layer_dir}"
                " and it is not built. Run `python build_layer.py` in infra/cdk (needs PyPI), or"
                " pass -c loadDemoData=false to create the database without the demo tenants."
            )
        assert self.secret is not None and self.resource is not None
        layer = lambda_.LayerVersion(
            self,
            "Pg8000Layer",
            code=lambda_.Code.from_asset(str(settings.pg8000_layer_dir)),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            description="pg8000 (pure-Python PostgreSQL driver) for the demo tenant loader",
        )
        asset_dir, sql_hash = stage_loader_asset()
        loader_sg = self._lambda_sg("DemoLoaderSg", "Demo tenant loader Lambda")
        function = lambda_.Function(
            self,
            "DemoLoader",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="demo_loader.index.handler",
            code=lambda_.Code.from_asset(str(asset_dir)),
            layers=[layer],
            vpc=net.vpc,
            vpc_subnets=net.task_subnets,
            security_groups=[loader_sg],
            timeout=Duration.minutes(10),
            memory_size=256,
            log_group=logs.LogGroup(
                self,
                "DemoLoaderLog",
                retention=retention(settings.log_retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            ),
            environment={"SECRET_ARN": self.secret.secret_arn},
            description="Creates database tenant_a and loads the demo tenant schemas",
        )
        self.secret.grant_read(function)
        provider = cr.Provider(
            self,
            "DemoLoaderProvider",
            on_event_handler=function,
            log_group=logs.LogGroup(
                self,
                "DemoLoaderProviderLog",
                retention=retention(settings.log_retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            ),
        )
        demo = CustomResource(
            self,
            "DemoTenants",
            service_token=provider.service_token,
            resource_type="Custom::DemoTenants",
            properties={
                "Database": DEMO_DATABASE,
                "Schemas": list(DEMO_SCHEMAS),
                "SqlSha256": sql_hash,
            },
        )
        # The loader must run after the database, its ingress rules and the endpoints exist.
        for dependency in (
            self.resource,
            self.security_group,
            loader_sg,
            net.endpoint_sg,
            net.endpoints["SecretsManager"],
        ):
            demo.node.add_dependency(dependency)
