"""AWS deletes are tag-checked, and identifiers are checked free before anything is created.

A resource the tool would delete must carry `restore-assets:restore-id=<this id>`: one of the
same name created by someone else (another tag, or none) is kept and reported. Names are derived
from the restore id (lower-cased, punctuation folded), so two ids can map to one name; a name
already taken is refused before any create call. All on moto.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from restore_assets.backends.aws.config import RESTORE_ID_TAG, AwsConfig, temp_secret_name
from restore_assets.backends.aws.ownership import NotOwned
from restore_assets.backends.factory import build_services
from restore_assets.core.schema_restore import cleanup
from restore_assets.jobs.launch import run_schema_restore
from tests.aws.conftest import World
from tests.aws.doubles import moto_instance

pytestmark = pytest.mark.aws

MUTATING = (
    "restore_db_instance_to_point_in_time",
    "restore_db_instance_from_db_snapshot",
    "restore_db_cluster_to_point_in_time",
    "restore_db_cluster_from_snapshot",
    "create_db_instance",
)
OTHER = "someone-else"


def _tags(value: str, style: str = "Key") -> list[dict[str, str]]:
    if style == "key":
        return [{"key": RESTORE_ID_TAG, "value": value}]
    return [{"Key": RESTORE_ID_TAG, "Value": value}]


def _instance(world: World, ident: str, tags: list[dict[str, str]]) -> None:
    moto_instance(world.rds, ident, tags)


def _exists(world: World, ident: str) -> bool:
    found = world.rds.describe_db_instances(
        Filters=[{"Name": "db-instance-id", "Values": [ident]}]
    )["DBInstances"]
    return bool(found)


def _setup(world: World) -> datetime:
    world.pipes = False
    world.production_instance()
    world.production_secret()
    point = datetime.now(UTC) + timedelta(milliseconds=1)
    world.queue_secret_history(point)
    return point


def test_taken_identifier_is_refused_before_create(world: World, database: str) -> None:
    """The temporary instance's name is held by a server of another restore: nothing is created,
    the run says so, and that server is still there afterwards."""
    point = _setup(world)
    rid = "r-taken-1"
    backend = world.config_file(artifact_retention="delete")
    cfg = AwsConfig.from_mapping(world.config())
    taken = cfg.temp_identifier(rid, "db")
    _instance(world, taken, _tags(OTHER))
    request = {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()}
    with world.active():
        out = run_schema_restore(request, backend, compare=False, restore_id=rid)
    assert out["status"] in ("failed", "rejected"), out
    assert f"RDS instance {taken} already exists" in out["cause"], out["cause"]
    assert OTHER in out["cause"]
    assert not any(world.calls(op) for op in MUTATING)
    assert not [op for op, _ in world.dms_state.get("calls", []) if op.startswith("create")]
    assert world.ecs_runs == []
    assert _exists(world, taken)
    left = world.leftovers()
    assert left["rds_instances"] == [taken]
    assert {k: v for k, v in left.items() if k != "rds_instances"} == {
        k: [] for k in left if k != "rds_instances"
    }


def test_taken_secret_name_is_refused_and_not_overwritten(world: World, database: str) -> None:
    """A secret of the temporary secret's name without the tag: refused before any create, and
    its value is unchanged (it used to be overwritten)."""
    point = _setup(world)
    rid = "r-taken-2"
    name = temp_secret_name(rid)
    world.sm.create_secret(Name=name, SecretString='{"keep": "me"}')
    request = {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()}
    with world.active():
        out = run_schema_restore(
            request, world.config_file(artifact_retention="delete"), compare=False, restore_id=rid
        )
    assert out["status"] in ("failed", "rejected"), out
    assert f"secret {name} already exists (no restore-assets tag)" in out["cause"], out["cause"]
    assert not any(world.calls(op) for op in MUTATING)
    assert world.sm.get_secret_value(SecretId=name)["SecretString"] == '{"keep": "me"}'


def _foreign_world(world: World, rid: str) -> dict[str, Any]:
    """Resources under the names restore `rid` uses, created by someone else (another tag or
    none), plus one of each kind kept for the positive control that really is `rid`'s."""
    cfg = AwsConfig.from_mapping(world.config())
    names: dict[str, Any] = {}
    names["instance"] = cfg.temp_identifier(rid, "db")
    _instance(world, names["instance"], _tags(OTHER))
    names["owned_instance"] = cfg.temp_identifier(rid, "writer")
    _instance(world, names["owned_instance"], _tags(rid))
    names["cluster"] = cfg.temp_identifier(rid, "cluster")
    world.rds.create_db_cluster(
        DBClusterIdentifier=names["cluster"],
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword="not-used-here",
        Tags=_tags(OTHER),
    )
    names["secret"] = temp_secret_name(rid)
    world.sm.create_secret(Name=names["secret"], SecretString="{}")  # no tag at all
    dms = world.session.client("dms")
    names["endpoint"] = cfg.temp_identifier(rid, "src")
    dms.create_endpoint(
        EndpointIdentifier=names["endpoint"],
        EndpointType="source",
        EngineName="postgres",
        Tags=_tags(OTHER),
    )
    names["dms_instance"] = cfg.temp_identifier(rid, "dms")
    dms.create_replication_instance(
        ReplicationInstanceIdentifier=names["dms_instance"],
        ReplicationInstanceClass="dms.t3.micro",
        Tags=_tags(OTHER),
    )
    ecs = world.session.client("ecs")
    task = ecs.run_task(
        cluster=world.ids["ecs_cluster"],
        taskDefinition=world.ids["task_definition"],
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": world.ids["subnets"],
                "securityGroups": [world.ids["sgs"]["tools"]],
                "assignPublicIp": "DISABLED",
            }
        },
        tags=_tags(OTHER, "key"),
    )["tasks"][0]
    names["task"] = task["taskArn"]
    s3 = world.session.client("s3")
    names["object"] = f"restores/{rid}/someone-elses.txt"
    s3.put_object(Bucket="restore-artifacts", Key=names["object"], Body=b"not yours")
    return names


