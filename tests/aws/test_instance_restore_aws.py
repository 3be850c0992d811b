"""Instance restore in place on RDS / Aurora against moto: configuration carried, rollbacks, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.rds.models import rds_backends

from restore_assets.backends.aws.server_restore import AwsInstanceBackend
from restore_assets.backends.local.audit import SqliteAuditLog
from restore_assets.core.runner import not_requested
from restore_assets.core.server_restore.steps import (
    InstanceServices,
    plan_instance_restore,
    run_instance_restore,
)
from tests import faults
from tests.owners import dead_owner

pytestmark = pytest.mark.aws

REGION = "us-east-1"
MUTATING_PREFIXES = ("Create", "Modify", "Delete", "Restore", "Start", "Reboot", "Stop")


@dataclass
class Calls:
    """Every RDS call the code under test made, in order, with its parameters."""

    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def names(self) -> list[str]:
        """Operation names in call order."""
        return [n for n, _ in self.items]

    def params(self, op: str) -> list[dict[str, Any]]:
        """The parameters of every call of one operation."""
        return [p for n, p in self.items if n == op]

    def mutating(self) -> list[str]:
        """Operations that change something."""
        return [n for n in self.names() if n.startswith(MUTATING_PREFIXES)]


@dataclass
class Env:
    """A moto account with an encrypted, fully configured instance and an Aurora cluster."""

    rds: Any
    calls: Calls
    sg: str
    kms: str
    root: Path

    def backend(self) -> Any:
        """moto's RDS state (to check which object stands under a name, and to inject states)."""
        return rds_backends[DEFAULT_ACCOUNT_ID][REGION]

    def services(self, notifier: Any = None) -> InstanceServices:
        """Instance services on the moto client, polling without sleeping, short time limits."""
        backend = AwsInstanceBackend(self.rds, timeout=5, poll=0, sleep=lambda _s: None)
        return InstanceServices(
            backend=backend,
            audit=SqliteAuditLog(self.root / "audit.sqlite"),
            notifier=notifier,
            wait_timeout=5,
            snapshot_timeout=5,
            export_timeout=5,
        )

    def instances(self) -> list[str]:
        """Identifiers of every instance."""
        return sorted(
            d["DBInstanceIdentifier"] for d in self.rds.describe_db_instances()["DBInstances"]
        )

    def clusters(self) -> list[str]:
        """Identifiers of every cluster."""
        return sorted(
            c["DBClusterIdentifier"] for c in self.rds.describe_db_clusters()["DBClusters"]
        )

    def snapshots(self) -> list[str]:
        """Identifiers of every manual DB and cluster snapshot."""
        db = self.rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
        cl = self.rds.describe_db_cluster_snapshots(SnapshotType="manual")["DBClusterSnapshots"]
        return sorted(
            [s["DBSnapshotIdentifier"] for s in db] + [s["DBClusterSnapshotIdentifier"] for s in cl]
        )

    def drop_automated_snapshots(self) -> None:
        """moto names automated backups `rds:<id>-<minute>`, so a restore under the same name in
        the same minute collides with the original's; AWS does not. Drop them after setup."""
        b = self.backend()
        for sid in [s for s in b.database_snapshots if s.startswith("rds:")]:
            del b.database_snapshots[sid]
        for sid in [s for s in b.cluster_snapshots if s.startswith("rds:")]:
            del b.cluster_snapshots[sid]

    def snapshot(self, instance: str, name: str) -> None:
        """A manual snapshot taken outside the code under test."""
        self.rds.create_db_snapshot(DBInstanceIdentifier=instance, DBSnapshotIdentifier=name)

    def cluster_snapshot(self, cluster: str, name: str) -> None:
        """A manual cluster snapshot taken outside the code under test."""
        self.rds.create_db_cluster_snapshot(
            DBClusterIdentifier=cluster, DBClusterSnapshotIdentifier=name
        )


def _keep_members_on_cluster_rename(rds: Any) -> None:
    """AWS keeps a renamed cluster's members attached; moto matches members by the old name."""
    pending: dict[str, str] = {}

    def before(params: dict[str, Any], **_: Any) -> None:
        if params.get("NewDBClusterIdentifier"):
            pending["old"], pending["new"] = (
                params["DBClusterIdentifier"],
                params["NewDBClusterIdentifier"],
            )

    def after(**_: Any) -> None:
        if pending:
            for db in rds_backends[DEFAULT_ACCOUNT_ID][REGION].databases.values():
                if getattr(db, "db_cluster_identifier", None) == pending["old"].lower():
                    db.db_cluster_identifier = pending["new"].lower()
            pending.clear()

    rds.meta.events.register("provide-client-params.rds.ModifyDBCluster", before)
    rds.meta.events.register("after-call.rds.ModifyDBCluster", after)


