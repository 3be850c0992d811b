"""The temporary RDS instances and Aurora clusters of restores: restored tagged and private, found
and deleted only when they carry the restore's tag (after waiting while RDS is busy with them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from restore_assets.backends.aws.clients import error_code, is_not_found
from restore_assets.backends.aws.config import AwsConfig, tags
from restore_assets.backends.aws.ownership import OWNER_KEY, check_free, check_owned
from restore_assets.backends.aws.waits import run_waiter
from restore_assets.backends.protocols import RecordResource, RestoreTarget
from restore_assets.core.errors import FleetError

INSTANCE_RESOURCE = "rds-instance"
CLUSTER_RESOURCE = "rds-cluster"
SERVERLESS_CLASS = "db.serverless"
# states in which RDS refuses a delete (InvalidDBInstanceState / InvalidDBClusterStateFault)
BUSY = ("creating", "modifying", "backing-up", "rebooting", "starting", "upgrading", "renaming")


@dataclass
class TempRequest:
    """One restore's temporary server: its id, target, the record of what it creates, the time
    left to wait, and the run details to fill in."""

    restore_id: str
    target: RestoreTarget
    record: RecordResource
    left: Callable[[], float]
    details: dict[str, Any]


class TempServers:
    """Restores, finds and deletes the temporary servers of restores through one RDS client."""

    def __init__(self, cfg: AwsConfig, rds: Any) -> None:
        self.cfg = cfg
        self.rds = rds

    def wait(self, waiter: str, timeout: float, **params: Any) -> None:
        """botocore's RDS waiter for about timeout seconds; FleetError if it gives up."""
        run_waiter(
            self.rds,
            waiter,
            timeout,
            self.cfg.waiter_delay_s,
            lambda exc: FleetError(
                f"{waiter} for {params} not reached within {timeout:.0f}s: {exc}"
            ),
            **params,
        )

    # ------------------------------------------------------------------ find
    def tags_of(self, item: dict[str, Any], arn_key: str) -> list[dict[str, Any]]:
        """The tags of a described instance or cluster."""
        if "TagList" in item:
            return list(item["TagList"] or [])
        return self.rds.list_tags_for_resource(ResourceName=item[arn_key]).get("TagList", [])

    def instance(self, ident: str) -> dict[str, Any] | None:
        """The described instance of that identifier, if any."""
        found = self.rds.describe_db_instances(
            Filters=[{"Name": "db-instance-id", "Values": [ident]}]
        )["DBInstances"]
        return found[0] if found else None

    def cluster(self, ident: str) -> dict[str, Any] | None:
        """The described cluster of that identifier, if any."""
        found = self.rds.describe_db_clusters(
            Filters=[{"Name": "db-cluster-id", "Values": [ident]}]
        )["DBClusters"]
        return found[0] if found else None

    def check_free(self, restore_id: str, aurora: bool) -> None:
        """Refuse when a server name this restore would create is held without its tag."""
        for role in ("cluster", "writer") if aurora else ("db",):
            ident = self.cfg.temp_identifier(restore_id, role)
            if role == "cluster":
                found = self.cluster(ident)
                if found is not None:
                    check_free(
                        "RDS cluster", ident, self.tags_of(found, "DBClusterArn"), restore_id
                    )
            else:
                found = self.instance(ident)
                if found is not None:
                    check_free(
                        "RDS instance", ident, self.tags_of(found, "DBInstanceArn"), restore_id
                    )

    # ------------------------------------------------------------------ restore
    def _common(self, restore_id: str) -> dict[str, Any]:
        return {
            "VpcSecurityGroupIds": list(self.cfg.restore_security_group_ids),
            "Tags": tags(restore_id),
            "DeletionProtection": False,
        }

    def restore_instance(self, src: dict[str, Any], req: TempRequest) -> tuple[str, str, int]:
        """Restore the temporary instance of a restore (recorded first); (identifier, host, port)."""
        inst = src["instance"]
        ident = self.cfg.temp_identifier(req.restore_id, "db")
        params: dict[str, Any] = {
            "DBInstanceClass": self.cfg.temp_instance_class,
            "DBSubnetGroupName": self.cfg.restore_subnet_group,
            "PubliclyAccessible": False,
            "MultiAZ": False,
            "AutoMinorVersionUpgrade": False,
            "CopyTagsToSnapshot": False,
            **self._common(req.restore_id),
        }
        if self.cfg.parameter_group:
            params["DBParameterGroupName"] = self.cfg.parameter_group
        req.record(
            INSTANCE_RESOURCE,
            ident,
            {"source": inst["DBInstanceIdentifier"], OWNER_KEY: req.restore_id},
        )
        if req.target.snapshot_id:
            self.rds.restore_db_instance_from_db_snapshot(
                DBInstanceIdentifier=ident, DBSnapshotIdentifier=req.target.snapshot_id, **params
            )
        else:
            assert req.target.restore_time is not None
            self.rds.restore_db_instance_to_point_in_time(
                SourceDBInstanceIdentifier=inst["DBInstanceIdentifier"],
                TargetDBInstanceIdentifier=ident,
                RestoreTime=req.target.restore_time,
                **params,
            )
        self.wait("db_instance_available", req.left(), DBInstanceIdentifier=ident)
        new = self.instance(ident)
        if new is None:
            raise FleetError(f"temporary instance {ident} disappeared once available")
        req.details["instance"] = ident
        req.details["instance_class"] = self.cfg.temp_instance_class
        ep = new["Endpoint"]
        return ident, ep["Address"], int(ep.get("Port") or 5432)

    def restore_cluster(
        self, src: dict[str, Any], snapshot: dict[str, Any] | None, req: TempRequest
    ) -> tuple[str, str, int]:
        """Restore the temporary cluster and its writer (each recorded first); (id, host, port)."""
        cluster = src["cluster"]
        cid = self.cfg.temp_identifier(req.restore_id, "cluster")
        wid = self.cfg.temp_identifier(req.restore_id, "writer")
        scaling = cluster.get("ServerlessV2ScalingConfiguration")
        params: dict[str, Any] = {
            "DBSubnetGroupName": self.cfg.restore_subnet_group,
            "CopyTagsToSnapshot": False,
            **self._common(req.restore_id),
        }
        if scaling:
            params["ServerlessV2ScalingConfiguration"] = {
                k: scaling[k] for k in ("MinCapacity", "MaxCapacity") if k in scaling
            }
        if self.cfg.cluster_parameter_group:
            params["DBClusterParameterGroupName"] = self.cfg.cluster_parameter_group
        req.record(
            CLUSTER_RESOURCE,
            cid,
            {"source": cluster["DBClusterIdentifier"], "writer": wid, OWNER_KEY: req.restore_id},
        )
        if req.target.snapshot_id:
            snap = snapshot or {}
            self.rds.restore_db_cluster_from_snapshot(
                DBClusterIdentifier=cid,
                SnapshotIdentifier=req.target.snapshot_id,
                Engine=cluster["Engine"],
                EngineVersion=snap.get("EngineVersion") or cluster["EngineVersion"],
                **params,
            )
        else:
            assert req.target.restore_time is not None
            self.rds.restore_db_cluster_to_point_in_time(
                DBClusterIdentifier=cid,
                SourceDBClusterIdentifier=cluster["DBClusterIdentifier"],
                RestoreToTime=req.target.restore_time,
                RestoreType="full-copy",
                **params,
            )
        self.wait("db_cluster_available", req.left(), DBClusterIdentifier=cid)
        instance_class = SERVERLESS_CLASS if scaling else self.cfg.temp_instance_class
        writer = src.get("writer") or {}
        if writer.get("DBInstanceClass") == SERVERLESS_CLASS:
            instance_class = SERVERLESS_CLASS
        wparams: dict[str, Any] = {
            "DBInstanceIdentifier": wid,
            "DBClusterIdentifier": cid,
            "Engine": cluster["Engine"],
            "DBInstanceClass": instance_class,
            "PubliclyAccessible": False,
            "AutoMinorVersionUpgrade": False,
            "Tags": tags(req.restore_id),
        }
        if self.cfg.parameter_group:
            wparams["DBParameterGroupName"] = self.cfg.parameter_group
        req.record(INSTANCE_RESOURCE, wid, {"cluster": cid, OWNER_KEY: req.restore_id})
        self.rds.create_db_instance(**wparams)
        self.wait("db_instance_available", req.left(), DBInstanceIdentifier=wid)
        new = self.cluster(cid)
        if new is None:
            raise FleetError(f"temporary cluster {cid} disappeared once available")
        req.details.update(cluster=cid, writer=wid, instance_class=instance_class)
        return cid, new["Endpoint"], int(new.get("Port") or 5432)

    # ------------------------------------------------------------------ delete
    def delete_instance(self, ident: str, owner: str, wait: bool = False) -> None:
        """Delete a temporary instance carrying the owner's tag (waiting first while RDS is busy
        with it); missing is success."""
        found = self.instance(ident)
        if found is None:
            return
        check_owned("RDS instance", ident, self.tags_of(found, "DBInstanceArn"), owner)
        state = found.get("DBInstanceStatus")
        if state in BUSY:  # RDS refuses to delete it until it is available
            self.wait(
                "db_instance_available", self.cfg.waiter_timeout_s, DBInstanceIdentifier=ident
            )
        if state != "deleting":
            try:
                self.rds.delete_db_instance(
                    DBInstanceIdentifier=ident, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
                )
            except Exception as exc:
                if is_not_found(exc):
                    return
                if not (_already_deleting(exc) and error_code(exc) == "InvalidDBInstanceState"):
                    raise
        if wait:
            self.wait("db_instance_deleted", self.cfg.waiter_timeout_s, DBInstanceIdentifier=ident)

    def delete_cluster(self, cid: str, owner: str) -> None:
        """Delete a temporary cluster and its members once every one carries the owner's tag."""
        cluster = self.cluster(cid)
        if cluster is None:
            return
        check_owned("RDS cluster", cid, self.tags_of(cluster, "DBClusterArn"), owner)
        members = [m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])]
        for member in members:  # every member must be ours before anything is deleted
            found = self.instance(member)
            if found is not None:
                check_owned(
                    f"RDS instance (member of {cid})",
                    member,
                    self.tags_of(found, "DBInstanceArn"),
                    owner,
                )
        for member in members:
            self.delete_instance(member, owner, wait=True)
        state = cluster.get("Status")
        if state == "deleting":
            return
        if state in BUSY:
            self.wait("db_cluster_available", self.cfg.waiter_timeout_s, DBClusterIdentifier=cid)
        try:
            self.rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)
        except Exception as exc:
            if not (is_not_found(exc) or _already_deleting(exc)):
                raise


def _already_deleting(exc: BaseException) -> bool:
    return "already being deleted" in str(exc)
