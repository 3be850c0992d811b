"""IAM: no wildcard actions, `*` resources only for the documented read-only calls, and the
backend role's tag, name and service conditions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cdk_helpers import (
    CDK_DIR,
    VARIANTS,
    as_list,
    iam_statements,
    identity_statement_problems,
    tjson,
)
from restore_assets_infra.backend_role import WILDCARD_RESOURCE_ACTIONS

pytestmark = pytest.mark.cdk

ALLOWED_ON_ANY = set(WILDCARD_RESOURCE_ACTIONS)
TAG = "restore-assets:restore-id"


class _FakeTemplate:
    """Just enough of assertions.Template for the walker."""

    def __init__(self, statements: list[dict[str, Any]]) -> None:
        self._json = {
            "Resources": {
                "P": {
                    "Type": "AWS::IAM::Policy",
                    "Properties": {"PolicyDocument": {"Statement": statements}},
                }
            }
        }

    def to_json(self) -> dict[str, Any]:
        return self._json


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_wildcard_actions_and_star_resources_only_for_allowed_calls(
    template_of: Any, variant: str
) -> None:
    assert identity_statement_problems(template_of(variant), ALLOWED_ON_ANY) == []


def test_the_walker_catches_what_it_should() -> None:
    bad = [
        {"Sid": "A", "Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Sid": "B", "Effect": "Allow", "Action": "rds:*", "Resource": "arn:aws:rds:::db:x"},
        {"Sid": "C", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["*"]},
        {"Sid": "D", "Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:x"},
    ]
    problems = identity_statement_problems(_FakeTemplate(bad), ALLOWED_ON_ANY)
    assert [p.split(":")[0] for p in problems] == ["P/A", "P/A", "P/B", "P/C", "P/D"]
    good = [
        {"Effect": "Allow", "Action": ["rds:Describe*"], "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/restores/*"},
        {"Effect": "Deny", "Action": "rds:DeleteDBInstance", "Resource": "*"},
    ]
    assert identity_statement_problems(_FakeTemplate(good), ALLOWED_ON_ANY) == []


def test_readme_documents_the_allow_list() -> None:
    readme = (CDK_DIR / "README.md").read_text(encoding="utf-8")
    for action in WILDCARD_RESOURCE_ACTIONS:
        assert f"`{action}`" in readme, action


def _backend_statements(template: Any) -> dict[str, dict[str, Any]]:
    """Sid -> statement of the backend role's managed policies."""
    found = {}
    for lid, res in tjson(template)["Resources"].items():
        if res["Type"] == "AWS::IAM::ManagedPolicy" and lid.startswith("Backend"):
            for statement in res["Properties"]["PolicyDocument"]["Statement"]:
                found[statement["Sid"]] = statement
    return found


CREATE_SIDS = (
    "RdsRestoreTemporary",
    "RdsSnapshotSource",
    "RdsTagTemporary",
    "DmsCreateTagged",
    "TempSecretsCreateTagged",
)
MANAGE_SIDS = ("RdsManageTemporary", "DmsManageTagged", "TempSecretsManageTagged")


@pytest.mark.parametrize("variant", ["single_az", "aurora_serverless", "existing"])
def test_creates_need_the_tag_in_the_request_and_changes_need_it_on_the_resource(
    template_of: Any, variant: str
) -> None:
    statements = _backend_statements(template_of(variant))
    for sid in CREATE_SIDS:
        assert statements[sid]["Condition"] == {"Null": {f"aws:RequestTag/{TAG}": "false"}}, sid
    for sid in MANAGE_SIDS:
        assert statements[sid]["Condition"] == {"Null": {f"aws:ResourceTag/{TAG}": "false"}}, sid
    # RDS, DMS and secret deletes happen only in statements with the resource-tag condition (or
    # the in-place restore statement, absent here); for RDS, only on the temporary prefix.
    for sid, statement in statements.items():
        deletes = [
            a
            for a in as_list(statement["Action"])
            if a.split(":")[0] in ("rds", "dms", "secretsmanager") and ":Delete" in a
        ]
        if deletes and statement["Effect"] == "Allow":
            assert sid in MANAGE_SIDS, sid
    rds_manage = json.dumps(statements["RdsManageTemporary"]["Resource"])
    assert ":db:restore-assets-*" in rds_manage and ":cluster:restore-assets-*" in rds_manage
    assert ":db:*" not in rds_manage
    tagging = json.dumps(statements["RdsTagTemporary"]["Resource"])
    assert "restoreassets-demo" not in tagging and "prod-db" not in tagging
    secrets = json.dumps(statements["TempSecretsManageTagged"]["Resource"])
    assert ":secret:restore-assets/*" in secrets


@pytest.mark.parametrize(
    ("variant", "source_arns"),
    [
        ("single_az", [":db:restoreassets-demo"]),
        ("aurora_serverless", [":cluster:restoreassets-demo"]),
        ("existing", [":db:prod-db", ":cluster:prod-db"]),
    ],
)
def test_source_database_is_protected_by_an_explicit_deny(
    template_of: Any, variant: str, source_arns: list[str]
) -> None:
    statements = _backend_statements(template_of(variant))
    deny = statements["DenyChangesToSource"]
    assert deny["Effect"] == "Deny"
    assert {"rds:DeleteDBInstance", "rds:DeleteDBCluster", "rds:ModifyDBInstance"} <= set(
        deny["Action"]
    )
    text = json.dumps(deny["Resource"])
    for arn in source_arns:
        assert arn in text
    assert "RdsInstanceRestoreInPlace" not in statements


def test_instance_restore_flag_swaps_the_deny_for_a_scoped_allow(template_of: Any) -> None:
    statements = _backend_statements(template_of("dagster"))
    assert "DenyChangesToSource" not in statements
    in_place = statements["RdsInstanceRestoreInPlace"]
    text = json.dumps(in_place["Resource"])
    assert ":db:restoreassets-demo" in text and ":db:restoreassets-demo-*" in text
    assert ":db:*" not in text


@pytest.mark.parametrize("variant", ["single_az", "dagster"])
def test_pass_role_is_limited_to_named_roles_and_services(template_of: Any, variant: str) -> None:
    for lid, statement in iam_statements(template_of(variant)):
        if "iam:PassRole" in as_list(statement.get("Action")):
            assert "*" not in as_list(statement["Resource"]), lid
            condition = statement.get("Condition", {}).get("StringEquals", {})
            if lid.startswith(("Backend", "Dagster")):
                assert condition.get("iam:PassedToService") in (
                    "ecs-tasks.amazonaws.com",
                    "dms.amazonaws.com",
                ), lid


def test_run_task_is_limited_to_the_cluster_and_family(template_of: Any) -> None:
    statements = _backend_statements(template_of("single_az"))
    run = statements["ToolsRunTask"]
    assert "ArnEquals" in run["Condition"] and "ecs:cluster" in run["Condition"]["ArnEquals"]
    assert "task-definition/RestoreAssets-restore-tools:*" in json.dumps(run["Resource"])


def test_backend_role_trust_and_production_secret(template_of: Any) -> None:
    template = template_of("existing")
    roles = tjson(template)["Resources"]
    (role,) = [r for lid, r in roles.items() if lid.startswith("BackendRole")]
    principals = [
        s["Principal"] for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    ]
    assert principals == [{"Service": "ecs-tasks.amazonaws.com"}]
    statements = _backend_statements(template)
    read = statements["ProductionSecretRead"]
    assert read["Resource"] == VARIANTS["existing"]["sourceSecretArn"]
    assert "secretsmanager:ListSecretVersionIds" in read["Action"]
