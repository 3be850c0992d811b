"""Restore capability: the pg tools task definition, DMS roles, outputs and backend YAML."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cdk_helpers import (
    CDK_DIR,
    PUBLIC_IMAGE,
    as_list,
    iam_statements,
    load_module,
    logical_id,
    resources,
    tjson,
)
from restore_assets_infra.backend_yaml import AWS_KEYS, OUTPUT_KEYS, render_backend_yaml

pytestmark = pytest.mark.cdk


backend_config = load_module(CDK_DIR / "backend_config.py", "restore_assets_cdk_backend_config")


def _tools_task(template: Any) -> dict[str, Any]:
    tasks = resources(template, "AWS::ECS::TaskDefinition")
    (task,) = [t for t in tasks.values() if t["Properties"]["Family"].endswith("-restore-tools")]
    return task["Properties"]


def _container(template: Any) -> dict[str, Any]:
    (container,) = _tools_task(template)["ContainerDefinitions"]
    return container


def test_tools_task_is_fargate_with_the_restore_tools_container(template_of: Any) -> None:
    template = template_of("default")
    task = _tools_task(template)
    assert task["Family"] == "RestoreAssets-restore-tools"
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["NetworkMode"] == "awsvpc"
    assert _container(template)["Name"] == "restore-tools"
    assert _container(template)["Essential"] is True


def test_tools_image_built_from_the_dockerfile_by_default(template_of: Any) -> None:
    image = _container(template_of("default"))["Image"]
    # An asset image: pushed by `cdk deploy` to the bootstrap container assets repository.
    assert "Fn::Sub" in image
    assert "cdk-hnb659fds-container-assets" in image["Fn::Sub"]


def test_tools_image_from_image_uri(template_of: Any) -> None:
    assert _container(template_of("single_az"))["Image"] == PUBLIC_IMAGE
    # A private ECR image: same URI, built from the repository's ARN (pull rights scoped).
    image = json.dumps(_container(template_of("existing"))["Image"])
    assert "123456789012.dkr.ecr.eu-west-1." in image and "/restore-tools:1.0" in image


def test_private_ecr_image_pull_is_scoped_to_its_repository(template_of: Any) -> None:
    template = template_of("existing")
    pulls = [s for _, s in iam_statements(template) if "ecr:BatchGetImage" in as_list(s["Action"])]
    assert pulls
    for statement in pulls:
        assert "repository/restore-tools" in json.dumps(statement["Resource"])


def test_tools_container_logs_to_a_log_group_with_retention(template_of: Any) -> None:
    template = template_of("default")
    logging = _container(template)["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    options = logging["Options"]
    assert options["awslogs-stream-prefix"] == "restore-tools"
    assert options["awslogs-region"] == {"Ref": "AWS::Region"}
    group = options["awslogs-group"]["Ref"]
    log_group = tjson(template)["Resources"][group]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == 30


def test_tools_container_environment(template_of: Any) -> None:
    template = template_of("default")
    env = {e["Name"]: e["Value"] for e in _container(template)["Environment"]}
    bucket = logical_id(template, "AWS::S3::Bucket", "Artifacts")
    table = logical_id(template, "AWS::DynamoDB::Table", "AuditTable")
    assert env["RESTORE_ASSETS_ARTIFACT_BUCKET"] == {"Ref": bucket}
    assert env["RESTORE_ASSETS_AUDIT_TABLE"] == {"Ref": table}
    assert env["AWS_DEFAULT_REGION"] == {"Ref": "AWS::Region"}
    assert env["RESTORE_ASSETS_ARTIFACT_PREFIX"] == "restores/"


def test_tools_task_role_reads_secrets_and_writes_the_artifact_prefix(template_of: Any) -> None:
    template = template_of("single_az")
    role = _tools_task(template)["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for lid, s in iam_statements(template)
        if role in json.dumps(tjson(template)["Resources"][lid]["Properties"].get("Roles"))
    ]
    by_sid = {s.get("Sid"): s for s in statements}
    objects = by_sid["ArtifactObjects"]
    assert "s3:PutObject" in objects["Action"] and "s3:GetObject" in objects["Action"]
    assert json.dumps(objects["Resource"]).endswith('/restores/*"]]}')
    assert by_sid["ArtifactList"]["Condition"] == {
        "StringLike": {"s3:prefix": ["restores/", "restores/*"]}
    }
    secrets = by_sid["ReadDatabaseSecrets"]
    assert set(secrets["Action"]) == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
    }
    text = json.dumps(secrets["Resource"])
    assert ":secret:restore-assets/*" in text
    assert "DatabaseInstanceSecretAttachment" in text  # the production secret


@pytest.mark.parametrize(("variant", "expected"), [("default", True), ("existing", False)])
def test_dms_service_roles_behind_a_flag(template_of: Any, variant: str, expected: bool) -> None:
    template = template_of(variant)
    roles = {
        r["Properties"].get("RoleName"): r for r in resources(template, "AWS::IAM::Role").values()
    }
    for name, policy in (
        ("dms-vpc-role", "AmazonDMSVPCManagementRole"),
        ("dms-cloudwatch-logs-role", "AmazonDMSCloudWatchLogsRole"),
    ):
        assert (name in roles) is expected
        if expected:
            assert policy in json.dumps(roles[name]["Properties"]["ManagedPolicyArns"])
            principal = roles[name]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
            assert principal["Principal"] == {"Service": "dms.amazonaws.com"}
    (group_lid,) = resources(template, "AWS::DMS::ReplicationSubnetGroup")
    depends = tjson(template)["Resources"][group_lid].get("DependsOn", [])
    assert any("DmsVpcRole" in d for d in depends) is expected


def _resolve_for_yaml(value: Any) -> str:
    """Turn an Fn::Join of the BackendConfigYaml output into text, with stand-ins for tokens."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_resolve_for_yaml(p) for p in parts)
    if "Ref" in value:
        return f"ref-{value['Ref']}".replace("::", "-")
    if "Fn::GetAtt" in value:
        return "att-" + "-".join(value["Fn::GetAtt"])
    raise AssertionError(f"unexpected intrinsic {value}")


