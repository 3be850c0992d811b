"""The configuration of an RDS instance or cluster, as the parameters that recreate it.

describe_db_instances / describe_db_clusters answer in one shape, the restore and create calls
take another: these functions translate, keep only what a call accepts (from botocore's service
model) and report the settings the restored server does not show (drift).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from restore_assets.backends.aws.config import RESTORE_ID_TAG
from restore_assets.core.server_restore.model import Described

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
# the calls whose parameters are filtered against botocore's service model
OPERATIONS = (
    "RestoreDBInstanceFromDBSnapshot",
    "RestoreDBClusterFromSnapshot",
    "CreateDBInstance",
    "ModifyDBInstance",
    "ModifyDBCluster",
)


def drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping without None, empty lists and empty mappings (RDS refuses empty values)."""
    return {k: v for k, v in d.items() if v is not None and v != [] and v != {}}


def _tags(tag_list: list[dict[str, str]] | None) -> list[dict[str, str]]:
    return [
        t
        for t in (tag_list or [])
        if not t["Key"].startswith("aws:") and t["Key"] != RESTORE_ID_TAG
    ]


def with_restore_tag(params: dict[str, Any], names: Mapping[str, Any]) -> dict[str, Any]:
    """The create parameters plus the tag `restore-assets:restore-id=<run>` (a rollback's proof)."""
    rid = names.get("restore_id")
    if rid:
        params["Tags"] = [*params.get("Tags", []), {"Key": RESTORE_ID_TAG, "Value": str(rid)}]
    return params


def _first(items: list[dict[str, Any]] | None, key: str) -> Any:
    return next((g[key] for g in items or []), None)


def _monitoring(d: Mapping[str, Any]) -> dict[str, Any]:
    """Enhanced monitoring and Performance Insights of an instance (role and key only when on)."""
    monitoring = int(d.get("MonitoringInterval") or 0)
    pi = bool(d.get("PerformanceInsightsEnabled"))
    return {
        "MonitoringInterval": monitoring,
        "MonitoringRoleArn": d.get("MonitoringRoleArn") if monitoring else None,
        "EnablePerformanceInsights": pi,
        "PerformanceInsightsKMSKeyId": d.get("PerformanceInsightsKMSKeyId") if pi else None,
        "PerformanceInsightsRetentionPeriod": (
            d.get("PerformanceInsightsRetentionPeriod") if pi else None
        ),
    }