def _keep_performance_insights(rds: Any) -> None:
    """moto accepts EnablePerformanceInsights but does not keep it: keep it as AWS does."""
    pending: list[dict[str, Any]] = []
    fields = {
        "EnablePerformanceInsights": "performance_insights_enabled",
        "PerformanceInsightsRetentionPeriod": "performance_insights_retention_period",
        "PerformanceInsightsKMSKeyId": "performance_insights_kms_key_id",
    }

    def before(params: dict[str, Any], **_: Any) -> None:
        pending.append(dict(params))

    def after(**_: Any) -> None:
        params = pending.pop() if pending else {}
        ident = params.get("NewDBInstanceIdentifier") or params.get("DBInstanceIdentifier")
        db = rds_backends[DEFAULT_ACCOUNT_ID][REGION].databases.get(ident or "")
        for key, attr in fields.items():
            if db is not None and key in params:
                setattr(db, attr, params[key])

    for op in ("CreateDBInstance", "ModifyDBInstance"):
        rds.meta.events.register(f"provide-client-params.rds.{op}", before)
        rds.meta.events.register(f"after-call.rds.{op}", after)


@dataclass
class World:
    """One moto account for the module: a VPC, subnets, a security group and a KMS key."""

    session: Any
    subnets: list[str]
    sg: str
    kms: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        ec2 = session.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}"
            )["Subnet"]["SubnetId"]
            for i, z in ((1, "a"), (2, "b"))
        ]
        sg = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
        kms = session.client("kms").create_key()["KeyMetadata"]["Arn"]
        yield World(session, subnets, sg, kms)


@pytest.fixture
def env(world: World, tmp_path: Path) -> Iterator[Env]:
    rds_backends[DEFAULT_ACCOUNT_ID][REGION].reset()  # a fresh RDS per test, same VPC and key
    rds = world.session.client("rds")
    _keep_performance_insights(rds)
    subnets, sg, kms = world.subnets, world.sg, world.kms
    rds.create_db_subnet_group(
        DBSubnetGroupName="dbsub", DBSubnetGroupDescription="db", SubnetIds=subnets
    )
    rds.create_db_parameter_group(
        DBParameterGroupName="pg-custom", DBParameterGroupFamily="postgres13", Description="x"
    )
    rds.create_option_group(
        OptionGroupName="og-custom",
        EngineName="postgres",
        MajorEngineVersion="13",
        OptionGroupDescription="x",
    )
    rds.create_db_instance(
        DBInstanceIdentifier="prod",
        DBInstanceClass="db.r6g.large",
        Engine="postgres",
        EngineVersion="13.4",
        AllocatedStorage=200,
        MaxAllocatedStorage=500,
        StorageType="io1",
        Iops=3000,
        MultiAZ=False,
        AvailabilityZone=f"{REGION}b",
        DBSubnetGroupName="dbsub",
        VpcSecurityGroupIds=[sg],
        DBParameterGroupName="pg-custom",
        OptionGroupName="og-custom",
        StorageEncrypted=True,
        KmsKeyId=kms,
        DeletionProtection=True,
        EnableIAMDatabaseAuthentication=True,
        EnableCloudwatchLogsExports=["postgresql", "upgrade"],
        MonitoringInterval=60,
        MonitoringRoleArn="arn:aws:iam::123456789012:role/rds-monitoring",
        EnablePerformanceInsights=True,
        PerformanceInsightsRetentionPeriod=7,
        Tags=[{"Key": "team", "Value": "db"}, {"Key": "env", "Value": "prod"}],
        Port=5433,
        CACertificateIdentifier="rds-ca-rsa2048-g1",
        MasterUsername="admin",
        MasterUserPassword="not-a-real-secret",
        CopyTagsToSnapshot=True,
        BackupRetentionPeriod=7,
    )
    rds.create_db_cluster_parameter_group(
        DBClusterParameterGroupName="cpg-custom",
        DBParameterGroupFamily="aurora-postgresql13",
        Description="x",
    )
    rds.create_db_cluster(
        DBClusterIdentifier="aur",
        Engine="aurora-postgresql",
        EngineVersion="13.4",
        MasterUsername="admin",
        MasterUserPassword="not-a-real-secret",
        DBSubnetGroupName="dbsub",
        VpcSecurityGroupIds=[sg],
        DBClusterParameterGroupName="cpg-custom",
        StorageEncrypted=True,
        KmsKeyId=kms,
        ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 8},
        DeletionProtection=True,
        EnableIAMDatabaseAuthentication=True,
        EnableCloudwatchLogsExports=["postgresql"],
        Tags=[{"Key": "team", "Value": "db"}],
        Port=5432,
        CopyTagsToSnapshot=True,
    )
    rds.create_db_instance(
        DBInstanceIdentifier="aur-writer",
        DBClusterIdentifier="aur",
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
        PromotionTier=0,
        MonitoringInterval=30,
        MonitoringRoleArn="arn:aws:iam::123456789012:role/rds-monitoring",
        EnablePerformanceInsights=True,
        PerformanceInsightsRetentionPeriod=7,
    )
    rds.create_db_instance(
        DBInstanceIdentifier="aur-reader",
        DBClusterIdentifier="aur",
        DBInstanceClass="db.r6g.xlarge",
        Engine="aurora-postgresql",
        PromotionTier=2,
    )
    calls = Calls()

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.items.append((model.name, dict(params)))

    e = Env(rds, calls, sg, kms, tmp_path)
    e.snapshot("prod", "prod-snap-1")
    e.cluster_snapshot("aur", "aur-snap-1")
    e.drop_automated_snapshots()
    _keep_members_on_cluster_rename(rds)
    rds.meta.events.register("provide-client-params.rds.*", record)
    yield e