@pytest.mark.parametrize("variant", ["default", "single_az", "aurora_serverless", "existing"])
def test_backend_config_yaml_output_has_the_exact_keys(template_of: Any, variant: str) -> None:
    outputs = tjson(template_of(variant))["Outputs"]
    text = _resolve_for_yaml(outputs["BackendConfigYaml"]["Value"])
    document = yaml.safe_load(text)
    assert list(document) == ["backend", "aws"]
    assert document["backend"] == "aws"
    aws = document["aws"]
    assert list(aws) == list(AWS_KEYS)
    assert aws["ecs_container_name"] == "restore-tools"
    assert aws["parameter_group"] is None
    assert aws["temp_instance_class"] == "db.r6g.large"
    assert aws["dms_instance_class"] == "dms.r5.large"
    assert aws["artifact_prefix"] == "restores/"
    assert aws["mover"] == "dms"
    assert aws["region_name"] == "ref-AWS-Region"
    assert len(aws["ecs_subnets"]) == 2
    for key in ("restore_security_group_ids", "dms_security_group_ids", "ecs_security_group_ids"):
        assert isinstance(aws[key], list) and len(aws[key]) == 1
    if variant == "existing":
        assert aws["source_identifier"] == "prod-db"
        assert aws["secret_arn"].startswith("arn:aws:secretsmanager:")
    elif variant == "default":
        assert aws["source_identifier"] == "UNSET"
        assert aws["secret_arn"] is None
    else:
        assert aws["source_identifier"] == "restoreassets-demo"
        assert aws["secret_arn"].startswith("ref-Database")
    # Every individual output backend_config.py needs is there too.
    needed = set(OUTPUT_KEYS) - ({"SecretArn"} if variant == "default" else set())
    assert needed <= set(outputs)