def instance_config(d: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration of an RDS instance, as the parameters that recreate it."""
    multi_az = bool(d.get("MultiAZ"))
    secret = d.get("MasterUserSecret") or {}
    return drop_none(
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
            "DBParameterGroupName": _first(d.get("DBParameterGroups"), "DBParameterGroupName"),
            "OptionGroupName": _first(d.get("OptionGroupMemberships"), "OptionGroupName"),
            "StorageEncrypted": d.get("StorageEncrypted"),
            "KmsKeyId": d.get("KmsKeyId"),
            "DeletionProtection": bool(d.get("DeletionProtection")),
            "EnableIAMDatabaseAuthentication": bool(d.get("IAMDatabaseAuthenticationEnabled")),
            "EnableCloudwatchLogsExports": list(d.get("EnabledCloudwatchLogsExports") or []),
            **_monitoring(d),
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
    return drop_none(
        {
            "DBInstanceIdentifier": d["DBInstanceIdentifier"],
            "IsClusterWriter": writer,
            "DBInstanceClass": d.get("DBInstanceClass"),
            "PromotionTier": d.get("PromotionTier"),
            "AvailabilityZone": d.get("AvailabilityZone"),
            "DBParameterGroupName": _first(d.get("DBParameterGroups"), "DBParameterGroupName"),
            "PubliclyAccessible": d.get("PubliclyAccessible"),
            "AutoMinorVersionUpgrade": d.get("AutoMinorVersionUpgrade"),
            **_monitoring(d),
            "CACertificateIdentifier": d.get("CACertificateIdentifier"),
            "PreferredMaintenanceWindow": d.get("PreferredMaintenanceWindow"),
            "CopyTagsToSnapshot": d.get("CopyTagsToSnapshot"),
            "Tags": _tags(d.get("TagList")),
        }
    )


def _scaling(c: Mapping[str, Any]) -> dict[str, Any]:
    """Serverless v2 capacity, and serverless v1's scaling configuration (engine mode serverless)."""
    v2 = c.get("ServerlessV2ScalingConfiguration") or {}
    v1 = c.get("ScalingConfigurationInfo") or {}
    return {
        "ServerlessV2ScalingConfiguration": drop_none(
            {k: v2.get(k) for k in ("MinCapacity", "MaxCapacity", "SecondsUntilAutoPause")}
        ),
        "ScalingConfiguration": (
            drop_none(
                {
                    k: v1.get(k)
                    for k in (
                        "MinCapacity",
                        "MaxCapacity",
                        "AutoPause",
                        "SecondsUntilAutoPause",
                        "TimeoutAction",
                    )
                }
            )
            if c.get("EngineMode") == "serverless"
            else None
        ),
    }


def cluster_config(c: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration of an Aurora or Multi-AZ DB cluster, as the parameters that recreate it."""
    multi_az_cluster = bool(c.get("DBClusterInstanceClass"))  # Multi-AZ DB cluster (not Aurora)
    monitoring = _monitoring(c)
    engine_mode = c.get("EngineMode")
    return drop_none(
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
            "OptionGroupName": _first(
                c.get("DBClusterOptionGroupMemberships"), "DBClusterOptionGroupName"
            ),
            "StorageEncrypted": c.get("StorageEncrypted"),
            "KmsKeyId": c.get("KmsKeyId"),
            "EnableIAMDatabaseAuthentication": bool(c.get("IAMDatabaseAuthenticationEnabled")),
            "EnableCloudwatchLogsExports": list(c.get("EnabledCloudwatchLogsExports") or []),
            "DeletionProtection": bool(c.get("DeletionProtection")),
            "CopyTagsToSnapshot": c.get("CopyTagsToSnapshot"),
            "Tags": _tags(c.get("TagList")),
            **_scaling(c),
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
            **monitoring,
            # a Multi-AZ DB cluster takes monitoring settings; Aurora sets them per member
            "MonitoringInterval": monitoring["MonitoringInterval"] if multi_az_cluster else None,
            "EnablePerformanceInsights": (
                monitoring["EnablePerformanceInsights"] if multi_az_cluster else None
            ),
            "AssociatedRoles": [
                drop_none({"RoleArn": r.get("RoleArn"), "FeatureName": r.get("FeatureName")})
                for r in c.get("AssociatedRoles") or []
            ],
            "CACertificateIdentifier": (c.get("CertificateDetails") or {}).get("CAIdentifier"),
        }
    )


def drift(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
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


class CallParameters:
    """The parameters of the restore, create and modify calls, built from a preserved
    configuration and kept to what each call accepts (botocore's service model)."""

    def __init__(self, service_model: Any) -> None:
        self._allowed = {
            op: set(service_model.operation_model(op).input_shape.members) for op in OPERATIONS
        }

    def filtered(self, op: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters the operation `op` accepts."""
        allowed = self._allowed[op]
        return {k: v for k, v in params.items() if k in allowed}

    def instance_restore(self, source: Described, snapshot_id: str) -> dict[str, Any]:
        """RestoreDBInstanceFromDBSnapshot parameters: the original's configuration, explicitly."""
        cfg = {k: v for k, v in source.config.items() if k not in INFORMATIONAL}
        cfg["DeletionProtection"] = False  # turned on after verification: a rollback can delete
        params = self.filtered("RestoreDBInstanceFromDBSnapshot", cfg)
        params.update(
            {"DBInstanceIdentifier": source.identifier, "DBSnapshotIdentifier": snapshot_id}
        )
        return params

    def instance_after(self, source: Described) -> dict[str, Any]:
        """ModifyDBInstance parameters for what a restore cannot set (monitoring, protection...)."""
        restore_params = self._allowed["RestoreDBInstanceFromDBSnapshot"]
        after = {
            k: source.config[k]
            for k in INSTANCE_AFTER
            if k in source.config and (k not in restore_params or k == "DeletionProtection")
        }
        for flag in ("MonitoringInterval", "EnablePerformanceInsights", "DeletionProtection"):
            if not after.get(flag):
                after.pop(flag, None)
        return self.filtered("ModifyDBInstance", after)

    def cluster_restore(self, source: Described, snapshot_id: str) -> dict[str, Any]:
        """RestoreDBClusterFromSnapshot parameters: the original's configuration, explicitly."""
        cfg = {k: v for k, v in source.config.items() if k not in INFORMATIONAL}
        cfg["DeletionProtection"] = False
        params = self.filtered("RestoreDBClusterFromSnapshot", cfg)
        params.update({"DBClusterIdentifier": source.identifier, "SnapshotIdentifier": snapshot_id})
        return params

    def cluster_after(self, source: Described) -> dict[str, Any]:
        """ModifyDBCluster parameters for what a cluster restore cannot set."""
        return self.filtered(
            "ModifyDBCluster", {k: source.config[k] for k in CLUSTER_AFTER if source.config.get(k)}
        )

    def member_create(self, source: Described, member: Mapping[str, Any]) -> dict[str, Any]:
        """CreateDBInstance parameters of one Aurora member (class, tier, monitoring, tags...)."""
        params = self.filtered(
            "CreateDBInstance", {k: v for k, v in member.items() if k != "IsClusterWriter"}
        )
        params.update({"DBClusterIdentifier": source.identifier, "Engine": source.config["Engine"]})
        return params