def _rollback_is_clean(
    env: Env, out: dict[str, Any], original: Any, rollback_snapshot: str | None = None
) -> None:
    assert out["status"] == "failed", out
    assert out["rolled_back"] is True, out["cause"]
    assert env.backend().databases["prod"] is original  # the very same instance, under its name
    assert env.instances() == ["aur-reader", "aur-writer", "prod"]
    # a target that had become available is snapshotted before it is deleted; no other snapshot
    expected = ["aur-snap-1", "prod-snap-1"] + ([rollback_snapshot] if rollback_snapshot else [])
    assert env.snapshots() == sorted(expected)
    prod = env.rds.describe_db_instances(DBInstanceIdentifier="prod")["DBInstances"][0]
    assert prod["DeletionProtection"] is True
    rec = SqliteAuditLog(env.root / "audit.sqlite").get(out["restore_id"])
    assert rec["status"] == "failed" and "rolled back" in rec["cause"]
    assert [p["phase"] for p in rec["phases"]][-1] == "rollback"


def test_instance_restore_carries_every_setting_and_takes_the_final_snapshot(env: Env) -> None:
    out = run_instance_restore(
        env.services(),
        {"task": "db_restore", "identifier": "prod", "snapshot_id": "prod-snap-1", "suffix": "t1"},
    )
    assert out["status"] == "succeeded", out["cause"]
    [params] = env.calls.params("RestoreDBInstanceFromDBSnapshot")
    expected = {
        "DBInstanceIdentifier": "prod",
        "DBSnapshotIdentifier": "prod-snap-1",
        "DBInstanceClass": "db.r6g.large",
        "StorageType": "io1",
        "AllocatedStorage": 200,
        "Iops": 3000,
        "MultiAZ": False,
        "AvailabilityZone": f"{REGION}b",
        "DBSubnetGroupName": "dbsub",
        "VpcSecurityGroupIds": [env.sg],
        "DBParameterGroupName": "pg-custom",
        "OptionGroupName": "og-custom",
        "EnableIAMDatabaseAuthentication": True,
        "EnableCloudwatchLogsExports": ["postgresql", "upgrade"],
        "Tags": [
            {"Key": "team", "Value": "db"},
            {"Key": "env", "Value": "prod"},
            {"Key": "restore-assets:restore-id", "Value": out["restore_id"]},  # rollback's proof
        ],
        "Port": 5433,
        "CACertificateIdentifier": "rds-ca-rsa2048-g1",
        "CopyTagsToSnapshot": True,
        "BackupRetentionPeriod": 7,
        "DeletionProtection": False,  # on only once verified, so that a rollback can delete it
    }
    assert {k: params.get(k) for k in expected} == expected
    after = [p for p in env.calls.params("ModifyDBInstance") if p["DBInstanceIdentifier"] == "prod"]
    assert after[-1] | {"ApplyImmediately": True} == after[-1]
    assert {
        k: after[-1][k]
        for k in (
            "MonitoringInterval",
            "MonitoringRoleArn",
            "EnablePerformanceInsights",
            "PerformanceInsightsRetentionPeriod",
            "MaxAllocatedStorage",
            "DeletionProtection",
        )
    } == {
        "MonitoringInterval": 60,
        "MonitoringRoleArn": "arn:aws:iam::123456789012:role/rds-monitoring",
        "EnablePerformanceInsights": True,
        "PerformanceInsightsRetentionPeriod": 7,
        "MaxAllocatedStorage": 500,
        "DeletionProtection": True,
    }
    restored = env.rds.describe_db_instances(DBInstanceIdentifier="prod")["DBInstances"][0]
    assert restored["KmsKeyId"] == env.kms and restored["StorageEncrypted"]
    assert restored["DeletionProtection"] and restored["MonitoringInterval"] == 60
    assert restored["Endpoint"]["Port"] == 5433
    assert out["wait"]["drift"] == []
    # the renamed original: deletion protection off first, deleted only after the restored one was
    # available, with a final snapshot; it is gone and the final snapshot exists
    names = env.calls.names()
    rename = names.index("ModifyDBInstance")
    assert env.calls.items[rename][1] == {
        "DBInstanceIdentifier": "prod",
        "NewDBInstanceIdentifier": "prod-old-t1",
        "ApplyImmediately": True,
    }
    protection_off = [
        i
        for i, (n, p) in enumerate(env.calls.items)
        if n == "ModifyDBInstance"
        and p.get("DBInstanceIdentifier") == "prod-old-t1"
        and p.get("DeletionProtection") is False
    ]
    delete = names.index("DeleteDBInstance")
    restore = names.index("RestoreDBInstanceFromDBSnapshot")
    assert rename < restore < protection_off[0] < delete
    assert env.calls.items[delete][1] == {
        "DBInstanceIdentifier": "prod-old-t1",
        "DeleteAutomatedBackups": False,
        "FinalDBSnapshotIdentifier": "prod-final-t1",
    }
    assert "prod-old-t1" not in env.instances()
    assert "prod-final-t1" in env.snapshots()
    rec = SqliteAuditLog(env.root / "audit.sqlite").get(out["restore_id"])
    assert rec["kind"] == "instance_restore" and rec["status"] == "succeeded"
    assert [p["phase"] for p in rec["phases"]] == [
        "validate",
        "set_aside",
        "restore",
        "wait",
        "delete_old",
    ]


