"""Pieces of the AWS backend under moto: cleanup after a crash, idempotent deletes, secret history,
audit log, artifacts, plan and cost, configuration, DMS mappings, the ECS launcher, the task
entry point and the Dagster resources.

Stubbed with botocore's Stubber (moto cannot produce them): `list_secret_version_ids` with real
CreatedDate values and pagination; ECS `describe_tasks` for a task that never stops, a task that
failed to start and a container that exited 1.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import psycopg
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from restore_assets.backends.aws import services as aws_services
from restore_assets.backends.aws.artifacts import S3Artifacts
from restore_assets.backends.aws.audit import DynamoAuditLog
from restore_assets.backends.aws.config import AwsConfig, waiter_config
from restore_assets.backends.aws.dms import escape_name, table_mappings, task_settings
from restore_assets.backends.aws.ecs import EcsTaskLauncher, TaskFailed
from restore_assets.backends.aws.secrets import Credentials, SecretStore, redact
from restore_assets.core.errors import InvalidRequest, RestoreError
from restore_assets.core.schema_restore import cleanup, phases
from restore_assets.core.schema_restore.services import Services
from tests.aws.conftest import (
    HISTORICAL_PASSWORD,
    PROD_PASSWORD,
    V_CURRENT,
    V_HISTORICAL,
    World,
)
from tests.owners import dead_owner

pytestmark = pytest.mark.aws


def _services(world: World, **cfg: Any) -> Services:
    return aws_services(world.config(**cfg))


# ------------------------------------------------------------------------------ cleanup
def test_cleanup_job_after_a_crash_removes_everything(world: World, database: str) -> None:
    """A run dies after the pre DDL (no cleanup op ran): the cleanup job removes every resource."""
    import dagster as dg  # noqa: F401 - the cleanup job is a Dagster job

    from restore_assets.jobs.resources import RestoreBackend
    from restore_assets.jobs.schema_restore import cleanup

    world.pipes = False
    world.production_instance()
    world.production_secret()
    point = datetime.now(UTC) + timedelta(milliseconds=1)
    world.queue_secret_history(point)
    backend = world.config_file(artifact_retention="delete")
    request = {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()}
    with world.active():
        services = aws_services(backend)
        rid, plan = phases.validate(services, request, "r-crashed", owner=dead_owner())
        temp = phases.provision(services, rid, plan)
        ddl = phases.extract_ddl(services, rid, plan, temp)
        phases.apply_pre(services, rid, plan, ddl["bundle"])
        # -- the process dies here --
        assert world.leftovers()["rds_instances"] == ["restore-assets-r-crashed-db"]
        assert world.restored_schemas(database)
        result = cleanup.execute_in_process(
            run_config={"ops": {"cleanup_restore": {"config": {"restore_id": rid}}}},
            resources={
                "backend": RestoreBackend(backend="aws", config_file=backend["config_file"])
            },
        )
        assert result.success
        assert world.leftovers() == {k: [] for k in world.leftovers()}
        assert world.restored_schemas(database) == []
        rec = aws_services(backend).audit.get(rid)
        assert rec["status"] == "failed" and "crashed" in rec["cause"]
        # running it again is harmless
        again = cleanup.execute_in_process(
            run_config={"ops": {"cleanup_restore": {"config": {"restore_id": rid}}}},
            resources={
                "backend": RestoreBackend(backend="aws", config_file=backend["config_file"])
            },
        )
        assert again.success


def test_delete_resource_is_idempotent_for_every_kind(world: World) -> None:
    """Deleting what never existed or is already gone is success, for every recorded kind."""
    world.production_instance()
    world.production_secret()
    ecs = boto3.client("ecs", region_name="us-east-1")
    task = ecs.run_task(
        cluster=world.ids["ecs_cluster"],
        taskDefinition=world.ids["task_definition"],
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": world.ids["subnets"],
                "securityGroups": [world.ids["sgs"]["tools"]],
            }
        },
        tags=[{"key": "restore-assets:restore-id", "value": "gone"}],
    )["tasks"][0]["taskArn"]
    with world.active():
        fleet = _services(world).fleet
        for kind, ident in (
            ("rds-instance", "restore-assets-gone-db"),
            ("rds-cluster", "restore-assets-gone-cluster"),
            ("aws-secret", "restore-assets/gone/temp-db"),
            ("dms-task", "restore-assets-gone-t-1"),
            ("dms-endpoint", "restore-assets-gone-src"),
            ("dms-replication-instance", "restore-assets-gone-dms"),
            ("ecs-task", task),
        ):
            details = {"cluster": world.ids["ecs_cluster"], "restore_id": "gone"}
            fleet.delete_resource(kind, ident, details)
            fleet.delete_resource(kind, ident, details)
        with pytest.raises(RestoreError, match="cannot delete a resource of kind"):
            fleet.delete_resource("mystery", "x", {})


def test_one_failing_delete_does_not_stop_the_others(world: World, database: str) -> None:
    """RDS refuses to delete the instance: the secret and DMS instance are still deleted."""
    world.pipes = False
    world.production_instance()
    world.production_secret()
    point = datetime.now(UTC) + timedelta(milliseconds=1)
    world.queue_secret_history(point)
    request = {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()}
    with world.active():
        services = _services(world)
        rid, plan = phases.validate(services, request, "r-partial", owner=dead_owner())
        phases.provision(services, rid, plan)
        world.rds_fail["delete_db_instance"] = ClientError(
            {"Error": {"Code": "InvalidDBInstanceState", "Message": "busy"}}, "DeleteDBInstance"
        )
        out = cleanup.cleanup(services, rid, failed=True)
        assert [e.split(":")[0] for e in out["errors"]] == ["rds-instance"]
        left = world.leftovers()
        assert left["secrets"] == [] and left["dms_instances"] == []
        assert left["rds_instances"] == ["restore-assets-r-partial-db"]
        del world.rds_fail["delete_db_instance"]
        assert cleanup.cleanup_restore(services, rid)["errors"] == []
        assert world.leftovers()["rds_instances"] == []


# ------------------------------------------------------------------------------ secrets
def _history_store(world: World, pages: list[list[dict]]) -> tuple[SecretStore, Stubber]:
    from tests.aws.doubles import RoutedClient

    arn = world.ids["secret_arn"]
    expected = {"SecretId": arn, "IncludeDeprecated": True, "MaxResults": 100}
    for i, versions in enumerate(pages):
        resp: dict[str, Any] = {"ARN": arn, "Name": "prod/db/master", "Versions": versions}
        if i + 1 < len(pages):
            resp["NextToken"] = f"p{i + 1}"
        world.sm_stubber.add_response(
            "list_secret_version_ids", resp, {**expected, **({"NextToken": f"p{i}"} if i else {})}
        )
    client = RoutedClient(world.sm, world.sm_stub, {"list_secret_version_ids"})
    return SecretStore(client), world.sm_stubber


def test_secret_version_current_at_the_restore_point(world: World) -> None:
    """Newest version created at or before the point, across pages; pending-only ones ignored."""
    world.production_instance()
    arn = world.production_secret()
    t = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    store, stubber = _history_store(
        world,
        [
            [
                {
                    "VersionId": V_CURRENT,
                    "VersionStages": ["AWSCURRENT"],
                    "CreatedDate": t + timedelta(days=1),
                }
            ],
            [
                {
                    "VersionId": "44444444-4444-4444-4444-444444444444",
                    "VersionStages": ["AWSPENDING"],
                    "CreatedDate": t - timedelta(minutes=1),
                }
            ],
            [
                {
                    "VersionId": V_HISTORICAL,  # deprecated: no stage left
                    "CreatedDate": t - timedelta(days=20),
                }
            ],
        ],
    )
    creds, choice = store.at(arn, t)
    stubber.assert_no_pending_responses()
    assert choice.version_id == V_HISTORICAL and not choice.fallback
    assert creds.password == HISTORICAL_PASSWORD


def test_secret_history_not_reaching_back_falls_back_with_a_warning(world: World) -> None:
    """Every version is newer than the point: the current one, and a clear warning."""
    world.production_instance()
    arn = world.production_secret()
    t = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    warnings: list[str] = []
    store, _ = _history_store(
        world,
        [
            [
                {
                    "VersionId": V_CURRENT,
                    "VersionStages": ["AWSCURRENT"],
                    "CreatedDate": t + timedelta(hours=2),
                }
            ]
        ],
    )
    store.warn = warnings.append
    creds, choice = store.at(arn, t)
    assert choice.fallback and creds.password == PROD_PASSWORD
    assert len(warnings) == 1 and "does not reach back" in warnings[0]
    assert PROD_PASSWORD not in warnings[0]


def test_secrets_never_show_in_repr_dsn_errors_or_redacted_text() -> None:
    """repr() masks the password; redact() scrubs any value read; a bad secret says why, not what."""
    creds = Credentials.from_secret_string(
        json.dumps({"username": "app", "password": "s3cr3t-Value!", "host": "h", "port": 5432})
    )
    assert "s3cr3t" not in repr(creds)
    dsn = creds.dsn("127.0.0.1", 1, "db")
    assert redact(f"failed to connect with {dsn}").count("s3cr3t-Value!") == 0
    with pytest.raises(RestoreError) as err:
        Credentials.from_secret_string("not json s3cr3t-Value!")
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(psycopg.OperationalError) as err2:
        psycopg.connect(dsn, connect_timeout=2)
    assert "s3cr3t" not in str(err2.value)


# ------------------------------------------------------------------------------ audit, artifacts
def test_dynamo_audit_log_keeps_the_protocol(world: World) -> None:
    """Unique ids (conditional put), newest-first resources, phases, close, history, redaction."""
    audit = DynamoAuditLog(boto3.client("dynamodb", region_name="us-east-1"), "restore-audit")
    rid = audit.open("schema_restore", {"database": "d", "schemas": ["s"]}, "r-audit")
    with pytest.raises(ValueError, match="already exists"):
        audit.open("schema_restore", {}, "r-audit")
    audit.resource(rid, "rds-instance", "a", {"x": 1})
    audit.resource(rid, "aws-secret", "b", {})
    audit.resource(rid, "dms-task", "c", {})
    assert [r["identifier"] for r in audit.resources(rid)] == ["c", "b", "a"]
    audit.resource_deleted(rid, "aws-secret", "b")
    assert [r["identifier"] for r in audit.resources(rid)] == ["c", "a"]
    Credentials.from_secret_string(json.dumps({"username": "u", "password": "pw-in-cause-123"}))
    audit.phase(
        rid, "pre", "failed", started_at="2026-01-01T00:00:00+00:00", error="x pw-in-cause-123"
    )
    audit.update(rid, restore_point="2026-01-01T00:00:00+00:00", result={"ok": 1})
    audit.close(rid, "failed", "boom pw-in-cause-123")
    rec = audit.get(rid)
    assert rec["status"] == "failed" and rec["result"] == {"ok": 1}
    assert rec["phases"][0]["error"] == "x ***" and rec["cause"] == "boom ***"
    assert rec["inputs"]["schemas"] == ["s"] and len(rec["resources"]) == 3
    assert audit.history()[0]["restore_id"] == rid
    rej = audit.reject("schema_restore", {"database": "d"}, "bad input", "r-rejected")
    assert audit.get(rej)["status"] == "rejected"
    with pytest.raises(KeyError):
        audit.get("r-missing")


def test_dynamo_audit_never_overwrites_and_holds_claims(world: World) -> None:
    """Refusals, opens and closes are conditional; owners recorded; claims held until close."""
    from restore_assets.core.audit import AuditConflict, ClaimConflict, process_owner
    from restore_assets.core.errors import InvalidRequest

    audit = DynamoAuditLog(boto3.client("dynamodb", region_name="us-east-1"), "restore-audit")
    audit.open("schema_restore", {"database": "d"}, "r-own", process_owner("run-1"), ["d.s_x"])
    assert audit.get("r-own")["owner"]["dagster_run_id"] == "run-1"
    with pytest.raises(ClaimConflict, match="being restored by restore r-own"):
        audit.open("schema_restore", {}, "r-lose", claims=["d.s_x"])
    with pytest.raises(KeyError):
        audit.get("r-lose")  # nothing of the loser was written
    with pytest.raises(InvalidRequest):
        audit.open("schema_restore", {}, "../x")
    other = audit.reject("schema_restore", {"database": "d"}, "again", "r-own")
    assert other != "r-own" and audit.get("r-own")["status"] == "running"
    assert audit.get(other)["inputs"]["requested_restore_id"] == "r-own"
    audit.close("r-own", "succeeded")
    assert audit.claims("r-own") == []
    with pytest.raises(AuditConflict, match="already succeeded"):
        audit.close("r-own", "failed", "late cleanup")
    assert audit.get("r-own")["status"] == "succeeded"
    with pytest.raises(ValueError):
        audit.update("r-own", status="failed")
    audit.open("schema_restore", {}, "r-next", claims=["d.s_x"])  # the claim was released
    assert {r["restore_id"] for r in audit.history()} == {"r-own", "r-next", other}


def test_s3_artifacts_are_encrypted_and_purged(world: World) -> None:
    """SSE on every object, under <prefix><restore_id>/; purge removes them; names cannot escape."""
    s3 = boto3.client("s3", region_name="us-east-1")
    arts = S3Artifacts(s3, "restore-artifacts", "restores/", "AES256")
    uri = arts.put("r-1", "pre.sql", "CREATE SCHEMA x;")
    assert uri == "s3://restore-artifacts/restores/r-1/pre.sql"
    head = s3.head_object(Bucket="restore-artifacts", Key="restores/r-1/pre.sql")
    assert head["ServerSideEncryption"] == "AES256"
    kms = S3Artifacts(s3, "restore-artifacts", "restores/", "aws:kms", "alias/restore")
    kms.put("r-1", "ddl/bundle.json", "{}")
    assert arts.get("r-1", "ddl/bundle.json") == b"{}"
    assert sorted(arts.list("r-1")) == ["ddl/bundle.json", "pre.sql"]
    for bad in ("../r-2/x", "/abs", "a//b", ""):
        with pytest.raises(RestoreError):
            arts.put("r-1", bad, "x")
    arts.purge("r-1")
    arts.purge("r-1")
    assert arts.list("r-1") == []
    with pytest.raises(RestoreError, match="not found"):
        arts.get("r-1", "pre.sql")


# ------------------------------------------------------------------------------ plan and cost
def test_plan_lists_resources_and_cost_without_a_mutating_call(
    world: World, database: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """`restore-assets restore --backend aws --config backend.yaml --plan` creates nothing."""
    import yaml

    from restore_assets.cli.main import main

    world.production_cluster()
    world.production_secret()
    world.stub_secret_history = True  # nothing queued: the plan must not read the history
    path = tmp_path / "backend.yaml"
    path.write_text(yaml.safe_dump(world.config()))
    now = datetime.now(UTC).isoformat()
    with world.active():
        rc = main(
            ["restore", "--backend", "aws", "--config", str(path), "--database", database,
             "--schema", "customer_a1", "--restore-time", now, "--plan", "--json"]
        )  # fmt: skip
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    kinds = [r["kind"] for r in out["would_create"]]
    assert kinds[:2] == ["rds-cluster", "rds-instance"]
    assert {"aws-secret", "dms-replication-instance", "dms-task", "ecs-task", "estimate"} <= set(
        kinds
    )
    writer = out["would_create"][1]
    assert writer["class"] == "db.serverless"
    estimate = out["would_create"][-1]
    assert estimate["cost_usd"] > 0 and estimate["minutes"] > 0
    assert estimate["replication_instance_hours"] > 0 and estimate["unpriced"] == []
    assert world.rds_calls and all(op.startswith("describe") for op, _ in world.rds_calls)
    assert world.leftovers() == {k: [] for k in world.leftovers()}
    assert "calls" not in world.dms_state


# ------------------------------------------------------------------------------ configuration
def test_configuration_is_validated_with_clear_messages() -> None:
    """Missing keys are named; choices are checked; waiters get explicit limits."""
    with pytest.raises(InvalidRequest, match="needs an 'aws:' mapping"):
        AwsConfig.from_mapping({"backend": "aws"})
    with pytest.raises(InvalidRequest, match="missing .*secret_arn.*dms_secrets_role_arn"):
        AwsConfig.from_mapping({"aws": {"source_identifier": "x"}})
    base = {
        "source_identifier": "db",
        "secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:x",
        "restore_subnet_group": "g",
        "restore_security_group_ids": "sg-1",
        "ecs_cluster": "c",
        "ecs_task_definition": "t",
        "ecs_subnets": ["s"],
        "ecs_security_group_ids": ["sg-2"],
        "artifact_bucket": "b",
        "audit_table": "a",
        "mover": "copy",
    }
    cfg = AwsConfig.from_mapping({"aws": base})
    assert cfg.restore_security_group_ids == ("sg-1",) and cfg.dms_subnet_group is None
    with pytest.raises(InvalidRequest, match="aws.mover='rsync'"):
        AwsConfig.from_mapping({"aws": {**base, "mover": "rsync"}})
    assert waiter_config(3600, 30) == {"Delay": 30, "MaxAttempts": 120}
    assert waiter_config(5, 30) == {"Delay": 5, "MaxAttempts": 1}
    assert cfg.temp_identifier("r-20260101T000000Z-abc123", "db") == (
        "restore-assets-r-20260101t000000z-abc123-db"
    )
    assert len(cfg.temp_identifier("dg-" + "x" * 80, "cluster")) <= 63


def test_dms_mappings_escape_wildcards_and_settings_never_truncate() -> None:
    """`_`, `%` and `[` are literal in DMS patterns only inside brackets."""
    assert escape_name("a_b%c[d") == "a[_]b[%]c[[]d"
    m = table_mappings("t_1", "t_1_20260101000000", ["order_items", "users"])
    assert [r["object-locator"]["table-name"] for r in m["rules"][:2]] == ["order[_]items", "users"]
    assert m["rules"][2]["value"] == "t_1_20260101000000"
    full = task_settings({"FullLobMode": True, "LobMaxSize": 0})
    assert (
        full["TargetMetadata"]["FullLobMode"] and not full["TargetMetadata"]["LimitedSizeLobMode"]
    )


# ------------------------------------------------------------------------------ ECS launcher
def _ecs_cfg(world: World, timeout: float = 1) -> AwsConfig:
    return AwsConfig.from_mapping(world.config(waiter_timeout_s=timeout, waiter_delay_s=1))


def test_ecs_launcher_stops_a_task_that_outlives_its_time_limit(world: World) -> None:
    """describe_tasks keeps answering RUNNING (Stubber): the waiter gives up, the task is stopped."""
    world.production_instance()
    world.production_secret()
    ecs = boto3.client("ecs", region_name="us-east-1")
    stubber = Stubber(ecs)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/restore-tools/abc"
    cfg = _ecs_cfg(world)
    stubber.add_response(
        "describe_tasks", {"tasks": [{"taskArn": arn, "lastStatus": "RUNNING"}]},
        {"cluster": cfg.ecs_cluster, "tasks": [arn]},
    )  # fmt: skip
    stubber.add_response("stop_task", {"task": {"taskArn": arn}}, None)
    with stubber, pytest.raises(TaskFailed, match="did not finish within 1s"):
        EcsTaskLauncher(cfg, ecs).wait(arn, 1)
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            {"stopCode": "TaskFailedToStart", "stoppedReason": "CannotPullContainerError"},
            "failed to start",
        ),
        (
            {"containers": [{"name": "restore-tools", "exitCode": 1, "reason": "boom"}]},
            "exited with code 1",
        ),
    ],
)
def test_ecs_launcher_fails_on_start_failure_and_exit_code(
    world: World, task: dict, message: str
) -> None:
    """A stopped task is checked: failed to start, or a non-zero exit code, is a TaskFailed."""
    world.production_instance()
    world.production_secret()
    ecs = boto3.client("ecs", region_name="us-east-1")
    stubber = Stubber(ecs)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/restore-tools/abc"
    cfg = _ecs_cfg(world, 60)
    body = {"tasks": [{"taskArn": arn, "lastStatus": "STOPPED", **task}]}
    stubber.add_response("describe_tasks", body, None)
    stubber.add_response("describe_tasks", body, None)
    with stubber, pytest.raises(TaskFailed, match=message):
        EcsTaskLauncher(cfg, ecs).wait(arn, 60)


# ------------------------------------------------------------------------------ task entry point
def test_task_entrypoint_extract_against_postgres(world: World, database: str) -> None:
    """main() as the container runs it: reads the temporary secret, pg_dump, artifacts with SSE."""
    from restore_assets.backends.aws import task_entrypoint
    from restore_assets.backends.aws.tools_task import task_environment

    world.production_instance()
    world.production_secret()
    cfg = AwsConfig.from_mapping(world.config())
    store = SecretStore(world.sm)
    creds = Credentials.from_secret_string(
        json.dumps({"username": "postgres", "password": HISTORICAL_PASSWORD})
    )
    store.create_temp(
        "r-task", creds, "restore-assets-r-task-db.x.rds.amazonaws.com", 5432, lambda *a: None
    )
    arts = S3Artifacts(boto3.client("s3", region_name="us-east-1"), "restore-artifacts")
    arts.put("r-task", "tasks/x.spec.json", json.dumps(
        {"database": database, "schemas": ["customer_a1"], "suffix": "20260101000000"}
    ))  # fmt: skip
    env = task_environment(cfg, "r-task")
    argv = [
        "extract",
        "--restore-id",
        "r-task",
        "--spec",
        "tasks/x.spec.json",
        "--result",
        "tasks/x.result.json",
    ]
    assert task_entrypoint.main(argv, environ=env, resolve=world.resolve) == 0
    result = json.loads(arts.get("r-task", "tasks/x.result.json"))
    assert result["ok"] and result["pre_statements"] > 0
    assert b"customer_a1_20260101000000" in arts.get("r-task", "pre.sql")
    head = boto3.client("s3").head_object(
        Bucket="restore-artifacts", Key="restores/r-task/full.sql"
    )
    assert head["ServerSideEncryption"] == "AES256"
    # a failure is reported in the result, redacted, exit code 1
    arts.put("r-task", "tasks/y.spec.json", json.dumps(
        {"database": "no_such_db", "schemas": ["customer_a1"], "suffix": "x"}
    ))  # fmt: skip
    argv = [
        "extract",
        "--restore-id",
        "r-task",
        "--spec",
        "tasks/y.spec.json",
        "--result",
        "tasks/y.result.json",
    ]
    assert task_entrypoint.main(argv, environ=env, resolve=world.resolve) == 1
    failed = json.loads(arts.get("r-task", "tasks/y.result.json"))
    assert not failed["ok"] and "no_such_db" in failed["error"]
    assert HISTORICAL_PASSWORD not in failed["error"]
    assert task_entrypoint.main(["bogus"], environ=env) == 2


# ------------------------------------------------------------------------------ Dagster resources
def test_dagster_resources_build_boto3_clients(world: World) -> None:
    """One ConfigurableResource per service on dagster-aws's boto3 configuration."""
    from restore_assets.jobs.aws_resources import aws_resources, clients_from_resources

    world.production_instance()
    world.production_secret()
    res = aws_resources(world.config())
    assert sorted(res) == [
        "aws_dms", "aws_dynamodb", "aws_ecs", "aws_rds", "aws_s3", "aws_secretsmanager",
    ]  # fmt: skip
    assert res["aws_rds"].region_name == "us-east-1"
    clients = clients_from_resources(res)
    assert (
        clients.rds.describe_db_instances()["DBInstances"][0]["DBInstanceIdentifier"] == "prod-db"
    )
    assert clients.s3.list_buckets()["Buckets"][0]["Name"] == "restore-artifacts"


