"""Failures on AWS: injected at each phase, inside DMS, in the ECS container, in RDS; the cleanup
job after a crash; bad input refused before any create call. Every test ends with moto holding
no temporary RDS instance/cluster, DMS object, secret or S3 object, and production holding no
restored schema.

Doubles (see tests/aws/doubles.py): the ECS container runs in-process on moto's run_task; DMS task
progress comes from a botocore Stubber (describe_replication_tasks / describe_table_statistics);
the secret history comes from a Stubber (list_secret_version_ids). These tests launch the task
with the plain EcsTaskLauncher (run_task + tasks_stopped waiter + exit code), not Pipes.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from restore_assets.jobs.launch import run_schema_restore
from tests import faults
from tests.aws.conftest import World

pytestmark = pytest.mark.aws

MUTATING_RDS = (
    "restore_db_instance_to_point_in_time",
    "restore_db_instance_from_db_snapshot",
    "restore_db_cluster_to_point_in_time",
    "restore_db_cluster_from_snapshot",
    "create_db_instance",
)


def _setup(world: World, topology: str = "instance") -> datetime:
    world.pipes = False
    if topology == "instance":
        world.production_instance()
    else:
        world.production_cluster()
    world.production_secret()
    point = datetime.now(UTC) + timedelta(milliseconds=1)
    world.queue_secret_history(point)
    return point


def _run(world: World, request: dict, fail_at: str | None = None, **cfg) -> dict:
    backend = world.config_file(artifact_retention="delete", **cfg)
    hook = faults.fail_at(fail_at) if fail_at else contextlib.nullcontext()
    with world.active(), hook:
        return run_schema_restore(request, backend, compare=False)


def _clean(world: World, database: str) -> None:
    assert world.leftovers() == {k: [] for k in world.leftovers()}
    assert world.restored_schemas(database) == []


@pytest.mark.parametrize(
    "phase", ["topology", "provision", "ddl", "pre", "copy", "post", "cleanup"]
)
def test_failure_at_each_phase_leaves_nothing(world: World, database: str, phase: str) -> None:
    """An injected failure: the always-run cleanup removes every recorded resource, schemas included."""
    point = _setup(world)
    out = _run(
        world,
        {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()},
        fail_at=phase,
    )
    assert out["status"] == "failed", out
    assert f"injected failure in phase {phase}" in out["cause"]
    _clean(world, database)


def test_dms_task_failure_is_a_failure_and_cleans_up(world: World, database: str) -> None:
    """A task stopped with an error stop reason fails the copy with its message."""
    point = _setup(world)
    world.dms_state["fail"] = "task"
    out = _run(
        world, {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()}
    )
    assert out["status"] == "failed"
    assert "FATAL_ERROR" in out["cause"] and "Simulated: last error" in out["cause"]
    _clean(world, database)


def test_dms_table_error_is_a_failure(world: World, database: str) -> None:
    """A table in error in describe_table_statistics fails the copy even if the task 'finished'."""
    point = _setup(world)
    world.dms_state["fail"] = "table"
    out = _run(
        world, {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()}
    )
    assert out["status"] == "failed"
    assert "table(s) with errors" in out["cause"] and "Table error" in out["cause"]
    _clean(world, database)


def test_container_exit_code_fails_the_phase(world: World, database: str) -> None:
    """The apply-pre container exits 3: the phase fails (real exit-code check), all is cleaned."""
    point = _setup(world)
    world.ecs_fail_modes.add("apply-pre")
    out = _run(
        world, {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()}
    )
    assert out["status"] == "failed"
    assert "exited with code 3" in out["cause"]
    _clean(world, database)


def test_aurora_writer_creation_failure_deletes_the_cluster(world: World, database: str) -> None:
    """RDS refuses the writer instance: the already created cluster (recorded first) is deleted."""
    point = _setup(world, "cluster")
    world.rds_fail["create_db_instance"] = ClientError(
        {"Error": {"Code": "InsufficientDBInstanceCapacity", "Message": "no capacity"}},
        "CreateDBInstance",
    )
    out = _run(
        world, {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()}
    )
    assert out["status"] == "failed"
    assert "InsufficientDBInstanceCapacity" in out["cause"]
    assert world.calls("restore_db_cluster_to_point_in_time")
    _clean(world, database)


def _refused(world: World, database: str, request: dict, expected: str, **cfg) -> None:
    world.stub_secret_history = True  # nothing queued: reading the secret history would fail
    out = _run(world, {"database": database, "schemas": ["customer_a1"], **request}, **cfg)
    assert out["status"] == "rejected", out
    assert expected in out["cause"], out["cause"]
    assert not any(world.calls(op) for op in MUTATING_RDS)
    assert not [op for op, _ in world.dms_state.get("calls", []) if op.startswith("create")]
    assert world.ecs_runs == []
    _clean(world, database)


def test_time_before_the_window_is_refused(world: World, database: str) -> None:
    """Before EarliestRestorableTime / the oldest automated backup: nothing is created."""
    world.production_instance()
    world.production_secret()
    early = datetime.now(UTC) - timedelta(days=2)
    _refused(world, database, {"restore_time": early.isoformat()}, "outside the restore window")


def test_time_in_the_future_is_refused(world: World, database: str) -> None:
    """A restore time after now."""
    world.production_cluster()
    world.production_secret()
    late = datetime.now(UTC) + timedelta(hours=1)
    _refused(world, database, {"restore_time": late.isoformat()}, "is in the future")


def test_cluster_snapshot_for_an_instance_is_refused(world: World, database: str) -> None:
    """Instance source, cluster snapshot id: the wrong kind, said so."""
    world.production_instance()
    world.production_secret()
    world.rds.create_db_cluster(
        DBClusterIdentifier="other-aurora",
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword="not-used-here",
    )
    world.rds.create_db_cluster_snapshot(
        DBClusterIdentifier="other-aurora", DBClusterSnapshotIdentifier="cluster-snap"
    )
    _refused(world, database, {"snapshot_id": "cluster-snap"}, "is a DB cluster snapshot")


def test_instance_snapshot_for_a_cluster_is_refused(world: World, database: str) -> None:
    """Aurora source, DB (instance) snapshot id: the wrong kind, said so."""
    world.production_cluster()
    world.production_secret()
    world.rds.create_db_instance(
        DBInstanceIdentifier="other-db",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="postgres",
        MasterUserPassword="not-used-here",
        AllocatedStorage=20,
    )
    world.rds.create_db_snapshot(DBInstanceIdentifier="other-db", DBSnapshotIdentifier="db-snap")
    _refused(world, database, {"snapshot_id": "db-snap"}, "is a DB instance snapshot")


def test_snapshot_of_another_instance_is_refused(world: World, database: str) -> None:
    """A snapshot of the right kind but of another server would restore other data."""
    world.production_instance()
    world.production_secret()
    world.rds.create_db_instance(
        DBInstanceIdentifier="other-db",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="postgres",
        MasterUserPassword="not-used-here",
        AllocatedStorage=20,
    )
    world.rds.create_db_snapshot(DBInstanceIdentifier="other-db", DBSnapshotIdentifier="db-snap")
    _refused(world, database, {"snapshot_id": "db-snap"}, "is a snapshot of other-db")


def test_unknown_snapshot_is_refused(world: World, database: str) -> None:
    """An id that names no snapshot at all."""
    world.production_instance()
    world.production_secret()
    _refused(world, database, {"snapshot_id": "no-such-snap"}, "unknown DB snapshot")


def test_unknown_source_is_refused(world: World, database: str) -> None:
    """aws.source_identifier names nothing: refused, not guessed."""
    world.production_instance()
    world.production_secret()
    now = datetime.now(UTC).isoformat()
    _refused(
        world,
        database,
        {"restore_time": now},
        "unknown source 'missing-db'",
        source_identifier="missing-db",
    )


def test_replication_instance_starts_in_phase_one(world: World, database: str) -> None:
    """The DMS replication instance is created by the topology phase, before the temporary database."""
    from restore_assets.backends.factory import build_services

    point = _setup(world)
    backend = world.config_file(artifact_retention="delete")
    out = _run(
        world,
        {"database": database, "schemas": ["customer_a1"], "restore_time": point.isoformat()},
        fail_at="provision",
    )
    assert out["status"] == "failed"
    with world.active():
        rec = build_services(backend).audit.get(out["restore_id"])
    kinds = [r["kind"] for r in sorted(rec["resources"], key=lambda r: r["created_at"])]
    assert kinds and "replication-instance" in kinds[0], (
        kinds
    )  # recorded by phase 1, then cleaned up
    assert all(r["deleted_at"] for r in rec["resources"])
    _clean(world, database)