def test_cluster_restore_carries_every_setting_and_every_member(env: Env) -> None:
    out = run_instance_restore(
        env.services(), {"identifier": "aur", "snapshot_id": "aur-snap-1", "suffix": "t2"}
    )
    assert out["status"] == "succeeded", out["cause"]
    [params] = env.calls.params("RestoreDBClusterFromSnapshot")
    expected = {
        "DBClusterIdentifier": "aur",
        "SnapshotIdentifier": "aur-snap-1",
        "Engine": "aurora-postgresql",
        "Port": 5432,
        "DBSubnetGroupName": "dbsub",
        "VpcSecurityGroupIds": [env.sg],
        "DBClusterParameterGroupName": "cpg-custom",
        "KmsKeyId": env.kms,
        "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 8.0},
        "EnableIAMDatabaseAuthentication": True,
        "EnableCloudwatchLogsExports": ["postgresql"],
        "Tags": [
            {"Key": "team", "Value": "db"},
            {"Key": "restore-assets:restore-id", "Value": out["restore_id"]},
        ],
        "CopyTagsToSnapshot": True,
        "DeletionProtection": False,
    }
    assert {k: params.get(k) for k in expected} == expected
    creates = env.calls.params("CreateDBInstance")
    assert [c["DBInstanceIdentifier"] for c in creates] == [
        "aur-writer",
        "aur-reader",
    ]  # writer first
    assert (
        creates[0]
        | {
            "DBClusterIdentifier": "aur",
            "DBInstanceClass": "db.serverless",
            "PromotionTier": 0,
            "MonitoringInterval": 30,
            "EnablePerformanceInsights": True,
            "PerformanceInsightsRetentionPeriod": 7,
        }
        == creates[0]
    )
    assert creates[1]["DBInstanceClass"] == "db.r6g.xlarge" and creates[1]["PromotionTier"] == 2
    cluster = env.rds.describe_db_clusters(DBClusterIdentifier="aur")["DBClusters"][0]
    members = {m["DBInstanceIdentifier"]: m for m in cluster["DBClusterMembers"]}
    assert set(members) == {"aur-writer", "aur-reader"} and members["aur-writer"]["IsClusterWriter"]
    assert cluster["DeletionProtection"] is True
    # the renamed original: members deleted, then the cluster with its final snapshot
    deletes = env.calls.params("DeleteDBCluster")
    assert deletes == [
        {"DBClusterIdentifier": "aur-old-t2", "FinalDBSnapshotIdentifier": "aur-final-t2"}
    ]
    assert {p["DBInstanceIdentifier"] for p in env.calls.params("DeleteDBInstance")} == {
        "aur-writer-old-t2",
        "aur-reader-old-t2",
    }
    assert env.clusters() == ["aur"]
    assert env.instances() == ["aur-reader", "aur-writer", "prod"]
    assert "aur-final-t2" in env.snapshots()


@pytest.mark.parametrize(
    "fail_at",
    [
        "set_aside",
        "set_aside:after",
        "restore",
        "restore:after",
        "wait",
        "wait:after",
        "delete_old",
    ],
)
def test_instance_rollback_after_a_failure_at_each_step(env: Env, fail_at: str) -> None:
    original = env.backend().databases["prod"]
    with faults.fail_at(fail_at):
        out = run_instance_restore(
            env.services(), {"identifier": "prod", "snapshot_id": "prod-snap-1", "suffix": "rb"}
        )
    # from restore:after on, the target under prod's name is available: snapshotted first
    available = fail_at in ("restore:after", "wait", "wait:after", "delete_old")
    _rollback_is_clean(env, out, original, "prod-rollback-rb" if available else None)
    assert "injected failure" in out["cause"]


