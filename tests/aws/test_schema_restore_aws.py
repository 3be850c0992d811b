"""The whole schema_restore job with `backend: aws`, under moto, against real local PostgreSQL.

RDS, Secrets Manager, S3, DynamoDB, ECS and DMS are moto. What moto cannot do is done by the
doubles of tests/aws/doubles.py, each wrapping the real (moto) client:
- the ECS container: `run_task` really runs `task_entrypoint.main` in this process with the
  command/environment of the run_task overrides (extract with pg_dump 15, apply pre/post, copy),
  its stdout goes to the task's CloudWatch stream for dagster-aws Pipes;
- DMS task progress: `describe_replication_tasks` (ready, then stopped with a stop reason) and
  `describe_table_statistics` come from botocore's Stubber; `start_replication_task` performs the
  full load with the COPY mover after resolving the task's selection/rename rules and endpoint
  secrets, as DMS would;
- the production secret's history: moto gives every version CreatedDate=now, so
  `list_secret_version_ids` is answered (two pages) by a Stubber; `get_secret_value` is moto.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from restore_assets.jobs.launch import run_schema_restore
from tests import faults
from tests.aws.conftest import HISTORICAL_PASSWORD, PROD_PASSWORD, World

pytestmark = pytest.mark.aws

RID_TAG = "restore-assets:restore-id"


def _run(world: World, request: dict, fail_at: str | None = None, rid: str | None = None, **cfg):
    backend = world.config_file(**cfg)
    hook = faults.fail_at(fail_at) if fail_at else contextlib.nullcontext()
    with world.active(), hook:
        return run_schema_restore(request, backend, compare=False, restore_id=rid)


def _count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]


def _instance_world(world: World) -> datetime:
    world.production_instance()
    world.production_secret()
    point = datetime.now(UTC) + timedelta(milliseconds=1)
    return point


def _assert_restored(world: World, database: str, target: str, acme_target: str | None) -> None:
    dsn = world.pg.prod_dsn(database)
    assert _count(dsn, f"SELECT count(*) FROM {target}.orders") == 120
    assert _count(dsn, "SELECT count(*) FROM customer_a1.orders") == 60  # live one untouched
    assert _count(dsn, f"SELECT count(*) FROM {target}.users WHERE email LIKE 'changed%'") == 0
    assert _count(dsn, f"SELECT octet_length(avatar) FROM {target}.users WHERE id = 7") == 40000
    with psycopg.connect(dsn) as conn:
        cons = {
            r[0]
            for r in conn.execute(
                "SELECT contype FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
                " WHERE n.nspname = %s",
                (target,),
            )
        }
        idx = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = 'orders_user_idx'",
            (target,),
        ).fetchone()[0]
    assert {"p", "f", "u", "c"} <= cons  # post DDL applied
    assert idx == 1
    if acme_target:
        assert _count(dsn, f'SELECT count(*) FROM "{acme_target}".items') == 25
        assert _count(dsn, 'SELECT count(*) FROM "acme_%co".items') == 20


def test_instance_pitr_with_dms(world: World, database: str) -> None:
    """RDS instance, point in time, mover dms: the API parameters that matter and the data."""
    point = _instance_world(world)
    world.queue_secret_history(point)
    out = _run(
        world,
        {
            "database": database,
            "schemas": ["customer_a1", "acme_%co"],
            "restore_time": point.isoformat(),
        },
        rid="r-inst-pitr",
    )
    assert out["status"] == "succeeded", out
    suffix = point.strftime("%Y%m%d%H%M%S")
    target = f"customer_a1_{suffix}"
    _assert_restored(world, database, target, f"acme_%co_{suffix}")
    world.sm_stubber.assert_no_pending_responses()
    world.dms_stubber.assert_no_pending_responses()

    # the temporary instance was created with the configured network, class and tags
    (restore,) = world.calls("restore_db_instance_to_point_in_time")
    assert restore["SourceDBInstanceIdentifier"] == "prod-db"
    assert restore["TargetDBInstanceIdentifier"] == "restore-assets-r-inst-pitr-db"
    assert restore["RestoreTime"] == point
    assert restore["DBInstanceClass"] == "db.r6g.large"
    assert restore["DBSubnetGroupName"] == "restoreassets-restore"
    assert restore["VpcSecurityGroupIds"] == [world.ids["sgs"]["restore-db"]]
    assert restore["PubliclyAccessible"] is False
    assert {"Key": RID_TAG, "Value": "r-inst-pitr"} in restore["Tags"]
    (deleted,) = world.calls("delete_db_instance")
    assert deleted["SkipFinalSnapshot"] is True
    # the replication instance: configured class, subnet group, security group, tag, private
    dms_calls = world.dms_state["calls"]
    (inst,) = [kw for op, kw in dms_calls if op == "create_replication_instance"]
    assert inst["ReplicationInstanceClass"] == "dms.r5.large"
    assert inst["ReplicationSubnetGroupIdentifier"] == "restoreassets-restore-dms"
    assert inst["VpcSecurityGroupIds"] == [world.ids["sgs"]["dms"]]
    assert inst["PubliclyAccessible"] is False
    assert {"Key": RID_TAG, "Value": "r-inst-pitr"} in inst["Tags"]
    endpoints = {kw["EndpointType"]: kw for op, kw in dms_calls if op == "create_endpoint"}
    src, tgt = endpoints["source"]["PostgreSQLSettings"], endpoints["target"]["PostgreSQLSettings"]
    assert src["SecretsManagerSecretId"] == "restore-assets/r-inst-pitr/temp-db"
    assert tgt["SecretsManagerSecretId"] == world.ids["secret_arn"]
    for settings in (src, tgt):
        assert settings["SecretsManagerAccessRoleArn"].endswith(":role/dms-secrets-access")
        assert settings["DatabaseName"] == database
        assert "Password" not in settings
    assert src["FailTasksOnLobTruncation"] is True
    assert tgt["AfterConnectScript"] == "SET session_replication_role = replica"
    tested = [kw["EndpointArn"] for op, kw in dms_calls if op == "test_connection"]
    assert len(tested) == 2
    calls = world.dms_state["created"]
    assert len(calls) == 2
    mappings = {json.loads(c["TableMappings"])["rules"][-1]["value"]: c for c in calls}
    acme = json.loads(mappings[f"acme_%co_{suffix}"]["TableMappings"])
    assert acme["rules"][0]["object-locator"] == {"schema-name": "acme[_][%]co", "table-name": "%"}
    assert acme["rules"][1] == {
        "rule-type": "transformation",
        "rule-id": "2",
        "rule-name": "rename-schema",
        "rule-target": "schema",
        "object-locator": {"schema-name": "acme[_][%]co"},
        "rule-action": "rename",
        "value": f"acme_%co_{suffix}",
    }
    a1 = mappings[target]
    assert json.loads(a1["TableMappings"])["rules"][0]["object-locator"]["schema-name"] == (
        "customer[_]a1"
    )
    # the decoy schema customerxa1 would match an unescaped pattern: DMS selected only ours
    selected = [load["selected"] for load in world.dms_state["loads"]]
    assert all("customerxa1" not in s for s in selected)
    settings = json.loads(a1["ReplicationTaskSettings"])
    assert settings["TargetMetadata"]["LimitedSizeLobMode"] is True
    assert settings["TargetMetadata"]["FullLobMode"] is False
    assert settings["TargetMetadata"]["LobMaxSize"] == 41  # the 40000-byte avatar, in KB, +1
    assert settings["FullLoadSettings"]["TargetTablePrepMode"] == "DO_NOTHING"
    assert settings["ErrorBehavior"]["DataTruncationErrorPolicy"] == "STOP_TASK"
    assert a1["MigrationType"] == "full-load"
    assert {"Key": RID_TAG, "Value": "r-inst-pitr"} in a1["Tags"]

    # ECS: three task runs (extract, apply-pre, apply-post), private, tagged, via Pipes
    modes = [r["command"][0] for r in world.ecs_runs]
    assert modes == ["extract", "apply-pre", "apply-post"]
    for r in world.ecs_runs:
        p = r["params"]
        vpc = p["networkConfiguration"]["awsvpcConfiguration"]
        assert vpc["assignPublicIp"] == "DISABLED"
        assert vpc["subnets"] == world.ids["subnets"]
        assert vpc["securityGroups"] == [world.ids["sgs"]["tools"]]
        assert {"key": RID_TAG, "value": "r-inst-pitr"} in p["tags"]
        assert "DAGSTER_PIPES_CONTEXT" in r["env"]  # launched through PipesECSClient
        assert all(
            PROD_PASSWORD not in v and HISTORICAL_PASSWORD not in v for v in r["env"].values()
        )
        assert r["rc"] == 0

    # audit in DynamoDB: succeeded, resources all deleted except the kept artifacts/schemas
    from restore_assets.backends.aws import services as aws_services

    services = aws_services(world.config())
    rec = services.audit.get("r-inst-pitr")
    assert rec["status"] == "succeeded"
    kinds = {r["kind"] for r in rec["resources"]}
    assert {
        "rds-instance",
        "aws-secret",
        "dms-replication-instance",
        "dms-endpoint",
        "dms-task",
        "ecs-task",
        "restored-schema",
        "artifacts",
    } <= kinds
    text = json.dumps(rec, default=str)
    assert PROD_PASSWORD not in text and HISTORICAL_PASSWORD not in text
    left = world.leftovers()
    assert left["rds_instances"] == [] and left["dms_instances"] == [] and left["secrets"] == []
    assert left["dms_endpoints"] == [] and left["dms_tasks"] == []
    assert any(k.endswith("r-inst-pitr/pre.sql") for k in left["s3_objects"])  # retention keep


def _cluster_world(world: World, serverless: bool = True) -> datetime:
    world.production_cluster(serverless=serverless)
    world.production_secret()
    return datetime.now(UTC) + timedelta(milliseconds=1)


def test_aurora_pitr_with_dms(world: World, database: str) -> None:
    """Aurora serverless v2 cluster, point in time: cluster + db.serverless writer, then DMS."""
    point = _cluster_world(world)
    world.queue_secret_history(point)
    out = _run(
        world,
        {
            "database": database,
            "schemas": ["customer_a1"],
            "restore_time": point.isoformat(),
            "tables": ["orders"],  # + users, which orders references
        },
        rid="r-aurora-pitr",
    )
    assert out["status"] == "succeeded", out
    _assert_restored(world, database, f"customer_a1_{point.strftime('%Y%m%d%H%M%S')}", None)
    (task,) = world.dms_state["created"]
    rules = json.loads(task["TableMappings"])["rules"]
    assert [r["object-locator"]["table-name"] for r in rules[:-1]] == ["orders", "users"]
    (restore,) = world.calls("restore_db_cluster_to_point_in_time")
    assert restore["SourceDBClusterIdentifier"] == "prod-aurora"
    assert restore["DBClusterIdentifier"] == "restore-assets-r-aurora-pitr-cluster"
    assert restore["DBSubnetGroupName"] == "restoreassets-restore"
    assert restore["VpcSecurityGroupIds"] == [world.ids["sgs"]["restore-db"]]
    assert restore["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5, "MaxCapacity": 4}
    assert restore["RestoreToTime"] == point
    assert {"Key": RID_TAG, "Value": "r-aurora-pitr"} in restore["Tags"]
    (writer,) = world.calls("create_db_instance")
    assert writer["DBInstanceClass"] == "db.serverless"
    assert writer["DBClusterIdentifier"] == "restore-assets-r-aurora-pitr-cluster"
    assert writer["PubliclyAccessible"] is False
    assert {"Key": RID_TAG, "Value": "r-aurora-pitr"} in writer["Tags"]
    assert [c["DBClusterIdentifier"] for c in world.calls("delete_db_cluster")] == [
        "restore-assets-r-aurora-pitr-cluster"
    ]
    assert world.calls("delete_db_cluster")[0]["SkipFinalSnapshot"] is True
    assert world.leftovers()["rds_instances"] == []
    assert world.leftovers()["rds_clusters"] == []


def test_aurora_snapshot_with_copy_mover(world: World, database: str) -> None:
    """Aurora provisioned cluster from a cluster snapshot; mover copy runs inside the ECS task."""
    world.production_cluster(serverless=False)
    world.production_secret()
    world.rds.create_db_cluster_snapshot(
        DBClusterIdentifier="prod-aurora", DBClusterSnapshotIdentifier="before-incident"
    )
    snap = world.rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="before-incident")
    point = snap["DBClusterSnapshots"][0]["SnapshotCreateTime"].astimezone(UTC)
    world.queue_secret_history(point)
    out = _run(
        world,
        {"database": database, "schemas": ["customer_a1"], "snapshot_id": "before-incident"},
        rid="r-aurora-snap",
        mover="copy",
    )
    assert out["status"] == "succeeded", out
    _assert_restored(world, database, f"customer_a1_{point.strftime('%Y%m%d%H%M%S')}", None)
    (restore,) = world.calls("restore_db_cluster_from_snapshot")
    assert restore["SnapshotIdentifier"] == "before-incident"
    assert restore["Engine"] == "aurora-postgresql"
    assert "ServerlessV2ScalingConfiguration" not in restore
    (writer,) = world.calls("create_db_instance")
    assert writer["DBInstanceClass"] == "db.r6g.large"  # the configured class
    assert [r["command"][0] for r in world.ecs_runs] == [
        "extract",
        "apply-pre",
        "copy",
        "apply-post",
    ]
    left = world.leftovers()
    assert left["dms_instances"] == [] and left["rds_clusters"] == [] and left["secrets"] == []


def test_instance_snapshot_with_copy_mover(world: World, database: str) -> None:
    """RDS instance from a manual DB snapshot (its OriginalSnapshotCreateTime picks the secret)."""
    world.production_instance()
    world.production_secret()
    world.rds.create_db_snapshot(DBInstanceIdentifier="prod-db", DBSnapshotIdentifier="nightly")
    snap = world.rds.describe_db_snapshots(DBSnapshotIdentifier="nightly")["DBSnapshots"][0]
    point = snap["OriginalSnapshotCreateTime"].astimezone(UTC)
    world.queue_secret_history(point)
    out = _run(
        world,
        {"database": database, "schemas": ["acme_%co"], "snapshot_id": "nightly"},
        rid="r-inst-snap",
        mover="copy",
        artifact_retention="delete",
    )
    assert out["status"] == "succeeded", out
    suffix = point.strftime("%Y%m%d%H%M%S")
    dsn = world.pg.prod_dsn(database)
    assert _count(dsn, f'SELECT count(*) FROM "acme_%co_{suffix}".items') == 25
    (restore,) = world.calls("restore_db_instance_from_db_snapshot")
    assert restore["DBSnapshotIdentifier"] == "nightly"
    assert restore["DBInstanceClass"] == "db.r6g.large"
    assert restore["PubliclyAccessible"] is False
    assert restore["DBSubnetGroupName"] == "restoreassets-restore"
    assert {"Key": RID_TAG, "Value": "r-inst-snap"} in restore["Tags"]
    assert world.leftovers() == {k: [] for k in world.leftovers()}
