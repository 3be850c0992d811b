"""The RDS calls every part of a server restore shares: describe, wait, rename, deletion protection.

Waits use botocore's RDS waiters (available, deleted, snapshot available) with the terminal
states botocore does not list added; where RDS has no waiter (a rename, "not busy any more", an
export task) the one bounded poll, `waits.poll_until`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from restore_assets.backends.aws.clients import error_code
from restore_assets.backends.aws.waits import WaitTimedOut, poll_until, run_waiter, timed_out
from restore_assets.core.errors import FleetError

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
# per topology: the waiter names and the identifier parameter of the server and of its snapshots
SERVER = {
    "instance": ("db_instance_available", "db_instance_deleted", "DBInstanceIdentifier"),
    "cluster": ("db_cluster_available", "db_cluster_deleted", "DBClusterIdentifier"),
}
SNAPSHOT = {
    "instance": ("db_snapshot_available", "DBSnapshotIdentifier"),
    "cluster": ("db_cluster_snapshot_available", "DBClusterSnapshotIdentifier"),
}


def status(item: Mapping[str, Any] | None) -> str | None:
    """The lower-cased state of a described instance, cluster or snapshot (None: it is gone)."""
    if item is None:
        return None
    return str(item.get("DBInstanceStatus") or item.get("Status") or "").lower()


@dataclass(eq=False)
class Rds:
    """One RDS client with the time limits of a server restore (timeout, poll delay, sleep)."""

    client: Any
    _: KW_ONLY
    timeout: float = 3600
    poll: float = 30
    sleep: Callable[[float], None] = time.sleep

    # ------------------------------------------------------------------ describe
    def _one(self, call: Callable[..., dict[str, Any]], key: str, **params: Any) -> Any:
        try:
            items = call(**params)[key]
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            raise
        return items[0] if items else None

    def instance(self, identifier: str) -> dict[str, Any] | None:
        """The described instance, None when there is none of that name."""
        return self._one(
            self.client.describe_db_instances, "DBInstances", DBInstanceIdentifier=identifier
        )

    def cluster(self, identifier: str) -> dict[str, Any] | None:
        """The described cluster, None when there is none of that name."""
        return self._one(
            self.client.describe_db_clusters, "DBClusters", DBClusterIdentifier=identifier
        )

    def get(self, topology: str, identifier: str) -> dict[str, Any] | None:
        """The described instance or cluster (by topology), None when missing."""
        return self.cluster(identifier) if topology == "cluster" else self.instance(identifier)

    def snapshot(self, topology: str, snapshot_id: str) -> dict[str, Any] | None:
        """A DB or cluster snapshot in one shape (id, arn, kind, status, source...), None if missing."""
        if topology == "cluster":
            s = self._one(
                self.client.describe_db_cluster_snapshots,
                "DBClusterSnapshots",
                DBClusterSnapshotIdentifier=snapshot_id,
            )
            prefix, kind, source = "DBClusterSnapshot", "cluster-snapshot", "DBClusterIdentifier"
        else:
            s = self._one(
                self.client.describe_db_snapshots, "DBSnapshots", DBSnapshotIdentifier=snapshot_id
            )
            prefix, kind, source = "DBSnapshot", "db-snapshot", "DBInstanceIdentifier"
        if s is None:
            return None
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

    # ------------------------------------------------------------------ waits
    def _waiter(
        self,
        what: str,
        name: str,
        timeout: float | None,
        state: Callable[[], str],
        **params: Any,
    ) -> None:
        """Run botocore's waiter; FleetError naming the last state when it gives up."""
        limit = timeout or self.timeout

        def gave_up(exc: WaiterError) -> FleetError:
            if timed_out(exc):
                return FleetError(f"{what}: not done within {limit:.0f}s (last state {state()!r})")
            return FleetError(f"{what}: ended in state {state()!r}")

        run_waiter(self.client, name, limit, self.poll, gave_up, **params)

    def _wait_server(
        self, topology: str, identifier: str, gone: bool, timeout: float | None
    ) -> None:
        available, deleted, param = SERVER[topology]
        self._waiter(
            f"{topology} {identifier} {'deleted' if gone else 'available'}",
            deleted if gone else available,
            timeout,
            lambda: status(self.get(topology, identifier)) or ("gone" if gone else "missing"),
            fail_states=() if gone else FAILED_STATES,
            **{param: identifier},
        )

    def wait_available(self, topology: str, identifier: str, timeout: float | None = None) -> None:
        """Wait until the instance or cluster is available; a failed state ends the wait at once."""
        self._wait_server(topology, identifier, False, timeout)

    def wait_gone(self, topology: str, identifier: str, timeout: float | None = None) -> None:
        """Wait until the instance or cluster no longer exists (a 'failed' on its way out is fine)."""
        self._wait_server(topology, identifier, True, timeout)

    def wait_snapshot(
        self, topology: str, snapshot_id: str, what: str = "snapshot", timeout: float | None = None
    ) -> None:
        """Wait until a snapshot is available (it may not be listed yet: a final snapshot)."""
        name, param = SNAPSHOT[topology]
        self._waiter(
            f"{what} {snapshot_id}",
            name,
            timeout,
            lambda: (self.snapshot(topology, snapshot_id) or {}).get("status", "missing"),
            fail_states=("error",),
            retry_errors=("DBSnapshotNotFound", "DBClusterSnapshotNotFoundFault"),
            **{param: snapshot_id},
        )

    def wait_for(self, what: str, probe: Callable[[], tuple[bool, str]]) -> None:
        """Poll probe() -> (done, state) until done (no waiter fits); a failed state or the time
        limit raises FleetError."""

        def done(result: tuple[bool, str]) -> bool:
            if not result[0] and result[1] in FAILED_STATES:
                raise FleetError(f"{what}: ended in state {result[1]!r}")
            return result[0]

        try:
            poll_until(probe, done, timeout=self.timeout, delay=self.poll, sleep=self.sleep)
        except WaitTimedOut as exc:
            raise FleetError(
                f"{what}: not done within {self.timeout:.0f}s (last state {exc.last[1]!r})"
            ) from None

    def wait_settled(self, topology: str, identifier: str) -> str | None:
        """Wait while a resource is in a transitional state; return its settled state (None: gone)."""
        seen: dict[str, str | None] = {}

        def probe() -> tuple[bool, str]:
            st = seen["state"] = status(self.get(topology, identifier))
            return st not in BUSY_STATES, "settled" if st not in BUSY_STATES else str(st)

        self.wait_for(f"{topology} {identifier} settled", probe)
        return seen.get("state")

    # ------------------------------------------------------------------ changes
    def modify(self, topology: str, identifier: str, **params: Any) -> None:
        """ModifyDBCluster or ModifyDBInstance, applied immediately."""
        if topology == "cluster":
            self.client.modify_db_cluster(
                DBClusterIdentifier=identifier, ApplyImmediately=True, **params
            )
        else:
            self.client.modify_db_instance(
                DBInstanceIdentifier=identifier, ApplyImmediately=True, **params
            )

    def rename(self, topology: str, old: str, new: str) -> None:
        """Rename an instance or cluster and wait until the new name is available, the old gone."""
        key = "NewDBClusterIdentifier" if topology == "cluster" else "NewDBInstanceIdentifier"
        self.modify(topology, old, **{key: new})

        def probe() -> tuple[bool, str]:  # two names: no botocore waiter watches both
            st_new = status(self.get(topology, new))
            st_old = status(self.get(topology, old))
            return (st_new == "available" and st_old is None), (st_new or st_old or "missing")

        self.wait_for(f"rename of {topology} {old} to {new}", probe)

    def unprotect(self, topology: str, identifier: str) -> bool:
        """Turn deletion protection off (if on) and wait; True when it was on."""
        current = self.get(topology, identifier)
        if not current or not current.get("DeletionProtection"):
            return False
        self.modify(topology, identifier, DeletionProtection=False)
        self.wait_settled(topology, identifier)  # a failed target stays failed: just not busy
        return True