@pytest.mark.parametrize(
    "fail_at", ["set_aside:after", "restore:after", "wait:after", "delete_old"]
)
def test_cluster_rollback_puts_the_cluster_and_its_members_back(env: Env, fail_at: str) -> None:
    b = env.backend()
    cluster, writer, reader = (
        b.clusters["aur"],
        b.databases["aur-writer"],
        b.databases["aur-reader"],
    )
    with faults.fail_at(fail_at):
        out = run_instance_restore(
            env.services(), {"identifier": "aur", "snapshot_id": "aur-snap-1", "suffix": "rb"}
        )
    assert out["status"] == "failed" and out["rolled_back"], out["cause"]
    assert b.clusters["aur"] is cluster
    assert b.databases["aur-writer"] is writer and b.databases["aur-reader"] is reader
    assert env.clusters() == ["aur"] and env.instances() == ["aur-reader", "aur-writer", "prod"]
    described = env.rds.describe_db_clusters(DBClusterIdentifier="aur")["DBClusters"][0]
    assert {m["DBInstanceIdentifier"] for m in described["DBClusterMembers"]} == {
        "aur-writer",
        "aur-reader",
    }
    assert described["DeletionProtection"] is True
    final = ["aur-rollback-rb"] if fail_at != "set_aside:after" else []
    assert env.snapshots() == sorted(["aur-snap-1", "prod-snap-1", *final])


def test_a_restore_that_ends_incompatible_is_rolled_back(env: Env) -> None:
    original = env.backend().databases["prod"]

    def break_it(**_: Any) -> None:
        env.backend().databases["prod"].status = "incompatible-restore"

    env.rds.meta.events.register("after-call.rds.RestoreDBInstanceFromDBSnapshot", break_it)
    out = run_instance_restore(env.services(), {"identifier": "prod", "snapshot_id": "prod-snap-1"})
    _rollback_is_clean(env, out, original)
    assert "incompatible-restore" in out["cause"]


def test_rollback_is_alerted_through_the_notifier(env: Env) -> None:
    sent: list[dict[str, Any]] = []

    class Collect:
        def send(self, event: dict[str, Any]) -> None:
            sent.append(dict(event))

    with faults.fail_at("wait"):
        run_instance_restore(
            env.services(notifier=Collect()),
            {"identifier": "prod", "snapshot_id": "prod-snap-1"},
        )
    assert [e["status"] for e in sent] == ["rolled_back"]
    assert sent[0]["identifier"] == "prod" and "injected failure" in sent[0]["cause"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            {"task": "drop_everything", "identifier": "prod", "snapshot_id": "prod-snap-1"},
            "unknown task",
        ),
        ({"identifier": "p" * 64, "snapshot_id": "prod-snap-1"}, "limit is 63"),
        (
            {"identifier": "p" * 56, "snapshot_id": "prod-snap-1", "suffix": "abc"},
            "renamed identifier",
        ),
        ({"identifier": "prod--x", "snapshot_id": "prod-snap-1"}, "not valid"),
        ({"identifier": "prod", "snapshot_id": "prod-snap-1", "suffix": "UPPER"}, "suffix"),
        ({"identifier": "prod"}, "needs a snapshot_id"),
    ],
)
def test_invalid_requests_are_refused_before_any_call(
    env: Env, request_: dict, message: str
) -> None:
    from restore_assets.core.errors import InvalidRequest

    before = (env.instances(), env.clusters(), env.snapshots())
    env.calls.items.clear()
    with pytest.raises(InvalidRequest, match=message):
        run_instance_restore(env.services(), request_)
    assert env.calls.items == []
    assert (env.instances(), env.clusters(), env.snapshots()) == before
    [rec] = SqliteAuditLog(env.root / "audit.sqlite").history()
    assert rec["status"] == "rejected"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"identifier": "nope", "snapshot_id": "prod-snap-1"}, "unknown RDS instance or cluster"),
        ({"identifier": "prod", "snapshot_id": "nope"}, "unknown DB snapshot"),
        ({"identifier": "aur", "snapshot_id": "prod-snap-1"}, "unknown cluster snapshot"),
        ({"identifier": "aur-reader", "snapshot_id": "prod-snap-1"}, "member of cluster aur"),
    ],
)
def test_unknown_servers_and_snapshots_are_refused_after_reads_only(
    env: Env, request_: dict, message: str
) -> None:
    from restore_assets.core.errors import InvalidRequest

    before = (env.instances(), env.clusters(), env.snapshots())
    env.calls.items.clear()
    with pytest.raises(InvalidRequest, match=message):
        run_instance_restore(env.services(), request_)
    assert env.calls.mutating() == []
    assert (env.instances(), env.clusters(), env.snapshots()) == before


