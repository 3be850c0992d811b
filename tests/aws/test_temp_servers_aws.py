"""Deleting temporary servers on moto: a server RDS is still busy with is waited for (botocore's
waiter), then deleted once; a server without the restore's tag is never deleted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.rds.models import rds_backends

from restore_assets.backends.aws.config import RESTORE_ID_TAG, AwsConfig
from restore_assets.backends.aws.ownership import NotOwned
from restore_assets.backends.aws.temp_servers import TempServers
from tests.aws.doubles import moto_instance

pytestmark = pytest.mark.aws

REGION = "us-east-1"
IDENT = "restore-assets-r1-db"


@pytest.fixture
def rds(monkeypatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("rds", region_name=REGION)
        moto_instance(client, IDENT, [{"Key": RESTORE_ID_TAG, "Value": "r1"}])
        yield client


def _servers(rds: Any) -> TempServers:
    cfg = AwsConfig(
        source_identifier="prod",
        secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:prod",
        restore_subnet_group="restore",
        restore_security_group_ids=("sg-1",),
        ecs_subnets=("subnet-1",),
        ecs_security_group_ids=("sg-2",),
        ecs_cluster="tools",
        ecs_task_definition="tools",
        artifact_bucket="artifacts",
        audit_table="audit",
        waiter_timeout_s=10,
        waiter_delay_s=1,
    )
    return TempServers(cfg, rds)


def _calls(rds: Any) -> list[str]:
    calls: list[str] = []
    rds.meta.events.register(
        "before-call.rds.*", lambda model, **_: calls.append(model.name), unique_id="calls"
    )
    return calls


def test_a_busy_temporary_instance_is_deleted_once_it_is_available(rds: Any) -> None:
    """The instance is 'modifying' (RDS refuses a delete): the waiter watches it until it is
    available (it turns available after the second describe), then one delete."""
    db = rds_backends[DEFAULT_ACCOUNT_ID][REGION].databases[IDENT]
    db.status = "modifying"
    described: list[int] = []

    def settle(**_: Any) -> None:
        described.append(1)
        if len(described) == 2:
            db.status = "available"

    rds.meta.events.register("after-call.rds.DescribeDBInstances", settle)
    calls = _calls(rds)
    _servers(rds).delete_instance(IDENT, "r1", wait=True)
    assert calls.count("DeleteDBInstance") == 1
    assert calls.index("DeleteDBInstance") > 2  # after the find and the waiter's describes
    assert rds.describe_db_instances()["DBInstances"] == []


def test_an_instance_without_the_restores_tag_is_not_deleted(rds: Any) -> None:
    calls = _calls(rds)
    with pytest.raises(NotOwned):
        _servers(rds).delete_instance(IDENT, "someone-else")
    assert "DeleteDBInstance" not in calls
    assert [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]] == [
        IDENT
    ]


def test_a_missing_instance_is_success(rds: Any) -> None:
    _servers(rds).delete_instance("restore-assets-gone-db", "gone", wait=True)