# ------------------------------------------------------------------------------ aws CLI
def test_aws_check_and_leftovers_commands(
    world: World, database: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """`restore-assets aws check` passes on a complete setup; `aws leftovers` finds a crash's objects."""
    import yaml

    from restore_assets.cli import aws as cli_aws

    world.pipes = False
    world.production_instance()
    world.production_secret()
    path = tmp_path / "backend.yaml"
    path.write_text(yaml.safe_dump(world.config()))
    with world.active():
        assert cli_aws.main(["check", "--config", str(path)]) == 0
        out = capsys.readouterr().out
        assert out.count("ok  ") == 7 and "rds-instance 15.5" in out
        assert cli_aws.main(["leftovers", "--config", str(path)]) == 0
        point = datetime.now(UTC) + timedelta(milliseconds=1)
        world.queue_secret_history(point)
        services = _services(world)
        request = {
            "database": database,
            "schemas": ["customer_a1"],
            "restore_time": point.isoformat(),
        }
        rid, plan = phases.validate(services, request, "r-left", owner=dead_owner())
        phases.provision(services, rid, plan)
        capsys.readouterr()
        assert cli_aws.main(["leftovers", "--config", str(path), "--json"]) == 1
        found = json.loads(capsys.readouterr().out)
        assert sorted(i["kind"] for i in found["r-left"]) == [
            "aws-secret", "dms-replication-instance", "rds-instance",
        ]  # fmt: skip
        cleanup.cleanup_restore(services, rid)
        assert cli_aws.main(["leftovers", "--config", str(path)]) == 0
        world.session.client("s3").delete_bucket(Bucket="restore-artifacts")
        assert cli_aws.main(["check", "--config", str(path)]) == 1
        assert "FAIL artifact bucket" in capsys.readouterr().out


# ------------------------------------------------------------------------------ the image
def test_task_entrypoint_runs_without_dagster_installed() -> None:
    """The image installs the package without Dagster: the entry point must not import it."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "for name in ('dagster', 'dagster_aws', 'papermill', 'matplotlib'):\n"
        "    sys.modules[name] = None  # ImportError on any import of them\n"
        "import restore_assets.core.ddl, restore_assets.core.mover\n"
        "from restore_assets.backends.aws import task_entrypoint\n"
        "sys.exit(task_entrypoint.main(['--help']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "{extract,apply-pre,apply-post,copy}" in proc.stdout
    dockerfile = (Path(__file__).parents[2] / "docker" / "Dockerfile").read_text()
    assert "postgresql-client-${PG_MAJOR}" in dockerfile and "ARG PG_MAJOR=15" in dockerfile
    assert '"restore_assets.backends.aws.task_entrypoint"' in dockerfile


def test_automated_snapshot_of_the_right_kind_is_accepted(world: World) -> None:
    """`rds:` automated snapshots are fine; the point is their OriginalSnapshotCreateTime."""
    from restore_assets.backends.protocols import RestoreTarget

    world.production_instance()
    world.production_secret()
    snaps = world.rds.describe_db_snapshots(
        DBInstanceIdentifier="prod-db", SnapshotType="automated"
    )
    auto = snaps["DBSnapshots"][0]
    assert auto["DBSnapshotIdentifier"].startswith("rds:")
    with world.active():
        fleet = _services(world).fleet
        point = fleet.check_target(RestoreTarget(snapshot_id=auto["DBSnapshotIdentifier"]))
        assert point == auto["OriginalSnapshotCreateTime"].astimezone(UTC)
        source = fleet.describe()
        assert source.topology == "rds-instance"
        assert source.snapshots[0].kind == "db-snapshot:automated"
        assert source.window.earliest == auto["SnapshotCreateTime"].astimezone(UTC)
