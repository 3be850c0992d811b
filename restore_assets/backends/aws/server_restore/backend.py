"""AwsInstanceBackend: the server-restore protocol on RDS / Aurora, over one boto3 RDS client.

It describes the server and checks every name before any change, then hands each step to its
module: snapshots (check, take, export), swap (set aside, restore, wait, delete the original) and
rollback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from restore_assets.backends.aws.server_restore import rollback as rollback_
from restore_assets.backends.aws.server_restore import snapshots, swap
from restore_assets.backends.aws.server_restore.config import (
    CallParameters,
    cluster_config,
    instance_config,
    member_config,
)
from restore_assets.backends.aws.server_restore.rds import Rds, status
from restore_assets.core.errors import InvalidRequest
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
from restore_assets.core.server_restore.protocols import InPlaceRestore, Record


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
        self.rds = Rds(rds, timeout=timeout, poll=poll, sleep=sleep)
        self.params = CallParameters(rds.meta.service_model)
        self.default_identifier = default_identifier
        self.export = dict(export or {})

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
        inst = self.rds.instance(identifier)
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
                    "status": status(inst),
                    "arn": inst.get("DBInstanceArn"),
                    "endpoint": (inst.get("Endpoint") or {}).get("Address"),
                    "resource_id": inst.get("DbiResourceId"),
                },
            )
        cluster = self.rds.cluster(identifier)
        if cluster is None:
            raise InvalidRequest(f"unknown RDS instance or cluster {identifier!r}")
        members = []
        for m in sorted(
            cluster.get("DBClusterMembers", []),
            key=lambda m: (not m.get("IsClusterWriter"), m.get("PromotionTier", 1)),
        ):
            d = self.rds.instance(m["DBInstanceIdentifier"])
            if d is not None:
                members.append(member_config(d, bool(m.get("IsClusterWriter"))))
        return Described(
            identifier,
            "cluster",
            cluster_config(cluster),
            members,
            {
                "status": status(cluster),
                "arn": cluster.get("DBClusterArn"),
                "endpoint": cluster.get("Endpoint"),
                "resource_id": cluster.get("DbClusterResourceId"),
                "aurora": not cluster.get("DBClusterInstanceClass"),
            },
        )

    def check_snapshot(self, source: Described, snapshot_id: str) -> dict[str, Any]:
        """An available snapshot of the right kind and engine; warnings for another source or key."""
        return snapshots.check_snapshot(self.rds, source, snapshot_id)

    def _member_renames(self, source: Described, names: dict[str, Any]) -> list[str]:
        """names['member_renames'] of an Aurora cluster's members; warnings."""
        aurora = source.details.get("aurora", True)
        renames = {}
        for m in source.members if aurora else []:
            new = renamed_identifier(m["DBInstanceIdentifier"], names["suffix"])
            check_rds_name("renamed member identifier", new, MAX_IDENTIFIER)
            renames[m["DBInstanceIdentifier"]] = new
        names["member_renames"] = renames
        if aurora:
            return []
        return [
            "a Multi-AZ DB cluster's member instances are managed by RDS: they are not"
            " renamed, and the restored cluster gets new ones"
        ]

    def check_free(self, source: Described, names: dict[str, Any]) -> list[str]:
        """Source available; renamed names (members too) free and short enough; snapshot names free."""
        task = names.get("task")
        warnings: list[str] = []
        if source.details.get("status") != "available":
            raise InvalidRequest(
                f"{source.identifier} is {source.details.get('status')}: wait until it is available"
            )
        if task != "create_snapshot_only":
            warnings += self._member_renames(source, names)
            taken = [
                n
                for n in [names["renamed"], *names["member_renames"].values()]
                if self.rds.instance(n) is not None or self.rds.cluster(n) is not None
            ]
            if taken:
                raise InvalidRequest(f"{', '.join(taken)} already exist(s): choose another suffix")
            for key in ("final_snapshot", "rollback_snapshot"):
                if names.get(key) and self.rds.snapshot(source.topology, names[key]) is not None:
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
            if self.rds.snapshot(source.topology, wanted) is not None:
                raise InvalidRequest(f"snapshot {wanted} already exists")
        if names.get("export_s3"):
            snapshots.export_settings(self.export)
        return warnings

    # ------------------------------------------------------------------ the steps
    def create_snapshot(
        self, source: Described, snapshot_identifier: str | None, record: Record, timeout: float
    ) -> dict[str, Any]:
        """Create a DB (or cluster) snapshot and wait until it is available."""
        return snapshots.create_snapshot(self.rds, source, snapshot_identifier, record, timeout)

    def export_snapshot(self, snapshot: dict[str, Any], timeout: float) -> dict[str, Any]:
        """StartExportTask to S3 (KMS key and role from configuration); follow it to its end."""
        return snapshots.export_snapshot(self.rds, self.export, snapshot, timeout)

    def set_aside(self, source: Described, names: dict[str, Any], record: Record) -> dict[str, Any]:
        """Rename the original (and every cluster member) to `<name>-old-<suffix>`; wait."""
        return swap.set_aside(self.rds, source, names, record)

    def restore(self, job: InPlaceRestore) -> dict[str, Any]:
        """Restore under the original identifier; for a cluster also its members, writer first."""
        return swap.restore(self.rds, self.params, job)

    def wait_restored(
        self, source: Described, names: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Wait for the target and every member; apply what a restore cannot set; verify."""
        return swap.wait_restored(self.rds, self.params, source, timeout)

    def delete_old(
        self, source: Described, names: dict[str, Any], keep_old: bool, skip_final_snapshot: bool
    ) -> dict[str, Any]:
        """Delete the renamed original (proven by its resource id), with a final snapshot."""
        return swap.delete_old(self.rds, source, names, keep_old, skip_final_snapshot)

    def rollback(
        self, source: Described, names: dict[str, Any], resources: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Delete the half-restored target, rename the original (and members) back; idempotent."""
        return rollback_.rollback(self.rds, source, names, resources)
