"""The network: isolated subnets only, distinct restore subnets, VPC endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from cdk_helpers import VARIANTS, logical_id, resources

pytestmark = pytest.mark.cdk

INTERFACE_SERVICES = {"secretsmanager", "ecr.api", "ecr.dkr", "logs", "dms", "rds", "ecs"}
GATEWAY_SERVICES = {"s3", "dynamodb"}


def _subnets_by_group(template: Any) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for lid, res in resources(template, "AWS::EC2::Subnet").items():
        tags = {t["Key"]: t["Value"] for t in res["Properties"]["Tags"]}
        assert tags["aws-cdk:subnet-type"] == "Isolated", lid
        groups.setdefault(tags["aws-cdk:subnet-name"], set()).add(lid)
    return groups


def _refs(values: list[Any]) -> set[str]:
    return {v["Ref"] for v in values}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_route_to_the_internet(template_of: Any, variant: str) -> None:
    template = template_of(variant)
    for kind in (
        "AWS::EC2::InternetGateway",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::EC2::NatGateway",
        "AWS::EC2::EIP",
        "AWS::EC2::EgressOnlyInternetGateway",
        "AWS::EC2::TransitGatewayAttachment",
    ):
        assert not resources(template, kind), kind
    for lid, route in resources(template, "AWS::EC2::Route").items():
        props = route["Properties"]
        assert "GatewayId" not in props and "NatGatewayId" not in props, lid
    for lid, subnet in resources(template, "AWS::EC2::Subnet").items():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False, lid


def test_three_isolated_subnet_groups_in_two_azs(template_of: Any) -> None:
    groups = _subnets_by_group(template_of("default"))
    assert set(groups) == {"database", "restore", "tasks"}
    assert all(len(subnets) == 2 for subnets in groups.values())


def test_restore_subnets_have_their_own_route_tables_without_routes(template_of: Any) -> None:
    template = template_of("single_az")
    restore = _subnets_by_group(template)["restore"]
    associations = resources(template, "AWS::EC2::SubnetRouteTableAssociation").values()
    tables = {
        a["Properties"]["RouteTableId"]["Ref"]
        for a in associations
        if a["Properties"]["SubnetId"]["Ref"] in restore
    }
    assert len(tables) == 2
    routes = resources(template, "AWS::EC2::Route").values()
    assert not [r for r in routes if r["Properties"]["RouteTableId"]["Ref"] in tables]


@pytest.mark.parametrize("variant", ["single_az", "aurora_serverless"])
def test_subnet_groups_use_the_right_subnets(template_of: Any, variant: str) -> None:
    template = template_of(variant)
    groups = _subnets_by_group(template)
    subnet_groups = resources(template, "AWS::RDS::DBSubnetGroup")
    restore_group = subnet_groups[logical_id(template, "AWS::RDS::DBSubnetGroup", "Restore")]
    assert _refs(restore_group["Properties"]["SubnetIds"]) == groups["restore"]
    assert restore_group["Properties"]["DBSubnetGroupName"] == "restoreassets-restore"
    database_group = subnet_groups[logical_id(template, "AWS::RDS::DBSubnetGroup", "Database")]
    assert _refs(database_group["Properties"]["SubnetIds"]) == groups["database"]
    (dms_group,) = resources(template, "AWS::DMS::ReplicationSubnetGroup").values()
    assert _refs(dms_group["Properties"]["SubnetIds"]) == groups["restore"]


def _service(endpoint: dict[str, Any]) -> str:
    name = endpoint["Properties"]["ServiceName"]
    if isinstance(name, dict):  # Fn::Join ["", ["com.amazonaws.", {"Ref": region}, ".svc"]]
        name = "".join(p if isinstance(p, str) else "REGION" for p in name["Fn::Join"][1])
    return name.split("REGION.", 1)[1]


def test_vpc_endpoints(template_of: Any) -> None:
    template = template_of("default")
    endpoints = resources(template, "AWS::EC2::VPCEndpoint").values()
    interface = {
        _service(e) for e in endpoints if e["Properties"]["VpcEndpointType"] == "Interface"
    }
    gateway = {
        _service(e) for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"
    }
    assert interface == INTERFACE_SERVICES
    assert gateway == GATEWAY_SERVICES
    for e in endpoints:
        if e["Properties"]["VpcEndpointType"] == "Interface":
            assert e["Properties"]["PrivateDnsEnabled"] is True


def test_dagster_adds_the_ssm_messages_endpoint(template_of: Any) -> None:
    endpoints = resources(template_of("dagster"), "AWS::EC2::VPCEndpoint").values()
    assert "ssmmessages" in {_service(e) for e in endpoints}


def test_endpoint_group_accepts_https_from_inside_the_vpc_only(template_of: Any) -> None:
    template = template_of("default")
    lid = logical_id(template, "AWS::EC2::SecurityGroup", "EndpointSg")
    rules = resources(template, "AWS::EC2::SecurityGroup")[lid]["Properties"][
        "SecurityGroupIngress"
    ]
    (rule,) = rules
    assert (rule["FromPort"], rule["ToPort"]) == (443, 443)
    assert rule["CidrIp"] == {
        "Fn::GetAtt": [logical_id(template, "AWS::EC2::VPC", "Vpc"), "CidrBlock"]
    }


def test_default_security_group_is_restricted_and_flow_logs_on(template_of: Any) -> None:
    template = template_of("default")
    assert resources(template, "Custom::VpcRestrictDefaultSG")
    (flow_log,) = resources(template, "AWS::EC2::FlowLog").values()
    assert flow_log["Properties"]["LogDestinationType"] == "cloud-watch-logs"
