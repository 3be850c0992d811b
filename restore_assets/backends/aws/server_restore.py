"""Instance restore on RDS / Aurora through a plain boto3 RDS client.

Restore in place keeping the endpoint: rename the original to `<id>-old-<suffix>` (and, for an
Aurora cluster, every member instance), restore the snapshot under the original identifier with
every setting of the original passed explicitly, wait for it and every member, then delete the
renamed original with a final snapshot. The restored target is created WITHOUT deletion protection
(turned on once it is verified), so a rollback can always delete it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from restore_assets.backends.aws.config import RESTORE_ID_TAG
from restore_assets.backends.aws.ownership import tag_value
from restore_assets.core.errors import FleetError, InvalidRequest
from restore_assets.core.server_restore.model import (
    MAX_IDENTIFIER,
    MAX_SNAPSHOT_IDENTIFIER,
    Described,
    check_rds_name,
    default_snapshot_identifier,
    final_snapshot_identifier,
    renamed_identifier,
    rollback_snapshot_identifier,
)
from restore_assets.core.server_restore.protocols import Record

log = logging.getLogger("restore_assets.backends.aws.server_restore")

NOT_FOUND = frozenset(
    {
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "DBClusterNotFoundFault",
        "DBClusterNotFound",
        "DBSnapshotNotFound",
        "DBSnapshotNotFoundFault",
        "DBClusterSnapshotNotFoundFault",
        "DBClusterSnapshotNotFound",
        "ExportTaskNotFound",
        "ExportTaskNotFoundFault",
    }
)
FAILED_STATES = frozenset(
    {
        "failed",
        "incompatible-restore",
        "incompatible-parameters",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-credentials",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "restore-error",
        "storage-full",
    }
)
BUSY_STATES = frozenset(
    {"creating", "modifying", "renaming", "backing-up", "rebooting", "starting", "upgrading"}
)
RENAMED_KIND = "rds-renamed-original"
RESTORED_KIND = "rds-restored-target"
SNAPSHOT_KIND = "rds-snapshot"
CREATED_BY_TAG = {"Key": "restore-assets:created-by", "Value": "restore-assets"}
# settings RestoreDBInstanceFromDBSnapshot cannot take: applied by ModifyDBInstance once available
INSTANCE_AFTER = (
    "MonitoringInterval",
    "MonitoringRoleArn",
    "EnablePerformanceInsights",
    "PerformanceInsightsKMSKeyId",
    "PerformanceInsightsRetentionPeriod",
    "MaxAllocatedStorage",
    "PreferredMaintenanceWindow",
    "DatabaseInsightsMode",
    "DeletionProtection",
)
CLUSTER_AFTER = ("PreferredMaintenanceWindow", "CACertificateIdentifier", "DeletionProtection")
# configuration keys that describe, but are not parameters of any call
INFORMATIONAL = ("EngineVersion", "StorageEncrypted", "MasterUserSecret")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != [] and v != {}}


def _tags(tag_list: list[dict[str, str]] | None) -> list[dict[str, str]]:
    return [
        t
        for t in (tag_list or [])
        if not t["Key"].startswith("aws:") and t["Key"] != RESTORE_ID_TAG
    ]


def _with_restore_tag(params: dict[str, Any], names: Mapping[str, Any]) -> dict[str, Any]:
    """The create parameters plus the tag `restore-assets:restore-id=<run>` (a rollback's proof)."""
    rid = names.get("restore_id")
    if rid:
        params["Tags"] = [*params.get("Tags", []), {"Key": RESTORE_ID_TAG, "Value": str(rid)}]
    return params


def instance_config(d: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration of an RDS instance, as the parameters that recreate it."""
    multi_az = bool(d.get("MultiAZ"))
    monitoring = int(d.get("MonitoringInterval") or 0)
    pi = bool(d.get("PerformanceInsightsEnabled"))
    secret = d.get("MasterUserSecret") or {}
    return _drop_none(
        {
            "DBInstanceClass": d.get("DBInstanceClass"),
            "Engine": d.get("Engine"),
            "EngineVersion": d.get("EngineVersion"),
            "LicenseModel": d.get("LicenseModel"),
            "StorageType": d.get("StorageType"),
            "AllocatedStorage": d.get("AllocatedStorage"),
            "Iops": d.get("Iops"),
            "StorageThroughput": d.get("StorageThroughput"),
            "MaxAllocatedStorage": d.get("MaxAllocatedStorage"),
            "MultiAZ": multi_az,
            "AvailabilityZone": None if multi_az else d.get("AvailabilityZone"),
            "DBSubnetGroupName": (d.get("DBSubnetGroup") or {}).get("DBSubnetGroupName"),
            "VpcSecurityGroupIds": [
                g["VpcSecurityGroupId"] for g in d.get("VpcSecurityGroups", [])
            ],
            "DBParameterGroupName": next(
                (g["DBParameterGroupName"] for g in d.get("DBParameterGroups", [])), None
            ),
            "OptionGroupName": next(
                (g["OptionGroupName"] for g in d.get("OptionGroupMemberships", [])), None
            ),
            "StorageEncrypted": d.get("StorageEncrypted"),
            "KmsKeyId": d.get("KmsKeyId"),
            "DeletionProtection": bool(d.get("DeletionProtection")),
            "EnableIAMDatabaseAuthentication": bool(d.get("IAMDatabaseAuthenticationEnabled")),
            "EnableCloudwatchLogsExports": list(d.get("EnabledCloudwatchLogsExports") or []),
            "MonitoringInterval": monitoring,
            "MonitoringRoleArn": d.get("MonitoringRoleArn") if monitoring else None,
            "EnablePerformanceInsights": pi,
            "PerformanceInsightsKMSKeyId": d.get("PerformanceInsightsKMSKeyId") if pi else None,
            "PerformanceInsightsRetentionPeriod": (
                d.get("PerformanceInsightsRetentionPeriod") if pi else None
            ),
            "DatabaseInsightsMode": d.get("DatabaseInsightsMode"),
            "Tags": _tags(d.get("TagList")),
            "Port": (d.get("Endpoint") or {}).get("Port") or d.get("DbInstancePort"),
            "CACertificateIdentifier": d.get("CACertificateIdentifier"),
            "PubliclyAccessible": d.get("PubliclyAccessible"),
            "AutoMinorVersionUpgrade": d.get("AutoMinorVersionUpgrade"),
            "CopyTagsToSnapshot": d.get("CopyTagsToSnapshot"),
            "NetworkType": d.get("NetworkType"),
            "BackupRetentionPeriod": d.get("BackupRetentionPeriod"),
            "PreferredBackupWindow": d.get("PreferredBackupWindow"),
            "PreferredMaintenanceWindow": d.get("PreferredMaintenanceWindow"),
            "DedicatedLogVolume": d.get("DedicatedLogVolume"),
            "ManageMasterUserPassword": True if secret else None,
            "MasterUserSecretKmsKeyId": secret.get("KmsKeyId"),
        }
    )


def member_config(d: Mapping[str, Any], writer: bool) -> dict[str, Any]:
    """The configuration of one Aurora member instance (class, promotion tier, monitoring...)."""
    monitoring = int(d.get("MonitoringInterval") or 0)
    pi = bool(d.get("PerformanceInsightsEnabled"))
    return _drop_none(
        {
            "DBInstanceIdentifier": d["DBInstanceIdentifier"],
            "IsClusterWriter": writer,
            "DBInstanceClass": d.get("DBInstanceClass"),
            "PromotionTier": d.get("PromotionTier"),
            "AvailabilityZone": d.get("AvailabilityZone"),
            "DBParameterGroupName": next(
                (g["DBParameterGroupName"] for g in d.get("DBParameterGroups", [])), None
            ),
            "PubliclyAccessible": d.get("PubliclyAccessible"),
            "AutoMinorVersionUpgrade": d.get("AutoMinorVersionUpgrade"),
            "MonitoringInterval": monitoring,
            "MonitoringRoleArn": d.get("MonitoringRoleArn") if monitoring else None,
            "EnablePerformanceInsights": pi,
            "PerformanceInsightsKMSKeyId": d.get("PerformanceInsightsKMSKeyId") if pi else None,
            "PerformanceInsightsRetentionPeriod": (
                d.get("PerformanceInsightsRetentionPeriod") if pi else None
            ),
            "CACertificateIdentifier": d.get("CACertificateIdentifier"),
            "PreferredMaintenanceWindow": d.get("PreferredMaintenanceWindow"),
            "CopyTagsToSnapshot": d.get("CopyTagsToSnapshot"),
            "Tags": _tags(d.get("TagList")),
        }
    )


def cluster_config(c: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration of an Aurora or Multi-AZ DB cluster, as the parameters that recreate it."""
    multi_az_cluster = bool(c.get("DBClusterInstanceClass"))  # Multi-AZ DB cluster (not Aurora)
    monitoring = int(c.get("MonitoringInterval") or 0)
    pi = bool(c.get("PerformanceInsightsEnabled"))
    scaling = c.get("ServerlessV2ScalingConfiguration") or {}
    v1 = c.get("ScalingConfigurationInfo") or {}
    engine_mode = c.get("EngineMode")
    return _drop_none(
        {
            "Engine": c.get("Engine"),
            "EngineVersion": c.get("EngineVersion"),
            "EngineMode": engine_mode if engine_mode not in (None, "provisioned") else None,
            "Port": c.get("Port"),
            "DBSubnetGroupName": c.get("DBSubnetGroup"),
            "VpcSecurityGroupIds": [
                g["VpcSecurityGroupId"] for g in c.get("VpcSecurityGroups", [])
            ],
            "DBClusterParameterGroupName": c.get("DBClusterParameterGroup"),
            "OptionGroupName": next(
                (
                    g["DBClusterOptionGroupName"]
                    for g in c.get("DBClusterOptionGroupMemberships", [])
                ),
                None,
            ),
            "StorageEncrypted": c.get("StorageEncrypted"),
            "KmsKeyId": c.get("KmsKeyId"),
            "EnableIAMDatabaseAuthentication": bool(c.get("IAMDatabaseAuthenticationEnabled")),
            "EnableCloudwatchLogsExports": list(c.get("EnabledCloudwatchLogsExports") or []),
            "DeletionProtection": bool(c.get("DeletionProtection")),
            "CopyTagsToSnapshot": c.get("CopyTagsToSnapshot"),
            "Tags": _tags(c.get("TagList")),
            "ServerlessV2ScalingConfiguration": _drop_none(
                {
                    "MinCapacity": scaling.get("MinCapacity"),
                    "MaxCapacity": scaling.get("MaxCapacity"),
                    "SecondsUntilAutoPause": scaling.get("SecondsUntilAutoPause"),
                }
            ),
            "ScalingConfiguration": (
                _drop_none(
                    {
                        "MinCapacity": v1.get("MinCapacity"),
                        "MaxCapacity": v1.get("MaxCapacity"),
                        "AutoPause": v1.get("AutoPause"),
                        "SecondsUntilAutoPause": v1.get("SecondsUntilAutoPause"),
                        "TimeoutAction": v1.get("TimeoutAction"),
                    }
                )
                if engine_mode == "serverless"
                else None
            ),
            "BacktrackWindow": c.get("BacktrackWindow") or None,
            "StorageType": c.get("StorageType"),
            "Iops": c.get("Iops") if multi_az_cluster else None,
            "AllocatedStorage": c.get("AllocatedStorage") if multi_az_cluster else None,
            "DBClusterInstanceClass": c.get("DBClusterInstanceClass"),
            "PubliclyAccessible": c.get("PubliclyAccessible") if multi_az_cluster else None,
            "NetworkType": c.get("NetworkType"),
            "BackupRetentionPeriod": c.get("BackupRetentionPeriod"),
            "PreferredBackupWindow": c.get("PreferredBackupWindow"),
            "PreferredMaintenanceWindow": c.get("PreferredMaintenanceWindow"),
            "MonitoringInterval": monitoring if multi_az_cluster else None,
            "MonitoringRoleArn": c.get("MonitoringRoleArn") if monitoring else None,
            "EnablePerformanceInsights": pi if multi_az_cluster else None,
            "PerformanceInsightsKMSKeyId": c.get("PerformanceInsightsKMSKeyId") if pi else None,
            "PerformanceInsightsRetentionPeriod": (
                c.get("PerformanceInsightsRetentionPeriod") if pi else None
            ),
            "AssociatedRoles": [
                _drop_none({"RoleArn": r.get("RoleArn"), "FeatureName": r.get("FeatureName")})
                for r in c.get("AssociatedRoles") or []
            ],
            "CACertificateIdentifier": (c.get("CertificateDetails") or {}).get("CAIdentifier"),
        }
    )


class AwsInstanceBackend:
    """RDS instances and Aurora / Multi-AZ DB clusters, restored in place through a boto3 client."""

    name = "aws"

    def __init__(
        self,
        rds: Any,
        *,
        default_identifier: str | None = None,
        export: Mapping[str, Any] | None = None,
        timeout: float = 3600,
        poll: float = 30,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rds = rds
        self.default_identifier = default_identifier
        self.export = dict(export or {})
        self.timeout = timeout
        self.poll = poll
        self.sleep = sleep
        model = rds.meta.service_model
        self._params = {
            op: set(model.operation_model(op).input_shape.members)
            for op in (
                "RestoreDBInstanceFromDBSnapshot",
                "RestoreDBClusterFromSnapshot",
                "CreateDBInstance",
                "ModifyDBInstance",
                "ModifyDBCluster",
            )
        }

    # ------------------------------------------------------------------ describe helpers
    def _instance(self, identifier: str) -> dict[str, Any] | None:
        try:
            return self.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            raise

    def _cluster(self, identifier: str) -> dict[str, Any] | None:
        try:
            return self.rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            raise

    def _get(self, topology: str, identifier: str) -> dict[str, Any] | None:
        return self._cluster(identifier) if topology == "cluster" else self._instance(identifier)

    @staticmethod
    def _status(item: Mapping[str, Any] | None) -> str | None:
        if item is None:
            return None
        return str(item.get("DBInstanceStatus") or item.get("Status") or "").lower()

    def _wait(self, what: str, probe: Callable[[], tuple[bool, str]], timeout: float) -> None:
        """Poll probe() -> (done, state) until done; FAILED_STATES and the time limit raise."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while True:
            done, state = probe()
            if done:
                return
            if state in FAILED_STATES:
                raise FleetError(f"{what}: ended in state {state!r}")
            if time.monotonic() >= deadline:
                raise FleetError(f"{what}: not done within {timeout:.0f}s (last state {state!r})")
            self.sleep(self.poll)

    def _wait_available(self, topology: str, identifier: str, timeout: float | None = None) -> None:
        def probe() -> tuple[bool, str]:
            st = self._status(self._get(topology, identifier))
            return st == "available", st or "missing"

        self._wait(f"{topology} {identifier} available", probe, timeout or self.timeout)

    def _wait_gone(self, topology: str, identifier: str, timeout: float | None = None) -> None:
        def probe() -> tuple[bool, str]:
            st = self._status(self._get(topology, identifier))
            # a deleted target may pass through 'failed' on its way out: only absence counts
            return st is None, ("deleting" if st in FAILED_STATES else st or "gone")

        self._wait(f"{topology} {identifier} deleted", probe, timeout or self.timeout)

    def _wait_settled(self, topology: str, identifier: str) -> str | None:
        """Wait while a resource is in a transitional state; return its settled state (None: gone)."""
        result: dict[str, str | None] = {}

        def probe() -> tuple[bool, str]:
            st = self._status(self._get(topology, identifier))
            result["state"] = st
            return st not in BUSY_STATES, "settled" if st not in BUSY_STATES else str(st)

        self._wait(f"{topology} {identifier} settled", probe, self.timeout)
        return result.get("state")

    def _rename(self, topology: str, old: str, new: str) -> None:
        if topology == "cluster":
            self.rds.modify_db_cluster(
                DBClusterIdentifier=old, NewDBClusterIdentifier=new, ApplyImmediately=True
            )
        else:
            self.rds.modify_db_instance(
                DBInstanceIdentifier=old, NewDBInstanceIdentifier=new, ApplyImmediately=True
            )

        def probe() -> tuple[bool, str]:
            st_new = self._status(self._get(topology, new))
            st_old = self._status(self._get(topology, old))
            return (st_new == "available" and st_old is None), (st_new or st_old or "missing")

        self._wait(f"rename of {topology} {old} to {new}", probe, self.timeout)

    # ------------------------------------------------------------------ naming and checks
    def resolve_identifier(self, identifier: str | None) -> str:
        """The given identifier, else the configured one (aws.source_identifier)."""
        ident = identifier or self.default_identifier
        if not ident:
            raise InvalidRequest(
                "no identifier: give the RDS instance or cluster identifier"
                " (or set aws.source_identifier in the configuration)"
            )
        return check_rds_name("identifier", ident)

    def check_names(self, identifier: str, suffix: str) -> dict[str, Any]:
        """`<id>-old-<suffix>` (63 characters at most) and the final snapshot name."""
        renamed = renamed_identifier(identifier, suffix)
        final = final_snapshot_identifier(identifier, suffix)
        rollback = rollback_snapshot_identifier(identifier, suffix)
        check_rds_name("renamed identifier", renamed, MAX_IDENTIFIER)
        check_rds_name("final snapshot identifier", final, MAX_SNAPSHOT_IDENTIFIER)
        check_rds_name("rollback snapshot identifier", rollback, MAX_SNAPSHOT_IDENTIFIER)
        return {
            "identifier": identifier,
            "renamed": renamed,
            "final_snapshot": final,
            "rollback_snapshot": rollback,
            "suffix": suffix,
        }

    def describe(self, identifier: str) -> Described:
        """The instance or cluster (with every member) and the configuration to preserve."""
        inst = self._instance(identifier)
        if inst is not None:
            if inst.get("DBClusterIdentifier"):
                raise InvalidRequest(
                    f"{identifier} is a member of cluster {inst['DBClusterIdentifier']}:"
                    " restore the cluster instead"
                )
            return Described(
                identifier,
                "instance",
                instance_config(inst),
                [],
                {
                    "status": self._status(inst),
                    "arn": inst.get("DBInstanceArn"),
                    "endpoint": (inst.get("Endpoint") or {}).get("Address"),
                    "resource_id": inst.get("DbiResourceId"),
                },
            )
        cluster = self._cluster(identifier)
        if cluster is None:
            raise InvalidRequest(f"unknown RDS instance or cluster {identifier!r}")
        members = []
        for m in sorted(
            cluster.get("DBClusterMembers", []),
            key=lambda m: (not m.get("IsClusterWriter"), m.get("PromotionTier", 1)),
        ):
            d = self._instance(m["DBInstanceIdentifier"])
            if d is not None:
                members.append(member_config(d, bool(m.get("IsClusterWriter"))))
        return Described(
            identifier,
            "cluster",
            cluster_config(cluster),
            members,
            {
                "status": self._status(cluster),
                "arn": cluster.get("DBClusterArn"),
                "endpoint": cluster.get("Endpoint"),
                "resource_id": cluster.get("DbClusterResourceId"),
                "aurora": not cluster.get("DBClusterInstanceClass"),
            },
        )

    def _snapshot_info(self, topology: str, snapshot_id: str) -> dict[str, Any] | None:
        try:
            if topology == "cluster":
                found = self.rds.describe_db_cluster_snapshots(
                    DBClusterSnapshotIdentifier=snapshot_id
                )
                items, prefix, kind, source = (
                    found["DBClusterSnapshots"],
                    "DBClusterSnapshot",
                    "cluster-snapshot",
                    "DBClusterIdentifier",
                )
            else:
                found = self.rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)
                items, prefix, kind, source = (
                    found["DBSnapshots"],
                    "DBSnapshot",
                    "db-snapshot",
                    "DBInstanceIdentifier",
                )
            if not items:
                return None
            s = items[0]
            return {
                "id": s[f"{prefix}Identifier"],
                "arn": s.get(f"{prefix}Arn"),
                "kind": kind,
                "status": str(s.get("Status", "")).lower(),
                "source": s.get(source),
                "engine": s.get("Engine"),
                "engine_version": s.get("EngineVersion"),
                "kms_key_id": s.get("KmsKeyId"),
                "created_at": str(s.get("SnapshotCreateTime") or ""),
            }
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            raise

    def check_snapshot(self, source: Described, snapshot_id: str) -> dict[str, Any]:
        """An available snapshot of the right kind and engine; warnings for another source or key."""
        info = self._snapshot_info(source.topology, snapshot_id)
        kind = "cluster snapshot" if source.topology == "cluster" else "DB snapshot"
        if info is None:
            raise InvalidRequest(f"unknown {kind} {snapshot_id!r}")
        if info["status"] != "available":
            raise InvalidRequest(f"{kind} {snapshot_id} is {info['status']}, not available")
        if info.get("engine") and info["engine"] != source.config.get("Engine"):
            raise InvalidRequest(
                f"{kind} {snapshot_id} is of engine {info['engine']}, {source.identifier} runs"
                f" {source.config.get('Engine')}"
            )
        warnings = []
        if info.get("source") and info["source"] != source.identifier:
            warnings.append(
                f"snapshot {snapshot_id} was taken of {info['source']}, not {source.identifier}"
            )
        if (
            source.topology == "instance"
            and source.config.get("KmsKeyId")
            and info.get("kms_key_id") not in (None, source.config.get("KmsKeyId"))
        ):
            warnings.append(
                f"snapshot {snapshot_id} is encrypted with {info['kms_key_id']}: an instance restored"
                " from a DB snapshot keeps the snapshot's key (copy the snapshot with the original's"
                " key to keep it)"
            )
        if info.get("engine_version") and info["engine_version"] != source.config.get(
            "EngineVersion"
        ):
            warnings.append(
                f"snapshot {snapshot_id} is of engine version {info['engine_version']}, the original"
                f" runs {source.config.get('EngineVersion')}: the restored server runs the snapshot's"
                " version (its parameter groups must fit it)"
            )
        info["warnings"] = warnings
        return info

    def check_free(self, source: Described, names: dict[str, Any]) -> list[str]:
        """Source available; renamed names (members too) free and short enough; snapshot names free."""
        task = names.get("task")
        warnings: list[str] = []
        if source.details.get("status") != "available":
            raise InvalidRequest(
                f"{source.identifier} is {source.details.get('status')}: wait until it is available"
            )
        if task != "create_snapshot_only":
            member_names = {}
            aurora = source.details.get("aurora", True)
            if not aurora:
                warnings.append(
                    "a Multi-AZ DB cluster's member instances are managed by RDS: they are not"
                    " renamed, and the restored cluster gets new ones"
                )
            for m in source.members if aurora else []:
                new = renamed_identifier(m["DBInstanceIdentifier"], names["suffix"])
                check_rds_name("renamed member identifier", new, MAX_IDENTIFIER)
                member_names[m["DBInstanceIdentifier"]] = new
            names["member_renames"] = member_names
            taken = [
                n
                for n in [names["renamed"], *member_names.values()]
                if self._instance(n) is not None or self._cluster(n) is not None
            ]
            if taken:
                raise InvalidRequest(f"{', '.join(taken)} already exist(s): choose another suffix")
            for key in ("final_snapshot", "rollback_snapshot"):
                if names.get(key) and self._snapshot_info(source.topology, names[key]) is not None:
                    raise InvalidRequest(
                        f"snapshot {names[key]} already exists: choose another suffix"
                    )
            if source.config.get("ManageMasterUserPassword"):
                warnings.append(
                    "the master password is managed in Secrets Manager: the restored server gets a"
                    " new managed secret (its ARN changes)"
                )
        if task != "db_restore":
            wanted = names.get("snapshot_identifier") or default_snapshot_identifier(
                source.identifier
            )
            names["snapshot_identifier"] = wanted
            if self._snapshot_info(source.topology, wanted) is not None:
                raise InvalidRequest(f"snapshot {wanted} already exists")
        if names.get("export_s3"):
            self._export_settings()
        return warnings

    def _export_settings(self) -> dict[str, Any]:
        missing = [k for k in ("s3_bucket", "iam_role_arn", "kms_key_id") if not self.export.get(k)]
        if missing:
            raise InvalidRequest(
                "export to S3 needs aws.snapshot_export."
                + ", aws.snapshot_export.".join(missing)
                + " in the configuration"
            )
        return self.export

    # ------------------------------------------------------------------ snapshots
    def create_snapshot(
        self, source: Described, snapshot_identifier: str | None, record: Record, timeout: float
    ) -> dict[str, Any]:
        """Create a DB (or cluster) snapshot and wait until it is available."""
        snap_id = snapshot_identifier or default_snapshot_identifier(source.identifier)
        record(SNAPSHOT_KIND, snap_id, {"source": source.identifier, "topology": source.topology})
        if source.topology == "cluster":
            self.rds.create_db_cluster_snapshot(
                DBClusterSnapshotIdentifier=snap_id,
                DBClusterIdentifier=source.identifier,
                Tags=[CREATED_BY_TAG],
            )
        else:
            self.rds.create_db_snapshot(
                DBSnapshotIdentifier=snap_id,
                DBInstanceIdentifier=source.identifier,
                Tags=[CREATED_BY_TAG],
            )

        def probe() -> tuple[bool, str]:
            info = self._snapshot_info(source.topology, snap_id)
            st = info["status"] if info else "missing"
            return st == "available", ("failed" if st == "error" else st)

        self._wait(f"snapshot {snap_id}", probe, timeout)
        info = self._snapshot_info(source.topology, snap_id) or {"id": snap_id}
        info["warnings"] = []
        return info

    def export_snapshot(self, snapshot: dict[str, Any], timeout: float) -> dict[str, Any]:
        """StartExportTask to S3 (KMS key and role from configuration); follow it to its end."""
        cfg = self._export_settings()
        task_id = f"{snapshot['id']}-export"[:60].rstrip("-")
        params = _drop_none(
            {
                "ExportTaskIdentifier": task_id,
                "SourceArn": snapshot["arn"],
                "S3BucketName": cfg["s3_bucket"],
                "IamRoleArn": cfg["iam_role_arn"],
                "KmsKeyId": cfg["kms_key_id"],
                "S3Prefix": cfg.get("s3_prefix"),
            }
        )
        self.rds.start_export_task(**params)
        last: dict[str, Any] = {}

        def probe() -> tuple[bool, str]:
            tasks = self.rds.describe_export_tasks(ExportTaskIdentifier=task_id)["ExportTasks"]
            last.update(tasks[0] if tasks else {})
            st = str(last.get("Status", "missing")).upper()
            if st in ("FAILED", "CANCELED", "CANCELLED"):
                raise FleetError(
                    f"export {task_id} ended {st}: {last.get('FailureCause') or 'no cause given'}"
                )
            return st == "COMPLETE", st.lower()

        try:
            self._wait(f"export {task_id} to s3://{cfg['s3_bucket']}", probe, timeout)
        except FleetError as exc:
            if "not done within" in str(exc):
                raise FleetError(
                    f"{exc}: the export goes on in AWS; follow it with"
                    f" `aws rds describe-export-tasks --export-task-identifier {task_id}`"
                ) from None
            raise
        return {
            "export_task": task_id,
            "status": "complete",
            "s3": f"s3://{cfg['s3_bucket']}/{cfg.get('s3_prefix', '')}".rstrip("/"),
            "percent": last.get("PercentProgress"),
        }

    # ------------------------------------------------------------------ restore in place
    def set_aside(self, source: Described, names: dict[str, Any], record: Record) -> dict[str, Any]:
        """Rename the original (and every cluster member) to `<name>-old-<suffix>`; wait."""
        record(
            RENAMED_KIND,
            source.identifier,
            {
                "renamed": names["renamed"],
                "topology": source.topology,
                "members": names.get("member_renames", {}),
                "deletion_protection": source.config.get("DeletionProtection", False),
            },
        )
        self._rename(source.topology, source.identifier, names["renamed"])
        for old, new in names.get("member_renames", {}).items():
            self._rename("instance", old, new)
        return {"renamed": names["renamed"], "members": names.get("member_renames", {})}

    def _filtered(self, op: str, params: Mapping[str, Any]) -> dict[str, Any]:
        allowed = self._params[op]
        return {k: v for k, v in params.items() if k in allowed}

    def instance_restore_params(self, source: Described, snapshot_id: str) -> dict[str, Any]:
        """RestoreDBInstanceFromDBSnapshot parameters: the original's configuration, explicitly."""
        cfg = {k: v for k, v in source.config.items() if k not in INFORMATIONAL}
        cfg["DeletionProtection"] = False  # turned on after verification: a rollback can delete
        params = self._filtered("RestoreDBInstanceFromDBSnapshot", cfg)
        params.update(
            {"DBInstanceIdentifier": source.identifier, "DBSnapshotIdentifier": snapshot_id}
        )
        return params

    def _instance_after(self, source: Described) -> dict[str, Any]:
        restore_params = self._params["RestoreDBInstanceFromDBSnapshot"]
        after = {
            k: source.config[k]
            for k in INSTANCE_AFTER
            if k in source.config and (k not in restore_params or k == "DeletionProtection")
        }
        if not after.get("MonitoringInterval"):
            after.pop("MonitoringInterval", None)
        if not after.get("EnablePerformanceInsights"):
            after.pop("EnablePerformanceInsights", None)
        if not after.get("DeletionProtection"):
            after.pop("DeletionProtection", None)
        return self._filtered("ModifyDBInstance", after)

    def cluster_restore_params(self, source: Described, snapshot_id: str) -> dict[str, Any]:
        """RestoreDBClusterFromSnapshot parameters: the original's configuration, explicitly."""
        cfg = {k: v for k, v in source.config.items() if k not in INFORMATIONAL}
        cfg["DeletionProtection"] = False
        params = self._filtered("RestoreDBClusterFromSnapshot", cfg)
        params.update({"DBClusterIdentifier": source.identifier, "SnapshotIdentifier": snapshot_id})
        return params

    def member_create_params(self, source: Described, member: Mapping[str, Any]) -> dict[str, Any]:
        """CreateDBInstance parameters of one Aurora member (class, tier, monitoring, tags...)."""
        params = self._filtered(
            "CreateDBInstance", {k: v for k, v in member.items() if k != "IsClusterWriter"}
        )
        params.update({"DBClusterIdentifier": source.identifier, "Engine": source.config["Engine"]})
        return params

    def restore(
        self, source: Described, snapshot: dict[str, Any], names: dict[str, Any], record: Record
    ) -> dict[str, Any]:
        """Restore under the original identifier; for a cluster also its members, writer first."""
        record(
            RESTORED_KIND,
            source.identifier,
            {"snapshot": snapshot["id"], "topology": source.topology},
        )
        if source.topology == "instance":
            params = _with_restore_tag(self.instance_restore_params(source, snapshot["id"]), names)
            out = self.rds.restore_db_instance_from_db_snapshot(**params)["DBInstance"]
            return {"status": self._status(out), "parameters": sorted(params)}
        params = _with_restore_tag(self.cluster_restore_params(source, snapshot["id"]), names)
        self.rds.restore_db_cluster_from_snapshot(**params)
        self._wait_available("cluster", source.identifier)
        created = []
        if source.details.get("aurora", True):
            for member in source.members:  # described writer first
                self.rds.create_db_instance(
                    **_with_restore_tag(self.member_create_params(source, member), names)
                )
                created.append(member["DBInstanceIdentifier"])
                if member.get("IsClusterWriter"):
                    self._wait_available("instance", member["DBInstanceIdentifier"])
        return {"status": "creating", "parameters": sorted(params), "members": created}

    def wait_restored(
        self, source: Described, names: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Wait for the target and every member; apply what a restore cannot set; verify."""
        ident = source.identifier
        self._wait_available(source.topology, ident, timeout)
        if source.topology == "instance":
            after = self._instance_after(source)
            if after:
                self.rds.modify_db_instance(
                    DBInstanceIdentifier=ident, ApplyImmediately=True, **after
                )
                self._wait_available("instance", ident, timeout)
            now = self._instance(ident) or {}
            drift = _drift(source.config, instance_config(now))
            return {"status": "available", "modified_after": sorted(after), "drift": drift}
        if source.details.get("aurora", True):
            members = [m["DBInstanceIdentifier"] for m in source.members]
        else:  # a Multi-AZ DB cluster's members are created with it, under names RDS picks
            members = [
                m["DBInstanceIdentifier"]
                for m in (self._cluster(ident) or {}).get("DBClusterMembers", [])
            ]
        for member in members:
            self._wait_available("instance", member, timeout)
        after = self._filtered(
            "ModifyDBCluster",
            {k: source.config[k] for k in CLUSTER_AFTER if source.config.get(k)},
        )
        if after:
            self.rds.modify_db_cluster(DBClusterIdentifier=ident, ApplyImmediately=True, **after)
            self._wait_available("cluster", ident, timeout)
        now = self._cluster(ident) or {}
        drift = _drift(source.config, cluster_config(now))
        writers = [
            m["DBInstanceIdentifier"]
            for m in now.get("DBClusterMembers", [])
            if m.get("IsClusterWriter")
        ]
        wanted = [m["DBInstanceIdentifier"] for m in source.members if m.get("IsClusterWriter")]
        if wanted and writers != wanted:
            drift.append(f"writer is {writers}, was {wanted}")
        return {
            "status": "available",
            "members": [m["DBInstanceIdentifier"] for m in source.members],
            "modified_after": sorted(after),
            "drift": drift,
        }

    def delete_old(
        self, source: Described, names: dict[str, Any], keep_old: bool, skip_final_snapshot: bool
    ) -> dict[str, Any]:
        """Turn off deletion protection on the renamed original (proven by its resource id), then
        delete it (final snapshot)."""
        renamed = names["renamed"]
        if keep_old:
            return {"kept": renamed}
        current = self._get(source.topology, renamed)
        if current is None:
            raise FleetError(f"the renamed original {renamed} is missing")
        key = "DbClusterResourceId" if source.topology == "cluster" else "DbiResourceId"
        original = source.details.get("resource_id")
        if original and current.get(key) != original:
            raise FleetError(
                f"{renamed} has resource id {current.get(key)}, the original had {original}: it is"
                " not the server this run set aside, so it is not deleted"
            )
        final = (
            {"SkipFinalSnapshot": True}
            if skip_final_snapshot
            else {"FinalDBSnapshotIdentifier": names["final_snapshot"]}
        )
        self._unprotect(source.topology, renamed)
        if source.topology == "instance":
            self.rds.delete_db_instance(
                DBInstanceIdentifier=renamed, DeleteAutomatedBackups=False, **final
            )
            self._wait_gone("instance", renamed)
        else:
            for member in names.get("member_renames", {}).values():
                if self._instance(member) is not None:
                    self.rds.delete_db_instance(DBInstanceIdentifier=member)
            for member in names.get("member_renames", {}).values():
                self._wait_gone("instance", member)
            self.rds.delete_db_cluster(DBClusterIdentifier=renamed, **final)
            self._wait_gone("cluster", renamed)
        out: dict[str, Any] = {"deleted": renamed}
        if not skip_final_snapshot:
            snap = names["final_snapshot"]

            def probe() -> tuple[bool, str]:
                info = self._snapshot_info(source.topology, snap)
                return bool(info and info["status"] == "available"), (info or {}).get(
                    "status", "missing"
                )

            self._wait(f"final snapshot {snap}", probe, self.timeout)
            out["final_snapshot"] = snap
        return out

    def _unprotect(self, topology: str, identifier: str) -> bool:
        """Turn deletion protection off (if on) and wait; True when it was on."""
        current = self._get(topology, identifier)
        if not current or not current.get("DeletionProtection"):
            return False
        if topology == "cluster":
            self.rds.modify_db_cluster(
                DBClusterIdentifier=identifier, DeletionProtection=False, ApplyImmediately=True
            )
        else:
            self.rds.modify_db_instance(
                DBInstanceIdentifier=identifier, DeletionProtection=False, ApplyImmediately=True
            )
        self._wait_settled(topology, identifier)  # a failed target stays failed: just not busy
        return True

    def _final_snapshot_args(
        self, topology: str, identifier: str, state: str | None, snapshot: str
    ) -> dict[str, Any]:
        """FinalDBSnapshotIdentifier when the target is available (it may have served clients
        under the original's endpoint); SkipFinalSnapshot when it never became usable."""
        if state == "available" and self._snapshot_info(topology, snapshot) is None:
            return {"FinalDBSnapshotIdentifier": snapshot}
        return {"SkipFinalSnapshot": True}

    def _wait_snapshot(self, topology: str, snapshot: str) -> None:
        def probe() -> tuple[bool, str]:
            info = self._snapshot_info(topology, snapshot)
            return bool(info and info["status"] == "available"), (info or {}).get(
                "status", "missing"
            )

        self._wait(f"rollback snapshot {snapshot}", probe, self.timeout)

    def _delete_target(self, source: Described, names: dict[str, Any]) -> list[str]:
        """Delete the restored target standing under the original's name (the caller has checked
        that this run restored it and that the original stands renamed); a final snapshot of it
        first when it had become available."""
        done: list[str] = []
        ident = source.identifier
        snapshot = names.get("rollback_snapshot") or rollback_snapshot_identifier(
            ident, names["suffix"]
        )
        if source.topology == "instance":
            state = self._wait_settled("instance", ident)
            if state is not None:
                final = self._final_snapshot_args("instance", ident, state, snapshot)
                self._unprotect("instance", ident)
                self.rds.delete_db_instance(
                    DBInstanceIdentifier=ident, DeleteAutomatedBackups=False, **final
                )
                self._wait_gone("instance", ident)
                done.append(f"deleted the half-restored instance {ident}")
                if "FinalDBSnapshotIdentifier" in final:
                    self._wait_snapshot("instance", snapshot)
                    done.append(f"final snapshot {snapshot} of it taken first")
            return done
        cluster = self._cluster(ident)
        restored_members: list[str] = []
        if source.details.get("aurora", True):  # a Multi-AZ DB cluster deletes its own members
            restored_members = [
                m["DBInstanceIdentifier"] for m in (cluster or {}).get("DBClusterMembers", [])
            ]
            restored_members += [
                m["DBInstanceIdentifier"]
                for m in source.members
                if m["DBInstanceIdentifier"] not in restored_members
                and (self._instance(m["DBInstanceIdentifier"]) or {}).get("DBClusterIdentifier")
                == ident
            ]
        final: dict[str, Any] = {"SkipFinalSnapshot": True}
        if cluster is not None:  # decided before the members go: the cluster's own state
            state = self._wait_settled("cluster", ident)
            final = self._final_snapshot_args("cluster", ident, state, snapshot)
        for member in restored_members:
            if self._wait_settled("instance", member) is not None:
                self.rds.delete_db_instance(DBInstanceIdentifier=member, SkipFinalSnapshot=True)
        for member in restored_members:
            self._wait_gone("instance", member)
            done.append(f"deleted the half-restored member {member}")
        if cluster is not None:
            self._wait_settled("cluster", ident)
            self._unprotect("cluster", ident)
            self.rds.delete_db_cluster(DBClusterIdentifier=ident, **final)
            self._wait_gone("cluster", ident)
            done.append(f"deleted the half-restored cluster {ident}")
            if "FinalDBSnapshotIdentifier" in final:
                self._wait_snapshot("cluster", snapshot)
                done.append(f"final snapshot {snapshot} of it taken first")
        return done

    def rollback(
        self, source: Described, names: dict[str, Any], resources: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Delete the half-restored target, rename the original (and members) back; idempotent."""
        topo, ident, renamed = source.topology, source.identifier, names["renamed"]
        members = names.get("member_renames", {})
        restored = any(r["kind"] == RESTORED_KIND for r in resources)
        renamed_state = self._wait_settled(topo, renamed)
        actions: list[str] = []
        if renamed_state is None:
            if restored:
                return {
                    "rolled_back": False,
                    "reason": f"the original {renamed} no longer exists: the restored {ident} is kept",
                }
            # the rename never happened: the original is still under its own name
            for old, new in members.items():
                if self._wait_settled("instance", new) is not None:
                    self._rename("instance", new, old)
                    actions.append(f"renamed member {new} back to {old}")
            return {"rolled_back": True, "actions": actions or ["nothing to undo"]}
        if renamed_state == "deleting":
            return {
                "rolled_back": False,
                "reason": f"the original {renamed} is being deleted: the restored {ident} is kept",
            }
        missing = [
            old
            for old, new in members.items()
            if self._instance(new) is None
            and (self._instance(old) or {}).get("DBClusterIdentifier") != renamed
        ]
        if missing:
            return {
                "rolled_back": False,
                "reason": f"members {missing} of the original were deleted: the restored {ident} is kept",
            }
        target = self._get(topo, ident)
        if target is not None:
            owner = tag_value(target.get("TagList"))
            if not restored or not names.get("restore_id") or owner != names["restore_id"]:
                return {
                    "rolled_back": False,
                    "reason": f"{ident} does not carry {RESTORE_ID_TAG}={names.get('restore_id')}"
                    f" (it carries {owner!r}): this run did not create it, so it is left in place;"
                    f" the original is still named {renamed}",
                }
        actions += self._delete_target(source, names)
        self._rename(topo, renamed, ident)
        actions.append(f"renamed {renamed} back to {ident}")
        for old, new in members.items():
            if self._wait_settled("instance", new) is not None:
                self._rename("instance", new, old)
                actions.append(f"renamed member {new} back to {old}")
        original = self._get(topo, ident) or {}
        if source.config.get("DeletionProtection") and not original.get("DeletionProtection"):
            if topo == "cluster":
                self.rds.modify_db_cluster(
                    DBClusterIdentifier=ident, DeletionProtection=True, ApplyImmediately=True
                )
            else:
                self.rds.modify_db_instance(
                    DBInstanceIdentifier=ident, DeletionProtection=True, ApplyImmediately=True
                )
            self._wait_available(topo, ident)
            actions.append(f"turned deletion protection back on for {ident}")
        return {"rolled_back": True, "actions": actions}


def _drift(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Preserved settings the restored server does not show (for the run's metadata)."""
    out = []
    for key, value in expected.items():
        if key in INFORMATIONAL or key in ("ManageMasterUserPassword", "MasterUserSecretKmsKeyId"):
            continue
        got = actual.get(key)
        if isinstance(value, list) and isinstance(got, list):
            same = sorted(map(str, value)) == sorted(map(str, got))
        else:
            same = value == got
        if not same:
            out.append(f"{key}: expected {value!r}, got {got!r}")
    return out