def test_plan_shows_the_preserved_configuration_without_a_mutating_call(env: Env) -> None:
    env.calls.items.clear()
    plan = plan_instance_restore(
        env.services().backend, {"identifier": "aur", "snapshot_id": "aur-snap-1", "suffix": "p1"}
    )
    assert env.calls.mutating() == [] and env.calls.names()
    assert plan["topology"] == "cluster"
    assert plan["names"]["renamed"] == "aur-old-p1"
    assert plan["names"]["member_renames"] == {
        "aur-writer": "aur-writer-old-p1",
        "aur-reader": "aur-reader-old-p1",
    }
    cfg = plan["preserved_configuration"]
    assert cfg["DBClusterParameterGroupName"] == "cpg-custom" and cfg["KmsKeyId"] == env.kms
    assert [m["DBInstanceClass"] for m in plan["members"]] == ["db.serverless", "db.r6g.xlarge"]
    assert any("aur-final-p1" in s for s in plan["steps"])


def test_keep_old_and_skip_final_snapshot(env: Env) -> None:
    out = run_instance_restore(
        env.services(),
        {"identifier": "prod", "snapshot_id": "prod-snap-1", "suffix": "k1", "keep_old": True},
    )
    assert out["status"] == "succeeded" and out["delete_old"] == {"kept": "prod-old-k1"}
    assert "prod-old-k1" in env.instances()
    env.drop_automated_snapshots()
    out = run_instance_restore(
        env.services(),
        {
            "identifier": "prod",
            "snapshot_id": "prod-snap-1",
            "suffix": "k2",
            "skip_final_snapshot": True,
        },
    )
    assert out["status"] == "succeeded", out["cause"]
    assert env.calls.params("DeleteDBInstance")[-1] == {
        "DBInstanceIdentifier": "prod-old-k2",
        "DeleteAutomatedBackups": False,
        "SkipFinalSnapshot": True,
    }
    assert not [s for s in env.snapshots() if "final" in s]


def test_create_snapshot_then_restore_from_it(env: Env) -> None:
    out = run_instance_restore(
        env.services(),
        {
            "task": "create_snapshot",
            "identifier": "prod",
            "snapshot_identifier": "before-fix",
            "suffix": "c1",
        },
    )
    assert out["status"] == "succeeded", out["cause"]
    assert out["snapshot_id"] == "before-fix"
    assert (
        env.calls.params("RestoreDBInstanceFromDBSnapshot")[0]["DBSnapshotIdentifier"]
        == "before-fix"
    )
    names = env.calls.names()
    assert names.index("CreateDBSnapshot") < names.index("RestoreDBInstanceFromDBSnapshot")


EXPORT = {
    "s3_bucket": "exports",
    "s3_prefix": "snapshots",
    "iam_role_arn": "arn:aws:iam::123456789012:role/export",
    "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/export",
}


def _snapshot_services(env: Env, **kw: Any) -> InstanceServices:
    services = env.services(**kw)
    services.backend.export = dict(EXPORT)
    return services


def test_snapshot_with_a_default_name_waits_until_available(env: Env) -> None:
    from restore_assets.core.server_restore.steps import take_snapshot

    out = take_snapshot(env.services(), {"identifier": "aur"})
    assert out["status"] == "succeeded", out["cause"]
    assert out["snapshot_id"].startswith("aur-") and out["snapshot_id"] in env.snapshots()
    assert env.calls.params("CreateDBClusterSnapshot")[0]["DBClusterIdentifier"] == "aur"
    assert env.calls.mutating() == ["CreateDBClusterSnapshot"]
    rec = SqliteAuditLog(env.root / "audit.sqlite").get(out["restore_id"])
    assert rec["kind"] == "snapshot" and rec["status"] == "succeeded"


def test_snapshot_export_is_followed_to_completion(env: Env) -> None:
    from restore_assets.core.server_restore.steps import take_snapshot

    out = take_snapshot(
        _snapshot_services(env),
        {"identifier": "prod", "snapshot_identifier": "nightly-1", "export_s3": True},
    )
    assert out["status"] == "succeeded", out["cause"]
    [start] = env.calls.params("StartExportTask")
    assert start == {
        "ExportTaskIdentifier": "nightly-1-export",
        "SourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:nightly-1",
        "S3BucketName": "exports",
        "IamRoleArn": EXPORT["iam_role_arn"],
        "KmsKeyId": EXPORT["kms_key_id"],
        "S3Prefix": "snapshots",
    }
    assert env.calls.names().count("DescribeExportTasks") >= 1
    assert out["export"]["status"] == "complete"


def test_a_failed_export_fails_the_run(env: Env) -> None:
    from restore_assets.core.server_restore.steps import take_snapshot

    def fail(**_: Any) -> None:
        task = env.backend().export_tasks["nightly-2-export"]
        task.status, task.failure_cause = "FAILED", "S3 bucket not found"

    env.rds.meta.events.register("after-call.rds.StartExportTask", fail)
    out = take_snapshot(
        _snapshot_services(env),
        {"identifier": "prod", "snapshot_identifier": "nightly-2", "export_s3": True},
    )
    assert out["status"] == "failed"
    assert "FAILED: S3 bucket not found" in out["cause"]
    assert "nightly-2" in env.snapshots()  # the snapshot itself is kept


