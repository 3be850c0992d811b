"""What a restore needs besides the network: subnet groups, DMS roles, the artifact bucket, the
audit table, and the ECS cluster with the task definition of the pg tools image.
"""

from __future__ import annotations

import re

from aws_cdk import Arn, ArnComponents, ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dms as dms
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .config import TEMP_SECRET_PREFIX, ConfigError, Settings
from .database import ProductionDatabase
from .logs import retention
from .network import Network

CONTAINER_NAME = "restore-tools"
AUDIT_PARTITION_KEY = "restore_id"
NONCURRENT_VERSION_DAYS = 7

# Never part of the image build context (the repository root): the virtualenv, git metadata,
# caches, demo data, the CDK app and its output. A root .dockerignore is honoured as well.
DOCKER_EXCLUDES = [
    ".git",
    ".venv",
    "**/.venv",
    "**/node_modules",
    "**/__pycache__",
    "**/*.pyc",
    "**/.ipynb_checkpoints",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
    ".demo",
    ".restore-assets",
    "bench/.work",
    # The CDK app is not part of the image; leaving it out also keeps the image hash (and a
    # rebuild at deploy) independent of infrastructure changes.
    "infra",
]

_ECR_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<name>[a-z0-9._/-]+?)(?::(?P<tag>[\w.-]+)|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def temp_secret_arn_pattern(scope: Construct) -> str:
    """ARN pattern of the temporary secrets the backend creates (`restore-assets/*`)."""
    return Stack.of(scope).format_arn(
        service="secretsmanager",
        resource="secret",
        resource_name=f"{TEMP_SECRET_PREFIX}*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class RestoreCapability(Construct):
    """Subnet groups, DMS service roles, S3 artifacts, DynamoDB audit, ECS tools task."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        network: Network,
        database: ProductionDatabase,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.network = network
        self.database = database
        stack_lower = settings.stack_name.lower()
        self._pull_repository: ecr.IRepository | None = None

        self.bucket = self._artifact_bucket()
        self.table = dynamodb.Table(
            self,
            "AuditTable",
            partition_key=dynamodb.Attribute(
                name=AUDIT_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=settings.deletion_protection,
            removal_policy=RemovalPolicy.RETAIN,
        )

        # Temporary databases are restored into the restore subnets, never the database ones.
        self.restore_subnet_group = rds.SubnetGroup(
            self,
            "RestoreSubnetGroup",
            subnet_group_name=f"{stack_lower}-restore",
            description="Temporary databases restored by restore-assets (isolated subnets)",
            vpc=network.vpc,
            vpc_subnets=network.restore_subnets,
            removal_policy=RemovalPolicy.DESTROY,
        )

        self.dms_vpc_role: iam.Role | None = None
        if settings.create_dms_roles:
            # Account-wide roles DMS looks up by name; create them once per account
            # (-c createDmsRoles=false in every other stack of the same account).
            self.dms_vpc_role = iam.Role(
                self,
                "DmsVpcRole",
                role_name="dms-vpc-role",
                assumed_by=iam.ServicePrincipal("dms.amazonaws.com"),
                managed_policies=[
                    iam.ManagedPolicy.from_aws_managed_policy_name(
                        "service-role/AmazonDMSVPCManagementRole"
                    )
                ],
            )
            iam.Role(
                self,
                "DmsCloudWatchLogsRole",
                role_name="dms-cloudwatch-logs-role",
                assumed_by=iam.ServicePrincipal("dms.amazonaws.com"),
                managed_policies=[
                    iam.ManagedPolicy.from_aws_managed_policy_name(
                        "service-role/AmazonDMSCloudWatchLogsRole"
                    )
                ],
            )
        restore_subnet_ids = network.vpc.select_subnets(
            subnet_group_name=network.restore_subnets.subnet_group_name
        ).subnet_ids
        self.dms_subnet_group = dms.CfnReplicationSubnetGroup(
            self,
            "DmsSubnetGroup",
            replication_subnet_group_identifier=f"{stack_lower}-restore-dms",
            replication_subnet_group_description="DMS replication instances of restore-assets",
            subnet_ids=restore_subnet_ids,
        )
        if self.dms_vpc_role is not None:
            self.dms_subnet_group.node.add_dependency(self.dms_vpc_role)

        # Role DMS assumes to read endpoint credentials from Secrets Manager
        # (CreateEndpoint ... SecretsManagerAccessRoleArn), so no password goes into DMS calls.
        self.dms_secrets_role = iam.Role(
            self,
            "DmsSecretsAccessRole",
            assumed_by=iam.ServicePrincipal(f"dms.{Aws.REGION}.amazonaws.com"),
            description="DMS endpoints of restore-assets read their credentials with this role",
        )
        self.dms_secrets_role.add_to_policy(self.read_secrets_statement())

        exec_config = None
        if settings.deploy_dagster:
            # ECS Exec (port forwarding to the Dagster webserver): sessions are logged to a
            # dedicated log group, which also keeps the task role's log permissions scoped.
            exec_config = ecs.ExecuteCommandConfiguration(
                logging=ecs.ExecuteCommandLogging.OVERRIDE,
                log_configuration=ecs.ExecuteCommandLogConfiguration(
                    cloud_watch_log_group=logs.LogGroup(
                        self, "ExecLog", retention=retention(settings.log_retention_days)
                    ),
                ),
            )
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=network.vpc, execute_command_configuration=exec_config
        )
        self.tools_log_group = logs.LogGroup(
            self, "ToolsLog", retention=retention(settings.log_retention_days)
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "ToolsTask",
            family=f"{settings.stack_name}-restore-tools",
            cpu=1024,
            memory_limit_mib=2048,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.container = self.task_definition.add_container(
            "RestoreTools",
            container_name=CONTAINER_NAME,
            image=self.tools_image(self.task_definition),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=CONTAINER_NAME, log_group=self.tools_log_group
            ),
            environment=self.environment(),
            essential=True,
        )
        self._grant_task_role(self.task_definition.task_role)

    # -- pieces -------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """Environment of the containers that run the AWS backend or its tools."""
        return {
            "RESTORE_ASSETS_ARTIFACT_BUCKET": self.bucket.bucket_name,
            "RESTORE_ASSETS_ARTIFACT_PREFIX": self.settings.artifact_prefix,
            "RESTORE_ASSETS_AUDIT_TABLE": self.table.table_name,
            "AWS_DEFAULT_REGION": Aws.REGION,
        }

    def _artifact_bucket(self) -> s3.Bucket:
        settings = self.settings
        return s3.Bucket(
            self,
            "Artifacts",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-restore-artifacts",
                    prefix=settings.artifact_prefix,
                    expiration=Duration.days(settings.artifact_retention_days),
                    noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="remove-expired-delete-markers", expired_object_delete_marker=True
                ),
            ],
        )

    def tools_image(self, task_definition: ecs.TaskDefinition) -> ecs.ContainerImage:
        """The pg tools image for a container of `task_definition`, with pull rights."""
        settings = self.settings
        if settings.image_uri:
            match = _ECR_URI.match(settings.image_uri)
            if match:
                # A private ECR image: CDK grants the execution role pulls from that repository
                # only (plus the registry login, which has no resource-level permissions).
                if self._pull_repository is None:
                    self._pull_repository = ecr.Repository.from_repository_attributes(
                        self,
                        "ToolsImageRepository",
                        repository_arn=Arn.format(
                            ArnComponents(
                                service="ecr",
                                resource="repository",
                                resource_name=match["name"],
                                account=match["account"],
                                region=match["region"],
                                partition=Aws.PARTITION,
                            )
                        ),
                        repository_name=match["name"],
                    )
                return ecs.ContainerImage.from_ecr_repository(
                    self._pull_repository, match["digest"] or match["tag"] or "latest"
                )
            return ecs.ContainerImage.from_registry(settings.image_uri)
        dockerfile = settings.docker_context / settings.docker_file
        if not dockerfile.is_file():
            raise ConfigError(
                f"{dockerfile} does not exist: build the pg tools image from it, or pass"
                " -c imageUri=<registry/image:tag> to use an image that is already pushed"
            )
        return ecs.ContainerImage.from_asset(
            str(settings.docker_context),
            file=settings.docker_file,
            exclude=DOCKER_EXCLUDES,
            platform=ecr_assets.Platform.LINUX_AMD64,
        )

    def read_secrets_statement(self) -> iam.PolicyStatement:
        """Read the production secret and the temporary `restore-assets/*` secrets."""
        resources = [temp_secret_arn_pattern(self)]
        if self.database.secret_arn:
            resources.insert(0, self.database.secret_arn)
        return iam.PolicyStatement(
            sid="ReadDatabaseSecrets",
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=resources,
        )

    def artifact_statements(self) -> list[iam.PolicyStatement]:
        """Read/write/delete objects under the artifact prefix, and list that prefix only."""
        prefix = self.settings.artifact_prefix
        return [
            iam.PolicyStatement(
                sid="ArtifactObjects",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    # the restore-id tag on each artifact: cleanup deletes only tagged objects
                    "s3:GetObjectTagging",
                    "s3:PutObjectTagging",
                ],
                resources=[self.bucket.arn_for_objects(f"{prefix}*")],
            ),
            iam.PolicyStatement(
                sid="ArtifactList",
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}},
            ),
        ]

    def _grant_task_role(self, role: iam.IRole) -> None:
        for statement in [*self.artifact_statements(), self.read_secrets_statement()]:
            role.add_to_principal_policy(statement)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="AuditRecord",
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[self.table.table_arn],
            )
        )
