"""VPC, subnets, VPC endpoints and the security groups every other construct uses.

No subnet has a route to the internet: there is no internet gateway and no NAT gateway. AWS APIs
are reached through interface endpoints (Secrets Manager, ECR, CloudWatch Logs, DMS, RDS, ECS)
and gateway endpoints (S3, DynamoDB).
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from .config import Settings
from .logs import retention

POSTGRES_PORT = 5432

# Subnet group names (SubnetConfiguration.name); tests and other constructs select by them.
DATABASE_SUBNETS = "database"
RESTORE_SUBNETS = "restore"
TASK_SUBNETS = "tasks"

INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Dms": ec2.InterfaceVpcEndpointAwsService.DATABASE_MIGRATION_SERVICE,
    "Rds": ec2.InterfaceVpcEndpointAwsService.RDS,
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
}


class Network(Construct):
    """The VPC (isolated subnets only), its endpoints and the least-privilege security groups."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(settings.vpc_cidr),
            max_azs=2,
            nat_gateways=0,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name=DATABASE_SUBNETS,
                    subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                    cidr_mask=24,
                ),
                ec2.SubnetConfiguration(
                    name=RESTORE_SUBNETS,
                    subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                    cidr_mask=24,
                ),
                ec2.SubnetConfiguration(
                    name=TASK_SUBNETS,
                    subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                    cidr_mask=22,
                ),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDb": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
        )
        if settings.flow_logs:
            flow_log_group = logs.LogGroup(
                self, "FlowLogs", retention=retention(settings.log_retention_days)
            )
            self.vpc.add_flow_log(
                "FlowLog",
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                traffic_type=ec2.FlowLogTrafficType.REJECT,
            )

        self.database_subnets = ec2.SubnetSelection(subnet_group_name=DATABASE_SUBNETS)
        self.restore_subnets = ec2.SubnetSelection(subnet_group_name=RESTORE_SUBNETS)
        self.task_subnets = ec2.SubnetSelection(subnet_group_name=TASK_SUBNETS)

        # One security group for all interface endpoints: HTTPS from inside the VPC only.
        self.endpoint_sg = self.security_group(
            "EndpointSg", "Interface VPC endpoints: HTTPS from inside the VPC"
        )
        self.endpoint_sg.add_ingress_rule(
            ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        self.endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        services = dict(INTERFACE_ENDPOINTS)
        if settings.deploy_dagster:
            # ECS Exec (port forwarding to the Dagster webserver) goes through SSM messages.
            services["SsmMessages"] = ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES
        for name, service in services.items():
            self.endpoints[name] = self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.task_subnets,
                security_groups=[self.endpoint_sg],
                private_dns_enabled=True,
                open=False,
            )

        # Security groups. Nothing here allows ingress from 0.0.0.0/0; database ports are open
        # only to the named security groups. Egress is closed unless added below.
        self.dms_sg = self.security_group("DmsSg", "DMS replication instances of restores")
        self.task_sg = self.security_group("TaskSg", "ECS tasks running the pg tools image")
        self.temp_db_sg = self.security_group(
            "TempDbSg", "Temporary (restored) databases: PostgreSQL from DMS and ECS tasks only"
        )
        self.dagster_sg = self.security_group("DagsterSg", "Dagster webserver, daemon and runs")

        for client in (self.dms_sg, self.task_sg):
            self.allow_postgres(client, self.temp_db_sg)
        # AWS APIs: HTTPS to the interface endpoints and the S3/DynamoDB gateway endpoints.
        # The gateway endpoints have no security group, hence 443 to any address; the subnets
        # have no route to the internet, so this reaches AWS endpoints only.
        for client in (self.task_sg, self.dagster_sg):
            client.add_egress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs via VPC endpoints"
            )
        self.dms_sg.add_egress_rule(
            self.endpoint_sg, ec2.Port.tcp(443), "Secrets Manager via the VPC endpoint"
        )

    def security_group(self, construct_id: str, description: str) -> ec2.SecurityGroup:
        """A security group in this VPC with no egress rule (callers add what they need)."""
        return ec2.SecurityGroup(
            self,
            construct_id,
            vpc=self.vpc,
            description=description,
            allow_all_outbound=False,
        )

    def allow_postgres(self, client: ec2.ISecurityGroup, server: ec2.ISecurityGroup) -> None:
        """Allow PostgreSQL (5432) from `client` to `server`: ingress on one, egress on the other."""
        server.add_ingress_rule(client, ec2.Port.tcp(POSTGRES_PORT), "PostgreSQL")
        client.add_egress_rule(server, ec2.Port.tcp(POSTGRES_PORT), "PostgreSQL")