def test_an_export_still_running_at_the_time_limit_fails_with_a_hint(env: Env) -> None:
    from restore_assets.core.server_restore.steps import take_snapshot

    def slow(**_: Any) -> None:
        env.backend().export_tasks["nightly-3-export"].status = "IN_PROGRESS"

    env.rds.meta.events.register("after-call.rds.StartExportTask", slow)
    services = _snapshot_services(env)
    services.export_timeout = 0.2
    services.backend.rds.poll = 0.05
    services.backend.rds.sleep = __import__("time").sleep
    out = take_snapshot(
        services, {"identifier": "prod", "snapshot_identifier": "nightly-3", "export_s3": True}
    )
    assert out["status"] == "failed"
    assert "not done within" in out["cause"] and "describe-export-tasks" in out["cause"]


def test_export_without_configuration_is_refused_before_any_change(env: Env) -> None:
    from restore_assets.core.errors import InvalidRequest
    from restore_assets.core.server_restore.steps import take_snapshot

    with pytest.raises(InvalidRequest, match="snapshot_export.s3_bucket"):
        take_snapshot(env.services(), {"identifier": "prod", "export_s3": True})
    assert env.calls.mutating() == []


def test_an_undeliverable_rollback_alert_changes_nothing(env: Env, caplog) -> None:
    from restore_assets.core.alerts import AlertNotifier, SlackChannel
    from tests.unit.test_alerts import WEBHOOK_PATH, free_port

    dead = AlertNotifier([SlackChannel(f"http://127.0.0.1:{free_port()}{WEBHOOK_PATH}", 1)])
    original = env.backend().databases["prod"]
    with faults.fail_at("wait"):
        out = run_instance_restore(
            env.services(notifier=dead), {"identifier": "prod", "snapshot_id": "prod-snap-1"}
        )
    _rollback_is_clean(env, out, original, out["names"]["rollback_snapshot"])
    assert "not delivered" in caplog.text and "s3cr3tT0ken" not in caplog.text


@pytest.mark.parametrize("crash_after", ["set_aside", "restore", "wait", "delete_old"])
def test_recovery_after_a_crash_puts_the_original_back_or_closes_the_run(
    env: Env, crash_after: str
) -> None:
    from restore_assets.core.server_restore import steps as core
    from restore_assets.core.server_restore.recovery import recover_instance_restore

    services = env.services()
    original = env.backend().databases["prod"]
    rid, plan = core.validate(
        services, {"identifier": "prod", "snapshot_id": "prod-snap-1"}, owner=dead_owner()
    )  # the run's process has died (recovery acts only for an owner that has ended)
    aside = core.set_aside_step(services, rid, plan, [])
    results = [aside]
    if crash_after != "set_aside":
        results.append(core.restore_step(services, rid, plan, not_requested("s"), aside))
    if crash_after in ("wait", "delete_old"):
        results.append(core.wait_step(services, rid, plan, results[-1]))
    if crash_after == "delete_old":
        results.append(core.delete_old_step(services, rid, plan, results[-1]))
    assert all(r.ok for r in results)  # then the process dies: no finish step
    audit = SqliteAuditLog(env.root / "audit.sqlite")
    assert audit.get(rid)["status"] == "running"
    out = recover_instance_restore(services, rid)
    if crash_after == "delete_old":
        assert out["status"] == "succeeded" and audit.get(rid)["status"] == "succeeded"
        assert env.instances() == ["aur-reader", "aur-writer", "prod"]
        return
    assert out["action"] == "rolled back", out
    assert env.backend().databases["prod"] is original
    assert env.instances() == ["aur-reader", "aur-writer", "prod"]
    assert audit.get(rid)["status"] == "failed"
    again = recover_instance_restore(services, rid)  # idempotent
    assert again["action"] == "none: run finished"


def test_the_dagster_job_on_the_aws_backend_records_in_dynamodb(env: Env, world: World) -> None:
    import yaml

    from restore_assets.backends.aws.audit import DynamoAuditLog
    from restore_assets.jobs.instance_restore import run_instance_restore_job

    dynamodb = world.session.client("dynamodb")
    table = "restore-audit-instance"
    if table not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "restore_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "restore_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    config = env.root / "backend.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "backend": "aws",
                "aws": {
                    "region_name": REGION,
                    "source_identifier": "prod",
                    "audit_table": table,
                    "waiter_delay_s": 0.01,
                    "waiter_timeout_s": 5,
                },
            }
        )
    )
    out = run_instance_restore_job(
        {"snapshot_id": "prod-snap-1", "suffix": "dg1"},
        {"backend": "aws", "root": str(env.root), "config_file": str(config)},
    )
    assert out["status"] == "succeeded", out["cause"]
    assert out["identifier"] == "prod" and out["dagster_success"]
    rec = DynamoAuditLog(dynamodb, table).get(out["restore_id"])
    assert rec["kind"] == "instance_restore" and rec["status"] == "succeeded"
    assert "prod-final-dg1" in env.snapshots() and "prod-old-dg1" not in env.instances()


