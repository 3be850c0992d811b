"""The rollback of a server restore: delete the half-restored target this run created (a final
snapshot first when it had become available) and rename the original, and its members, back."""

from __future__ import annotations

from typing import Any

from restore_assets.backends.aws.config import RESTORE_ID_TAG
from restore_assets.backends.aws.ownership import tag_value
from restore_assets.backends.aws.server_restore.rds import Rds
from restore_assets.backends.aws.server_restore.swap import RESTORED_KIND
from restore_assets.core.server_restore.model import Described, rollback_snapshot_identifier


def _final_snapshot_args(
    rds: Rds, topology: str, state: str | None, snapshot: str
) -> dict[str, Any]:
    """FinalDBSnapshotIdentifier when the target is available (it may have served clients
    under the original's endpoint); SkipFinalSnapshot when it never became usable."""
    if state == "available" and rds.snapshot(topology, snapshot) is None:
        return {"FinalDBSnapshotIdentifier": snapshot}
    return {"SkipFinalSnapshot": True}


def _delete_instance_target(rds: Rds, ident: str, snapshot: str) -> list[str]:
    state = rds.wait_settled("instance", ident)
    if state is None:
        return []
    final = _final_snapshot_args(rds, "instance", state, snapshot)
    rds.unprotect("instance", ident)
    rds.client.delete_db_instance(DBInstanceIdentifier=ident, DeleteAutomatedBackups=False, **final)
    rds.wait_gone("instance", ident)
    done = [f"deleted the half-restored instance {ident}"]
    if "FinalDBSnapshotIdentifier" in final:
        rds.wait_snapshot("instance", snapshot, "rollback snapshot")
        done.append(f"final snapshot {snapshot} of it taken first")
    return done


def _delete_cluster_target(rds: Rds, source: Described, snapshot: str) -> list[str]:
    ident = source.identifier
    cluster = rds.cluster(ident)
    restored_members: list[str] = []
    if source.details.get("aurora", True):  # a Multi-AZ DB cluster deletes its own members
        restored_members = [
            m["DBInstanceIdentifier"] for m in (cluster or {}).get("DBClusterMembers", [])
        ]
        restored_members += [
            m["DBInstanceIdentifier"]
            for m in source.members
            if m["DBInstanceIdentifier"] not in restored_members
            and (rds.instance(m["DBInstanceIdentifier"]) or {}).get("DBClusterIdentifier") == ident
        ]
    final: dict[str, Any] = {"SkipFinalSnapshot": True}
    if cluster is not None:  # decided before the members go: the cluster's own state
        final = _final_snapshot_args(rds, "cluster", rds.wait_settled("cluster", ident), snapshot)
    for member in restored_members:
        if rds.wait_settled("instance", member) is not None:
            rds.client.delete_db_instance(DBInstanceIdentifier=member, SkipFinalSnapshot=True)
    done: list[str] = []
    for member in restored_members:
        rds.wait_gone("instance", member)
        done.append(f"deleted the half-restored member {member}")
    if cluster is not None:
        rds.wait_settled("cluster", ident)
        rds.unprotect("cluster", ident)
        rds.client.delete_db_cluster(DBClusterIdentifier=ident, **final)
        rds.wait_gone("cluster", ident)
        done.append(f"deleted the half-restored cluster {ident}")
        if "FinalDBSnapshotIdentifier" in final:
            rds.wait_snapshot("cluster", snapshot, "rollback snapshot")
            done.append(f"final snapshot {snapshot} of it taken first")
    return done


def delete_target(rds: Rds, source: Described, names: dict[str, Any]) -> list[str]:
    """Delete the restored target standing under the original's name (the caller has checked
    that this run restored it and that the original stands renamed); a final snapshot of it
    first when it had become available."""
    snapshot = names.get("rollback_snapshot") or rollback_snapshot_identifier(
        source.identifier, names["suffix"]
    )
    if source.topology == "instance":
        return _delete_instance_target(rds, source.identifier, snapshot)
    return _delete_cluster_target(rds, source, snapshot)


def _rename_members_back(rds: Rds, members: dict[str, str]) -> list[str]:
    actions = []
    for old, new in members.items():
        if rds.wait_settled("instance", new) is not None:
            rds.rename("instance", new, old)
            actions.append(f"renamed member {new} back to {old}")
    return actions


def _refusal(
    rds: Rds, source: Described, names: dict[str, Any], restored: bool, renamed_state: str
) -> str | None:
    """Why the rollback must not touch anything (None: it may go on)."""
    topo, ident, renamed = source.topology, source.identifier, names["renamed"]
    if renamed_state == "deleting":
        return f"the original {renamed} is being deleted: the restored {ident} is kept"
    missing = [
        old
        for old, new in names.get("member_renames", {}).items()
        if rds.instance(new) is None
        and (rds.instance(old) or {}).get("DBClusterIdentifier") != renamed
    ]
    if missing:
        return f"members {missing} of the original were deleted: the restored {ident} is kept"
    target = rds.get(topo, ident)
    if target is None:
        return None
    owner = tag_value(target.get("TagList"))
    if not restored or not names.get("restore_id") or owner != names["restore_id"]:
        return (
            f"{ident} does not carry {RESTORE_ID_TAG}={names.get('restore_id')}"
            f" (it carries {owner!r}): this run did not create it, so it is left in place;"
            f" the original is still named {renamed}"
        )
    return None


def rollback(
    rds: Rds, source: Described, names: dict[str, Any], resources: list[dict[str, Any]]
) -> dict[str, Any]:
    """Delete the half-restored target, rename the original (and members) back; idempotent."""
    topo, ident, renamed = source.topology, source.identifier, names["renamed"]
    members = names.get("member_renames", {})
    restored = any(r["kind"] == RESTORED_KIND for r in resources)
    renamed_state = rds.wait_settled(topo, renamed)
    if renamed_state is None:
        if restored:
            return {
                "rolled_back": False,
                "reason": f"the original {renamed} no longer exists: the restored {ident} is kept",
            }
        # the rename never happened: the original is still under its own name
        return {
            "rolled_back": True,
            "actions": _rename_members_back(rds, members) or ["nothing to undo"],
        }
    reason = _refusal(rds, source, names, restored, renamed_state)
    if reason is not None:
        return {"rolled_back": False, "reason": reason}
    actions = delete_target(rds, source, names)
    rds.rename(topo, renamed, ident)
    actions.append(f"renamed {renamed} back to {ident}")
    actions += _rename_members_back(rds, members)
    original = rds.get(topo, ident) or {}
    if source.config.get("DeletionProtection") and not original.get("DeletionProtection"):
        rds.modify(topo, ident, DeletionProtection=True)
        rds.wait_available(topo, ident)
        actions.append(f"turned deletion protection back on for {ident}")
    return {"rolled_back": True, "actions": actions}