def test_delete_resource_refuses_each_kind_without_the_tag(world: World) -> None:
    """Every kind the AWS fleet deletes: a mismatching or missing tag raises NotOwned and the
    resource stays; the instance that does carry the tag is deleted."""
    world.production_instance()
    world.production_secret()
    rid = "r-collide-1"
    names = _foreign_world(world, rid)
    owner = {"restore_id": rid}
    with world.active():
        services = build_services(world.config_file())
        fleet = services.fleet
        refused = [
            ("rds-instance", names["instance"], owner),
            ("rds-cluster", names["cluster"], owner),
            ("aws-secret", names["secret"], owner),
            ("dms-endpoint", names["endpoint"], {**owner, "role": "source"}),
            ("dms-replication-instance", names["dms_instance"], owner),
            ("ecs-task", names["task"], {**owner, "cluster": world.ids["ecs_cluster"]}),
            ("rds-instance", names["owned_instance"], {}),  # no restore id recorded
        ]
        for kind, ident, details in refused:
            with pytest.raises(NotOwned, match="not deleted"):
                fleet.delete_resource(kind, ident, details)
        with pytest.raises(NotOwned, match="without the tag"):
            services.artifacts.purge(rid)
        fleet.delete_resource("rds-instance", names["owned_instance"], owner)
    assert _exists(world, names["instance"])
    assert not _exists(world, names["owned_instance"])
    assert world.rds.describe_db_clusters(DBClusterIdentifier=names["cluster"])["DBClusters"]
    assert world.sm.describe_secret(SecretId=names["secret"])["Name"] == names["secret"]
    dms = world.session.client("dms")
    assert [e["EndpointIdentifier"] for e in dms.describe_endpoints()["Endpoints"]] == [
        names["endpoint"]
    ]
    assert [
        i["ReplicationInstanceIdentifier"]
        for i in dms.describe_replication_instances()["ReplicationInstances"]
    ] == [names["dms_instance"]]
    task = world.session.client("ecs").describe_tasks(
        cluster=world.ids["ecs_cluster"], tasks=[names["task"]]
    )["tasks"][0]
    assert task["desiredStatus"] != "STOPPED"
    s3 = world.session.client("s3")
    assert s3.get_object(Bucket="restore-artifacts", Key=names["object"])["Body"].read() == (
        b"not yours"
    )


def test_cleanup_reports_a_colliding_resource_and_keeps_it(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """After a crash between record and create, cleanup finds a same-named server of another
    restore: it is reported in `errors` and in the log, not deleted, and stays recorded."""
    world.production_instance()
    world.production_secret()
    rid = "r-collide-2"
    cfg = AwsConfig.from_mapping(world.config())
    ident = cfg.temp_identifier(rid, "db")
    _instance(world, ident, _tags(OTHER))
    with world.active():
        services = build_services(world.config_file())
        services.audit.open("schema_restore", {"database": "x"}, rid)
        services.audit.resource(
            rid, "rds-instance", ident, {"source": "prod-db", "restore_id": rid}
        )
        services.audit.close(rid, "failed", "crashed")
        with caplog.at_level(logging.ERROR):
            out = cleanup.cleanup(services, rid, failed=True)
        rec = services.audit.get(rid)
    assert out["removed"] == []
    assert len(out["errors"]) == 1 and ident in out["errors"][0], out
    assert f"the tag of restore {OTHER!r}" in out["errors"][0]
    assert any("not deleted" in r.getMessage() and ident in r.getMessage() for r in caplog.records)
    assert _exists(world, ident)
    [res] = [r for r in rec["resources"] if r["identifier"] == ident]
    assert not res.get("deleted_at")


def test_an_artifact_key_held_by_another_object_is_not_overwritten(world: World) -> None:
    """An object under the restore's prefix that it did not write: put refuses, the object stays;
    the restore's own object is written (tagged) and may be written again."""
    from restore_assets.backends.aws.ownership import IdentifierTaken

    world.production_instance()
    world.production_secret()
    rid = "r-collide-3"
    s3 = world.session.client("s3")
    s3.put_object(Bucket="restore-artifacts", Key=f"restores/{rid}/pre.sql", Body=b"theirs")
    with world.active():
        artifacts = build_services(world.config_file()).artifacts
        with pytest.raises(IdentifierTaken, match="already exists"):
            artifacts.put(rid, "pre.sql", "ours")
        artifacts.put(rid, "post.sql", "ours")
        artifacts.put(rid, "post.sql", "ours again")
    assert s3.get_object(Bucket="restore-artifacts", Key=f"restores/{rid}/pre.sql")[
        "Body"
    ].read() == (b"theirs")
    tags = s3.get_object_tagging(Bucket="restore-artifacts", Key=f"restores/{rid}/post.sql")
    assert tags["TagSet"] == [{"Key": RESTORE_ID_TAG, "Value": rid}]
