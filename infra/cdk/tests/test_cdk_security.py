"""Security properties of the synthesized stack: databases, bucket, table, logs, security groups."""

from __future__ import annotations

from typing import Any

import pytest
from cdk_helpers import (
    DATABASE_VARIANTS,
    VARIANTS,
    group_ref,
    ingress_rules,
    logical_id,
    resources,
    tjson,
)

pytestmark = pytest.mark.cdk

ALL_VARIANTS = list(VARIANTS)


# -- databases --------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_no_database_instance_is_public_or_unencrypted(template_of: Any, variant: str) -> None:
    template = template_of(variant)
    clusters = resources(template, "AWS::RDS::DBCluster")
    for lid, res in resources(template, "AWS::RDS::DBInstance").items():
        props = res["Properties"]
        assert props.get("PubliclyAccessible") is False, f"{lid} must set PubliclyAccessible"
        if "DBClusterIdentifier" not in props:  # Aurora instances inherit it from the cluster
            assert props.get("StorageEncrypted") is True, lid
            assert int(props["BackupRetentionPeriod"]) >= 7, lid
    for lid, res in clusters.items():
        assert res["Properties"]["StorageEncrypted"] is True, lid
        assert int(res["Properties"]["BackupRetentionPeriod"]) >= 7, lid


@pytest.mark.parametrize("variant", DATABASE_VARIANTS)
def test_demo_database_shape(template_of: Any, variant: str) -> None:
    template = template_of(variant)
    aurora = variant.startswith("aurora")
    db_type = "AWS::RDS::DBCluster" if aurora else "AWS::RDS::DBInstance"
    (props,) = [r["Properties"] for r in resources(template, db_type).values()]
    assert props["Engine"] == ("aurora-postgresql" if aurora else "postgres")
    assert str(props["EngineVersion"]).startswith("15")
    # Deletion protection: on by default, off when asked (multi_az sets deletionProtection=false).
    assert props["DeletionProtection"] is (variant != "multi_az")
    if variant == "multi_az":
        assert props["MultiAZ"] is True
    if variant == "aurora_serverless":
        assert props["ServerlessV2ScalingConfiguration"]["MinCapacity"] == 0.5
        instance_classes = {
            r["Properties"]["DBInstanceClass"]
            for r in resources(template, "AWS::RDS::DBInstance").values()
        }
        assert instance_classes == {"db.serverless"}
    # The password comes from a generated secret, never a literal.
    password = props["MasterUserPassword"]
    assert isinstance(password, dict) and "Fn::Join" in password
    assert "{{resolve:secretsmanager:" in str(password)
    (secret,) = resources(template, "AWS::SecretsManager::Secret").values()
    generate = secret["Properties"]["GenerateSecretString"]
    assert '"username":"postgres"' in generate["SecretStringTemplate"]
    assert generate["GenerateStringKey"] == "password"
    # Single-user rotation through the hosted rotation application.
    (rotation,) = resources(template, "AWS::SecretsManager::RotationSchedule").values()
    assert rotation["Properties"]["RotationRules"]["ScheduleExpression"] == "rate(30 days)"
    (app,) = resources(template, "AWS::Serverless::Application").values()
    mapping = app["Properties"]["Location"]["ApplicationId"]["Fn::FindInMap"][0]
    assert "PostgreSQLRotationSingleUser" in str(tjson(template)["Mappings"][mapping])


@pytest.mark.parametrize("variant", DATABASE_VARIANTS)
def test_demo_database_log_group_has_retention(template_of: Any, variant: str) -> None:
    template = template_of(variant)
    names = {
        str(r["Properties"].get("LogGroupName")): r["Properties"].get("RetentionInDays")
        for r in resources(template, "AWS::Logs::LogGroup").values()
    }
    kind = "cluster" if variant.startswith("aurora") else "instance"
    assert names[f"/aws/rds/{kind}/restoreassets-demo/postgresql"] == 30


def test_no_database_without_selection(template_of: Any) -> None:
    template = template_of("default")
    assert not resources(template, "AWS::RDS::DBInstance")
    assert not resources(template, "AWS::RDS::DBCluster")


# -- bucket, table, logs ----------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["default", "single_az"])
def test_artifact_bucket_is_private_encrypted_versioned_expiring(
    template_of: Any, variant: str
) -> None:
    template = template_of(variant)
    (lid,) = resources(template, "AWS::S3::Bucket")
    props = resources(template, "AWS::S3::Bucket")[lid]["Properties"]
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    expire = rules["expire-restore-artifacts"]
    assert expire["Status"] == "Enabled"
    assert expire["Prefix"] == "restores/"
    assert expire["ExpirationInDays"] == 30
    assert "NoncurrentVersionExpiration" in expire
    # enforce_ssl: the bucket policy denies every request that is not over TLS.
    (policy,) = resources(template, "AWS::S3::BucketPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny"
        and s["Action"] == "s3:*"
        and s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in statements
    )