def test_backend_config_script_rebuilds_the_yaml(tmp_path: Path, capsys: Any) -> None:
    values = {
        "RegionName": "eu-west-1",
        "SourceIdentifier": "restoreassets-demo",
        "SecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
        "RestoreSubnetGroup": "restoreassets-restore",
        "RestoreSecurityGroupIds": "sg-1",
        "TempInstanceClass": "db.r6g.large",
        "DmsSubnetGroup": "restoreassets-restore-dms",
        "DmsSecurityGroupIds": "sg-2",
        "DmsInstanceClass": "dms.r5.large",
        "DmsSecretsAccessRoleArn": "arn:aws:iam::123456789012:role/dms-secrets",
        "EcsCluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/c",
        "EcsTaskDefinition": "arn:aws:ecs:eu-west-1:123456789012:task-definition/t:1",
        "EcsContainerName": "restore-tools",
        "EcsSubnets": "subnet-1,subnet-2",
        "EcsSecurityGroupIds": "sg-3",
        "ArtifactBucket": "bucket",
        "ArtifactPrefix": "restores/",
        "AuditTable": "table",
        "Mover": "dms",
        "BackendRoleArn": "arn:aws:iam::123456789012:role/r",
    }
    outputs_file = tmp_path / "cdk-outputs.json"
    outputs_file.write_text(json.dumps({"RestoreAssets": values}))
    assert backend_config.main([str(outputs_file)]) == 0
    text = capsys.readouterr().out
    document = yaml.safe_load(text)
    assert list(document["aws"]) == list(AWS_KEYS)
    assert document["aws"]["ecs_subnets"] == ["subnet-1", "subnet-2"]
    assert document["aws"]["restore_security_group_ids"] == ["sg-1"]
    assert document["aws"]["parameter_group"] is None
    assert document["aws"]["secret_arn"] == values["SecretArn"]
    assert document["aws"]["dms_secrets_role_arn"] == values["DmsSecretsAccessRoleArn"]
    # Unquoted, as in the documented shape.
    assert re.search(r"^  ecs_subnets: \[subnet-1, subnet-2\]$", text, re.M)
    assert "  artifact_prefix: restores/\n" in text

    # Only the whole-document output: used as it is.
    whole = render_backend_yaml({**document["aws"]})
    outputs_file.write_text(json.dumps({"RestoreAssets": {"BackendConfigYaml": whole}}))
    out = tmp_path / "backend.yaml"
    assert backend_config.main([str(outputs_file), "-o", str(out)]) == 0
    assert out.read_text() == whole

    # Several stacks and no --stack: a clear error, exit 2.
    outputs_file.write_text(json.dumps({"A": values, "B": values}))
    assert backend_config.main([str(outputs_file)]) == 2
    assert "--stack" in capsys.readouterr().err


def test_docker_build_context_excludes_heavy_directories() -> None:
    from restore_assets_infra.restore import DOCKER_EXCLUDES

    for name in (".git", ".venv", "infra", "**/__pycache__"):
        assert name in DOCKER_EXCLUDES


def test_repository_dockerfile_asset(tmp_path: Path) -> None:
    """With the real docker/Dockerfile: the staged build context leaves out the heavy dirs."""
    import aws_cdk as cdk
    from cdk_helpers import fake_layer_dir
    from restore_assets_infra.config import REPO_ROOT
    from restore_assets_infra.stack import build

    assert (REPO_ROOT / "docker" / "Dockerfile").is_file()
    app = cdk.App(outdir=str(tmp_path), context={"pg8000LayerDir": str(fake_layer_dir())})
    build(app)
    assembly = app.synth()
    staged = [p for p in Path(assembly.directory).glob("asset.*") if (p / "docker").is_dir()]
    assert len(staged) == 1
    names = {p.name for p in staged[0].iterdir()}
    assert "docker" in names
    assert not names & {".venv", ".git", ".demo"}
    assert "infra" not in names
