"""The swap of a server restore: set the original aside under `<id>-old-<suffix>`, restore the
snapshot under its name (every setting passed explicitly), wait and verify, delete the original."""

from __future__ import annotations

from typing import Any

from restore_assets.backends.aws.server_restore.config import (
    CallParameters,
    cluster_config,
    drift,
    instance_config,
    with_restore_tag,
)
from restore_assets.backends.aws.server_restore.rds import Rds, status
from restore_assets.core.errors import FleetError
from restore_assets.core.server_restore.model import Described
from restore_assets.core.server_restore.protocols import InPlaceRestore, Record

RENAMED_KIND = "rds-renamed-original"
RESTORED_KIND = "rds-restored-target"


def set_aside(rds: Rds, source: Described, names: dict[str, Any], record: Record) -> dict[str, Any]:
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
    rds.rename(source.topology, source.identifier, names["renamed"])
    for old, new in names.get("member_renames", {}).items():
        rds.rename("instance", old, new)
    return {"renamed": names["renamed"], "members": names.get("member_renames", {})}


def restore(rds: Rds, params: CallParameters, job: InPlaceRestore) -> dict[str, Any]:
    """Restore under the original identifier; for a cluster also its members, writer first."""
    source, snapshot_id, names = job.source, job.snapshot["id"], job.names
    job.record(
        RESTORED_KIND, source.identifier, {"snapshot": snapshot_id, "topology": source.topology}
    )
    if source.topology == "instance":
        call = with_restore_tag(params.instance_restore(source, snapshot_id), names)
        out = rds.client.restore_db_instance_from_db_snapshot(**call)["DBInstance"]
        return {"status": status(out), "parameters": sorted(call)}
    call = with_restore_tag(params.cluster_restore(source, snapshot_id), names)
    rds.client.restore_db_cluster_from_snapshot(**call)
    rds.wait_available("cluster", source.identifier)
    created = []
    if source.details.get("aurora", True):
        for member in source.members:  # described writer first
            rds.client.create_db_instance(
                **with_restore_tag(params.member_create(source, member), names)
            )
            created.append(member["DBInstanceIdentifier"])
            if member.get("IsClusterWriter"):
                rds.wait_available("instance", member["DBInstanceIdentifier"])
    return {"status": "creating", "parameters": sorted(call), "members": created}


def _modify_after(
    rds: Rds, topology: str, ident: str, after: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Apply the settings a restore cannot take (if any) and wait until they are applied."""
    if after:
        rds.modify(topology, ident, **after)
        rds.wait_available(topology, ident, timeout)
    return after


def wait_restored(
    rds: Rds, params: CallParameters, source: Described, timeout: float
) -> dict[str, Any]:
    """Wait for the target and every member; apply what a restore cannot set; verify."""
    ident = source.identifier
    rds.wait_available(source.topology, ident, timeout)
    if source.topology == "instance":
        after = _modify_after(rds, "instance", ident, params.instance_after(source), timeout)
        now = rds.instance(ident) or {}
        found = drift(source.config, instance_config(now))
        return {"status": "available", "modified_after": sorted(after), "drift": found}
    if source.details.get("aurora", True):
        members = [m["DBInstanceIdentifier"] for m in source.members]
    else:  # a Multi-AZ DB cluster's members are created with it, under names RDS picks
        members = [
            m["DBInstanceIdentifier"]
            for m in (rds.cluster(ident) or {}).get("DBClusterMembers", [])
        ]
    for member in members:
        rds.wait_available("instance", member, timeout)
    after = _modify_after(rds, "cluster", ident, params.cluster_after(source), timeout)
    now = rds.cluster(ident) or {}
    found = drift(source.config, cluster_config(now))
    writers = [
        m["DBInstanceIdentifier"]
        for m in now.get("DBClusterMembers", [])
        if m.get("IsClusterWriter")
    ]
    wanted = [m["DBInstanceIdentifier"] for m in source.members if m.get("IsClusterWriter")]
    if wanted and writers != wanted:
        found.append(f"writer is {writers}, was {wanted}")
    return {
        "status": "available",
        "members": [m["DBInstanceIdentifier"] for m in source.members],
        "modified_after": sorted(after),
        "drift": found,
    }


def delete_old(
    rds: Rds, source: Described, names: dict[str, Any], keep_old: bool, skip_final_snapshot: bool
) -> dict[str, Any]:
    """Turn off deletion protection on the renamed original (proven by its resource id), then
    delete it (final snapshot)."""
    renamed = names["renamed"]
    if keep_old:
        return {"kept": renamed}
    current = rds.get(source.topology, renamed)
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
    rds.unprotect(source.topology, renamed)
    if source.topology == "instance":
        rds.client.delete_db_instance(
            DBInstanceIdentifier=renamed, DeleteAutomatedBackups=False, **final
        )
        rds.wait_gone("instance", renamed)
    else:
        for member in names.get("member_renames", {}).values():
            if rds.instance(member) is not None:
                rds.client.delete_db_instance(DBInstanceIdentifier=member)
        for member in names.get("member_renames", {}).values():
            rds.wait_gone("instance", member)
        rds.client.delete_db_cluster(DBClusterIdentifier=renamed, **final)
        rds.wait_gone("cluster", renamed)
    out: dict[str, Any] = {"deleted": renamed}
    if not skip_final_snapshot:
        rds.wait_snapshot(source.topology, names["final_snapshot"], "final snapshot")
        out["final_snapshot"] = names["final_snapshot"]
    return out
