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

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from restore_assets.runner import run_schema_restore
from tests.aws.conftest import HISTORICAL_PASSWORD, PROD_PASSWORD, World

pytestmark = pytest.mark.aws

RID_TAG = "restore-assets:restore-id"


def _run(world: World, request: dict, fail_at: str | None = None, rid: str | None = None, **cfg):
    backend = world.config_file(**cfg)
    with world.active():
        return run_schema_restore(
            request, backend, compare=False, restore_id=rid, fail_at_phase=fail_at
        )


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
    from restore_assets.backends.aws import aws_services

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