def test_audit_table_is_encrypted_with_pitr_and_on_demand(template_of: Any) -> None:
    template = template_of("default")
    (table,) = resources(template, "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "restore_id", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "restore_id", "AttributeType": "S"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_log_group_has_retention(template_of: Any, variant: str) -> None:
    template = template_of(variant)
    for lid, res in resources(template, "AWS::Logs::LogGroup").items():
        assert res["Properties"].get("RetentionInDays"), lid


# -- security groups --------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_no_ingress_from_anywhere(template_of: Any, variant: str) -> None:
    for rule in ingress_rules(template_of(variant)):
        assert rule.get("CidrIp") != "0.0.0.0/0", rule
        assert rule.get("CidrIpv6") != "::/0", rule


def _sources_on(template: Any, target_lid: str) -> dict[str, set[int]]:
    """Source security group logical id -> ports, of the ingress rules of one group."""
    sources: dict[str, set[int]] = {}
    for rule in ingress_rules(template):
        if rule["GroupId"] != group_ref(target_lid):
            continue
        assert "CidrIp" not in rule and "CidrIpv6" not in rule, rule
        source = rule["SourceSecurityGroupId"]["Fn::GetAtt"][0]
        assert rule["FromPort"] == rule["ToPort"]
        sources.setdefault(source, set()).add(_port(template, rule["FromPort"]))
    return sources


def _port(template: Any, port: Any) -> int:
    """A port number; rules CDK derives from a database (`allowDefaultPortFrom`) refer to its
    endpoint port attribute, which is 5432 here (no database overrides the port)."""
    if isinstance(port, int):
        return port
    target, attribute = port["Fn::GetAtt"]
    assert attribute == "Endpoint.Port", port
    db = tjson(template)["Resources"][target]
    assert db["Type"] in ("AWS::RDS::DBInstance", "AWS::RDS::DBCluster")
    assert db["Properties"].get("Port", 5432) in (5432, "5432")
    return 5432


@pytest.mark.parametrize("variant", ["default", "dagster"])
def test_temp_db_accepts_postgres_only_from_dms_and_ecs_tasks(
    template_of: Any, variant: str
) -> None:
    template = template_of(variant)
    sg = "AWS::EC2::SecurityGroup"
    temp = logical_id(template, sg, "TempDbSg")
    dms = logical_id(template, sg, "DmsSg")
    task = logical_id(template, sg, "TaskSg")
    assert _sources_on(template, temp) == {dms: {5432}, task: {5432}}


@pytest.mark.parametrize("variant", ["single_az", "aurora_serverless", "dagster"])
def test_production_db_accepts_postgres_from_named_groups_only(
    template_of: Any, variant: str
) -> None:
    template = template_of(variant)
    sg = "AWS::EC2::SecurityGroup"
    prod = logical_id(template, sg, "DatabaseSg")
    sources = _sources_on(template, prod)
    expected = {
        logical_id(template, sg, "DmsSg"),
        logical_id(template, sg, "TaskSg"),
        logical_id(template, sg, "RotationSg"),
        logical_id(template, sg, "DemoLoaderSg"),
    }
    if variant == "dagster":
        expected.add(logical_id(template, sg, "DagsterSg"))
    assert set(sources) == expected
    assert all(ports == {5432} for ports in sources.values())


def test_existing_database_group_gets_rules_from_dms_and_tasks(template_of: Any) -> None:
    template = template_of("existing")
    rules = [r for r in ingress_rules(template) if r["GroupId"] == "sg-0123456789abcdef0"]
    sources = {r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in rules}
    sg = "AWS::EC2::SecurityGroup"
    assert sources == {logical_id(template, sg, "DmsSg"), logical_id(template, sg, "TaskSg")}
    assert {(r["FromPort"], r["ToPort"]) for r in rules} == {(5432, 5432)}


def test_temp_db_and_dms_groups_have_no_open_egress(template_of: Any) -> None:
    template = template_of("default")
    groups = resources(template, "AWS::EC2::SecurityGroup")
    for name in ("TempDbSg", "DmsSg"):
        lid = logical_id(template, "AWS::EC2::SecurityGroup", name)
        for rule in groups[lid]["Properties"].get("SecurityGroupEgress", []):
            assert rule.get("CidrIp") in (None, "255.255.255.255/32"), (name, rule)
        for res in resources(template, "AWS::EC2::SecurityGroupEgress").values():
            if res["Properties"]["GroupId"] == group_ref(lid):
                assert "CidrIp" not in res["Properties"], (name, res)