def test_rollback_of_an_available_target_snapshots_it_before_deleting_it(env: Env) -> None:
    """The restored prod was available (clients may have written to it) when delete_old failed:
    the rollback deletes it only with a final snapshot, which exists afterwards."""
    with faults.fail_at("delete_old"):
        out = run_instance_restore(
            env.services(), {"identifier": "prod", "snapshot_id": "prod-snap-1", "suffix": "fs"}
        )
    assert out["status"] == "failed" and out["rolled_back"], out["cause"]
    deletes = [
        p for p in env.calls.params("DeleteDBInstance") if p["DBInstanceIdentifier"] == "prod"
    ]
    assert deletes and deletes[0].get("FinalDBSnapshotIdentifier") == "prod-rollback-fs"
    assert not deletes[0].get("SkipFinalSnapshot")
    [snap] = env.rds.describe_db_snapshots(DBSnapshotIdentifier="prod-rollback-fs")["DBSnapshots"]
    assert snap["Status"] == "available" and snap["DBInstanceIdentifier"] == "prod"
    rec = SqliteAuditLog(env.root / "audit.sqlite").get(out["restore_id"])
    [rollback] = [p for p in rec["phases"] if p["phase"] == "rollback"]
    assert any("prod-rollback-fs" in a for a in rollback["metadata"]["actions"])


def test_rollback_leaves_a_server_this_run_did_not_create(env: Env) -> None:
    """Between the rename and the restore someone creates another `prod`: the restore fails and
    the rollback finds a server without this run's tag under the name. It is left in place (not
    deleted), the original stays renamed, and the run says why."""
    from restore_assets.core.server_restore import steps as core

    services = env.services()
    rid, plan = core.validate(
        services, {"identifier": "prod", "snapshot_id": "prod-snap-1", "suffix": "nt"}
    )
    aside = core.set_aside_step(services, rid, plan, [])
    assert aside.ok, aside.error
    env.rds.create_db_instance(
        DBInstanceIdentifier="prod",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="postgres",
        MasterUserPassword="not-used-here",
        AllocatedStorage=20,
        Tags=[{"Key": "owner", "Value": "someone-else"}],
    )
    someone_elses = env.backend().databases["prod"]
    restored = core.restore_step(services, rid, plan, not_requested("snapshot"), aside)
    assert not restored.ok  # the name is taken
    out = core.finish(services, rid, plan, [aside, restored])
    assert out["status"] == "failed" and out["rolled_back"] is False
    assert "this run did not create it" in out["cause"]
    assert env.backend().databases["prod"] is someone_elses
    assert "prod-old-nt" in env.instances()
    assert not [
        p for p in env.calls.params("DeleteDBInstance") if p["DBInstanceIdentifier"] == "prod"
    ]


def test_delete_old_deletes_only_the_server_it_set_aside(env: Env) -> None:
    """The server under the renamed name is not the original any more (another resource id): the
    delete_old step refuses, nothing is deleted, and no final snapshot of it is taken."""
    from restore_assets.core.server_restore import steps as core

    services = env.services()
    rid, plan = core.validate(
        services, {"identifier": "prod", "snapshot_id": "prod-snap-1", "suffix": "ri"}
    )
    aside = core.set_aside_step(services, rid, plan, [])
    restored = core.restore_step(services, rid, plan, not_requested("snapshot"), aside)
    ready = core.wait_step(services, rid, plan, restored)
    assert aside.ok and restored.ok and ready.ok, (aside.error, restored.error, ready.error)
    env.backend().databases["prod-old-ri"].dbi_resource_id = "db-SOMEONEELSE"
    deleted = core.delete_old_step(services, rid, plan, ready)
    assert not deleted.ok and "not the server this run set aside" in (deleted.error or "")
    assert "prod-old-ri" in env.instances()
    assert not [
        p
        for p in env.calls.params("DeleteDBInstance")
        if p["DBInstanceIdentifier"] == "prod-old-ri"
    ]
    assert "prod-final-ri" not in env.snapshots()


def test_a_taken_rollback_snapshot_name_is_refused_before_any_change(env: Env) -> None:
    """The rollback snapshot name must be free too: checked with the other names, before anything."""
    from restore_assets.core.errors import InvalidRequest

    env.snapshot("prod", "prod-rollback-tk")
    before = (env.instances(), env.clusters(), env.snapshots())
    with pytest.raises(InvalidRequest, match="prod-rollback-tk already exists"):
        run_instance_restore(
            env.services(), {"identifier": "prod", "snapshot_id": "prod-snap-1", "suffix": "tk"}
        )
    assert (env.instances(), env.clusters(), env.snapshots()) == before
    assert not [n for n in env.calls.mutating() if n != "CreateDBSnapshot"]
