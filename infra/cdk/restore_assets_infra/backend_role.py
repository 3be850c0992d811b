"""The IAM role Dagster runs assume to drive the AWS backend, with only what the backend needs.

Write access is scoped three ways wherever the service supports it:
- by the tag the backend puts on everything it creates (`restore-assets:restore-id`):
  `aws:RequestTag/...` must be present on create calls, `aws:ResourceTag/...` on
  modify/delete calls;
- by name: temporary RDS instances, clusters and snapshots start with `tempIdentifierPrefix`
  (default `restore-assets-`), temporary secrets with `restore-assets/`;
- by resource: the restore subnet group, the ECS cluster and task definition, the bucket prefix,
  the audit table, the production secret.
The production database itself is protected by an explicit Deny on every destructive RDS call
unless the instance-level restore (which renames and replaces it) is enabled with
`-c enableInstanceRestore=true`.

Statements on `Resource: "*"` carry only calls that AWS does not authorize per resource; each
is listed in WILDCARD_RESOURCE_ACTIONS (and in README.md) and the tests enforce that list.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from .config import RESTORE_ID_TAG, Settings
from .database import ProductionDatabase
from .restore import RestoreCapability, temp_secret_arn_pattern

# Actions allowed on Resource "*" anywhere in the app (also by CDK-generated policies), and why.
WILDCARD_RESOURCE_ACTIONS: dict[str, str] = {
    "rds:Describe*": "read-only; the backend describes instances, clusters, snapshots, engine"
    " versions and orderable options, several of which have no resource type",
    "rds:ListTagsForResource": "read-only; tags of instances, clusters and snapshots",
    "dms:Describe*": "read-only; DMS Describe calls do not support resource-level permissions",
    "dms:ListTagsForResource": "read-only; tags of DMS objects",
    "ecs:DescribeTaskDefinition": "read-only; no resource-level permissions",
    "secretsmanager:GetRandomPassword": "generates a password; touches no secret",
    "ecr:GetAuthorizationToken": "ECS execution role: registry login, no resource-level"
    " permissions (CDK adds it for image pulls)",
    "ssmmessages:CreateControlChannel": "ECS Exec into the Dagster webserver (deployDagster only)",
    "ssmmessages:CreateDataChannel": "ECS Exec into the Dagster webserver (deployDagster only)",
    "ssmmessages:OpenControlChannel": "ECS Exec into the Dagster webserver (deployDagster only)",
    "ssmmessages:OpenDataChannel": "ECS Exec into the Dagster webserver (deployDagster only)",
    "logs:DescribeLogGroups": "read-only; ECS Exec checks its session log group (deployDagster"
    " only; CDK adds it)",
}

TAG_PRESENT_ON_REQUEST = {"Null": {f"aws:RequestTag/{RESTORE_ID_TAG}": "false"}}
TAG_PRESENT_ON_RESOURCE = {"Null": {f"aws:ResourceTag/{RESTORE_ID_TAG}": "false"}}


def _arn(scope: Construct, service: str, resource: str, name: str) -> str:
    return Stack.of(scope).format_arn(
        service=service,
        resource=resource,
        resource_name=name,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class BackendRole(Construct):
    """The role of Dagster runs (and of the Dagster run tasks on ECS, when deployed)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        database: ProductionDatabase,
        restore: RestoreCapability,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.database = database
        self.restore = restore

        principals: list[iam.IPrincipal] = [iam.ServicePrincipal("ecs-tasks.amazonaws.com")]
        principals += [iam.ArnPrincipal(arn) for arn in settings.dagster_role_principals]
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.CompositePrincipal(*principals),
            description="Dagster runs of restore-assets: drives RDS, DMS, ECS, S3, DynamoDB",
        )
        for name, statements in (
            ("Rds", self.rds_statements()),
            ("Dms", self.dms_statements()),
            ("Ecs", self.ecs_statements()),
            ("Data", self.data_statements()),
        ):
            iam.ManagedPolicy(
                self,
                f"{name}Policy",
                description=f"restore-assets backend: {name}",
                statements=statements,
                roles=[self.role],
            )

    # -- RDS ----------------------------------------------------------------------------------
    def _source_arns(self) -> list[str]:
        ident = self.database.identifier
        kind = self.database.kind
        arns = []
        if kind in ("instance", "unknown"):
            arns.append(_arn(self, "rds", "db", ident))
        if kind in ("cluster", "unknown"):
            arns.append(_arn(self, "rds", "cluster", ident))
        return arns

    def rds_statements(self) -> list[iam.PolicyStatement]:
        """Describe anything; create, tag, modify and delete only temporary, tagged resources."""
        prefix = self.settings.temp_identifier_prefix
        temp = [
            _arn(self, "rds", "db", f"{prefix}*"),
            _arn(self, "rds", "cluster", f"{prefix}*"),
        ]
        temp_snapshots = [
            _arn(self, "rds", "snapshot", f"{prefix}*"),
            _arn(self, "rds", "cluster-snapshot", f"{prefix}*"),
        ]
        any_snapshot = [
            _arn(self, "rds", "snapshot", "*"),
            _arn(self, "rds", "cluster-snapshot", "*"),
        ]
        groups = [
            _arn(self, "rds", "subgrp", self.restore.restore_subnet_group.subnet_group_name),
            _arn(self, "rds", "pg", "*"),
            _arn(self, "rds", "cluster-pg", "*"),
            _arn(self, "rds", "og", "*"),
        ]
        source = self._source_arns()
        statements = [
            iam.PolicyStatement(
                sid="RdsReadOnly",
                actions=["rds:Describe*", "rds:ListTagsForResource"],
                resources=["*"],
            ),
            # Point-in-time or snapshot restore of the source into a new temporary instance or
            # cluster (plus the instance of a restored Aurora cluster), tagged at creation.
            iam.PolicyStatement(
                sid="RdsRestoreTemporary",
                actions=[
                    "rds:RestoreDBInstanceToPointInTime",
                    "rds:RestoreDBInstanceFromDBSnapshot",
                    "rds:RestoreDBClusterToPointInTime",
                    "rds:RestoreDBClusterFromSnapshot",
                    "rds:CreateDBInstance",
                ],
                resources=[*temp, *source, *any_snapshot, *groups],
                conditions=TAG_PRESENT_ON_REQUEST,
            ),
            # The snapshot job: snapshots of the source, named with the prefix, tagged.
            iam.PolicyStatement(
                sid="RdsSnapshotSource",
                actions=["rds:CreateDBSnapshot", "rds:CreateDBClusterSnapshot"],
                resources=[*source, *temp_snapshots],
                conditions=TAG_PRESENT_ON_REQUEST,
            ),
            # Tag-on-create, limited by name so that no other resource can be given the tag.
            iam.PolicyStatement(
                sid="RdsTagTemporary",
                actions=["rds:AddTagsToResource"],
                resources=[*temp, *temp_snapshots],
                conditions=TAG_PRESENT_ON_REQUEST,
            ),
            iam.PolicyStatement(
                sid="RdsManageTemporary",
                actions=[
                    "rds:ModifyDBInstance",
                    "rds:ModifyDBCluster",
                    "rds:RebootDBInstance",
                    "rds:DeleteDBInstance",
                    "rds:DeleteDBCluster",
                    "rds:DeleteDBSnapshot",
                    "rds:DeleteDBClusterSnapshot",
                ],
                resources=[*temp, *temp_snapshots],
                conditions=TAG_PRESENT_ON_RESOURCE,
            ),
        ]
        if self.settings.enable_instance_restore:
            # Instance-level restore in place: rename the source, restore under its name, delete
            # the renamed original. This is what makes it dangerous; enable it deliberately.
            ident = self.database.identifier
            renamed = [
                _arn(self, "rds", "db", f"{ident}-*"),
                _arn(self, "rds", "cluster", f"{ident}-*"),
            ]
            statements.append(
                iam.PolicyStatement(
                    sid="RdsInstanceRestoreInPlace",
                    actions=[
                        "rds:ModifyDBInstance",
                        "rds:ModifyDBCluster",
                        "rds:DeleteDBInstance",
                        "rds:DeleteDBCluster",
                        "rds:RebootDBInstance",
                        "rds:RestoreDBInstanceToPointInTime",
                        "rds:RestoreDBInstanceFromDBSnapshot",
                        "rds:RestoreDBClusterToPointInTime",
                        "rds:RestoreDBClusterFromSnapshot",
                        "rds:CreateDBInstance",
                        "rds:AddTagsToResource",
                    ],
                    resources=[
                        *source,
                        *renamed,
                        *any_snapshot,
                        _arn(self, "rds", "subgrp", "*"),
                        *groups[1:],
                    ],
                )
            )
        else:
            statements.append(
                iam.PolicyStatement(
                    sid="DenyChangesToSource",
                    effect=iam.Effect.DENY,
                    actions=[
                        "rds:ModifyDBInstance",
                        "rds:ModifyDBCluster",
                        "rds:RebootDBInstance",
                        "rds:DeleteDBInstance",
                        "rds:DeleteDBCluster",
                        "rds:RemoveTagsFromResource",
                    ],
                    resources=source,
                )
            )
        if self.settings.source_kms_key_arn:
            # Restoring a database encrypted with a customer managed key needs a grant on it.
            statements.append(
                iam.PolicyStatement(
                    sid="SourceKmsKeyViaRds",
                    actions=["kms:CreateGrant", "kms:DescribeKey"],
                    resources=[self.settings.source_kms_key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"rds.{Aws.REGION}.amazonaws.com"}
                    },
                )
            )
        return statements

    # -- DMS ----------------------------------------------------------------------------------
    def dms_statements(self) -> list[iam.PolicyStatement]:
        """Create tagged DMS objects; start, stop, test and delete only tagged ones."""
        objects = [_arn(self, "dms", kind, "*") for kind in ("rep", "endpoint", "task")]
        return [
            iam.PolicyStatement(
                sid="DmsReadOnly",
                actions=["dms:Describe*", "dms:ListTagsForResource"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="DmsCreateTagged",
                actions=[
                    "dms:CreateReplicationInstance",
                    "dms:CreateEndpoint",
                    "dms:CreateReplicationTask",
                    "dms:AddTagsToResource",
                ],
                resources=[*objects, _arn(self, "dms", "subgrp", "*")],
                conditions=TAG_PRESENT_ON_REQUEST,
            ),
            iam.PolicyStatement(
                sid="DmsManageTagged",
                actions=[
                    "dms:StartReplicationTask",
                    "dms:StopReplicationTask",
                    "dms:ModifyReplicationTask",
                    "dms:TestConnection",
                    "dms:RefreshSchemas",
                    "dms:DeleteReplicationTask",
                    "dms:DeleteEndpoint",
                    "dms:DeleteReplicationInstance",
                ],
                resources=objects,
                conditions=TAG_PRESENT_ON_RESOURCE,
            ),
            iam.PolicyStatement(
                sid="DmsPassSecretsRole",
                actions=["iam:PassRole"],
                resources=[self.restore.dms_secrets_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "dms.amazonaws.com"}},
            ),
        ]

    # -- ECS (Dagster Pipes runs the pg tools task) --------------------------------------------
    def ecs_statements(self) -> list[iam.PolicyStatement]:
        """Run, watch and stop the pg tools task in the cluster; read its logs."""
        restore = self.restore
        return ecs_run_statements(
            self,
            cluster_arn=restore.cluster.cluster_arn,
            cluster_name=restore.cluster.cluster_name,
            family=restore.task_definition.family,
            pass_roles=[
                restore.task_definition.task_role.role_arn,
                restore.task_definition.obtain_execution_role().role_arn,
            ],
            log_group_arn=restore.tools_log_group.log_group_arn,
            sid_prefix="Tools",
        )

    # -- Secrets, S3, DynamoDB ----------------------------------------------------------------
    def data_statements(self) -> list[iam.PolicyStatement]:
        """Secrets (production read, temporary create/delete), artifacts, audit table."""
        temp_secrets = temp_secret_arn_pattern(self)
        statements: list[iam.PolicyStatement] = []
        if self.database.secret_arn:
            statements.append(
                iam.PolicyStatement(
                    sid="ProductionSecretRead",
                    # ListSecretVersionIds: the credentials valid at the restore point.
                    actions=[
                        "secretsmanager:GetSecretValue",
                        "secretsmanager:DescribeSecret",
                        "secretsmanager:ListSecretVersionIds",
                    ],
                    resources=[self.database.secret_arn],
                )
            )
        statements += [
            iam.PolicyStatement(
                sid="SecretsRandomPassword",
                actions=["secretsmanager:GetRandomPassword"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="TempSecretsCreateTagged",
                actions=["secretsmanager:CreateSecret", "secretsmanager:TagResource"],
                resources=[temp_secrets],
                conditions=TAG_PRESENT_ON_REQUEST,
            ),
            iam.PolicyStatement(
                sid="TempSecretsManageTagged",
                actions=[
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:PutSecretValue",
                    "secretsmanager:UpdateSecret",
                    "secretsmanager:ListSecretVersionIds",
                    "secretsmanager:DeleteSecret",
                ],
                resources=[temp_secrets],
                conditions=TAG_PRESENT_ON_RESOURCE,
            ),
            *self.restore.artifact_statements(),
            iam.PolicyStatement(
                sid="AuditTable",
                actions=[
                    "dynamodb:DescribeTable",
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:BatchWriteItem",
                ],
                resources=[
                    self.restore.table.table_arn,
                    f"{self.restore.table.table_arn}/index/*",
                ],
            ),
        ]
        return statements


def ecs_run_statements(
    scope: Construct,
    *,
    cluster_arn: str,
    cluster_name: str,
    family: str,
    pass_roles: list[str],
    log_group_arn: str,
    sid_prefix: str,
) -> list[iam.PolicyStatement]:
    """Run tasks of one task definition family in one cluster, watch/stop them, read their logs."""
    stack = Stack.of(scope)
    in_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
    tasks = stack.format_arn(
        service="ecs",
        resource="task",
        resource_name=f"{cluster_name}/*",
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )
    return [
        iam.PolicyStatement(
            sid=f"{sid_prefix}RunTask",
            actions=["ecs:RunTask"],
            resources=[
                stack.format_arn(
                    service="ecs",
                    resource="task-definition",
                    resource_name=f"{family}:*",
                    arn_format=ArnFormat.SLASH_RESOURCE_NAME,
                )
            ],
            conditions=in_cluster,
        ),
        iam.PolicyStatement(
            sid=f"{sid_prefix}TagOnRunTask",
            actions=["ecs:TagResource"],
            resources=[tasks],
            conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
        ),
        iam.PolicyStatement(
            sid=f"{sid_prefix}WatchTasks",
            actions=["ecs:DescribeTasks", "ecs:StopTask"],
            resources=[tasks],
            conditions=in_cluster,
        ),
        iam.PolicyStatement(
            sid=f"{sid_prefix}DescribeTaskDefinition",
            actions=["ecs:DescribeTaskDefinition"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid=f"{sid_prefix}PassTaskRoles",
            actions=["iam:PassRole"],
            resources=pass_roles,
            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ),
        iam.PolicyStatement(
            sid=f"{sid_prefix}ReadLogs",
            actions=["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"],
            resources=[log_group_arn],
        ),
    ]
