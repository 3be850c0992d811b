"""The AWS fleet: the production RDS instance or Aurora cluster, its restore window and snapshots,
and temporary copies restored to a point in time or from a snapshot (tagged, private, bounded waits;
restored and deleted by `temp_servers`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from restore_assets.backends.aws.clients import AwsClients
from restore_assets.backends.aws.config import AwsConfig, temp_secret_name
from restore_assets.backends.aws.ownership import (
    expected_owner,
)
from restore_assets.backends.aws.secrets import SECRET_RESOURCE, SecretStore
from restore_assets.backends.aws.temp_servers import (
    CLUSTER_RESOURCE,
    INSTANCE_RESOURCE,
    TempRequest,
    TempServers,
)
from restore_assets.backends.protocols import (
    RecordResource,
    RestoreTarget,
    RestoreWindow,
    Snapshot,
    Source,
    TempDatabase,
)
from restore_assets.core.errors import FleetError, InvalidRequest

log = logging.getLogger("restore_assets.aws")

INSTANCE = "rds-instance"
AURORA = "aurora-cluster"
SUPPORTED_ENGINES = ("postgres", "aurora-postgresql")

# how check_target names the snapshots of each topology (the right kind, the wrong one, the owner key)
SNAPSHOT_WORDS = {
    AURORA: {
        "right": "DB cluster snapshot (describe-db-cluster-snapshots)",
        "wrong": "DB instance snapshot",
        "source": "Aurora cluster",
        "unknown": "cluster snapshot",
        "owner": "DBClusterIdentifier",
    },
    INSTANCE: {
        "right": "DB snapshot (describe-db-snapshots)",
        "wrong": "DB cluster snapshot",
        "source": "RDS instance",
        "unknown": "DB snapshot",
        "owner": "DBInstanceIdentifier",
    },
}

EndpointOverride = Callable[[str, int], tuple[str, int]]
"""(host, port) -> (host, port): where to really connect (tests map RDS names to local servers)."""


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


class AwsFleet:
    """Fleet over RDS: detects instance vs Aurora cluster, checks targets, provisions and deletes."""

    def __init__(
        self,
        cfg: AwsConfig,
        clients: AwsClients,
        secrets: SecretStore | None = None,
        endpoint_override: EndpointOverride | None = None,
        dms: Any = None,
        sslmode: str = "prefer",
    ) -> None:
        self.cfg = cfg
        self.clients = clients
        self.rds = clients.rds
        self.servers = TempServers(cfg, self.rds)
        self.secrets = secrets or SecretStore(clients.secretsmanager)
        self.endpoint_override = endpoint_override
        self.dms = dms
        self.sslmode = sslmode
        self._source: dict[str, Any] | None = None

    # ------------------------------------------------------------------ topology
    def _describe_source(self) -> dict[str, Any]:
        """The raw description of the source: {'topology', 'cluster'|'instance', 'writer'}."""
        if self._source is not None:
            return self._source
        ident = self.cfg.source_identifier
        clusters = self.rds.describe_db_clusters(
            Filters=[{"Name": "db-cluster-id", "Values": [ident]}]
        )["DBClusters"]
        if clusters:
            cluster = clusters[0]
            engine = cluster.get("Engine", "")
            if engine != "aurora-postgresql":
                raise InvalidRequest(
                    f"source {ident} is a {engine} DB cluster: only RDS for PostgreSQL instances"
                    " and Aurora PostgreSQL clusters are supported"
                )
            writer = None
            members = [m for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")]
            if members:
                writer = self.rds.describe_db_instances(
                    Filters=[
                        {"Name": "db-instance-id", "Values": [members[0]["DBInstanceIdentifier"]]}
                    ]
                )["DBInstances"]
                writer = writer[0] if writer else None
            self._source = {"topology": AURORA, "cluster": cluster, "writer": writer}
            return self._source
        instances = self.rds.describe_db_instances(
            Filters=[{"Name": "db-instance-id", "Values": [ident]}]
        )["DBInstances"]
        if not instances:
            raise InvalidRequest(
                f"unknown source {ident!r}: no RDS DB instance or Aurora cluster of that identifier"
                f" in region {self.rds.meta.region_name} (check aws.source_identifier)"
            )
        inst = instances[0]
        if inst.get("DBClusterIdentifier"):
            raise InvalidRequest(
                f"source {ident!r} is an instance of cluster {inst['DBClusterIdentifier']}: set"
                " aws.source_identifier to the cluster identifier"
            )
        if inst.get("Engine") not in SUPPORTED_ENGINES:
            raise InvalidRequest(
                f"source {ident} runs {inst.get('Engine')}: only PostgreSQL is supported"
            )
        self._source = {"topology": INSTANCE, "instance": inst}
        return self._source

    @property
    def topology(self) -> str:
        """'rds-instance' or 'aurora-cluster'."""
        return self._describe_source()["topology"]

    def _window(self) -> RestoreWindow:
        src = self._describe_source()
        if src["topology"] == AURORA:
            c = src["cluster"]
            return RestoreWindow(
                earliest=_utc(c.get("EarliestRestorableTime")),
                latest=_utc(c.get("LatestRestorableTime")),
            )
        inst = src["instance"]
        if int(inst.get("BackupRetentionPeriod", 1) or 0) == 0:
            return RestoreWindow(None, None)
        latest = _utc(inst.get("LatestRestorableTime"))
        earliest = None
        backups = self.rds.describe_db_instance_automated_backups(
            DBInstanceIdentifier=inst["DBInstanceIdentifier"]
        ).get("DBInstanceAutomatedBackups", [])
        resource_id = inst.get("DbiResourceId")
        for b in backups:
            if resource_id and b.get("DbiResourceId") not in (None, resource_id):
                continue  # a deleted instance of the same name
            window = b.get("RestoreWindow") or {}
            if window.get("EarliestTime"):
                earliest = _utc(window["EarliestTime"])
                latest = min(filter(None, [latest, _utc(window.get("LatestTime"))]), default=None)
        if earliest is None:
            # No RestoreWindow reported: the oldest automated snapshot starts the window.
            autos = [
                _utc(s.get("SnapshotCreateTime"))
                for s in self._instance_snapshots(snapshot_type="automated")
                if s.get("Status") == "available"
            ]
            earliest = min(filter(None, autos), default=None)
        return RestoreWindow(earliest=earliest, latest=latest)

    def _instance_snapshots(
        self, snapshot_id: str | None = None, snapshot_type: str | None = None
    ) -> list[dict[str, Any]]:
        filters = [{"Name": "db-instance-id", "Values": [self.cfg.source_identifier]}]
        if snapshot_id:
            filters = [{"Name": "db-snapshot-id", "Values": [snapshot_id]}]
        kwargs: dict[str, Any] = {"Filters": filters}
        if snapshot_type:
            kwargs["SnapshotType"] = snapshot_type
        out: list[dict[str, Any]] = []
        for page in self.rds.get_paginator("describe_db_snapshots").paginate(**kwargs):
            out += page["DBSnapshots"]
        return out

    def _cluster_snapshots(self, snapshot_id: str | None = None) -> list[dict[str, Any]]:
        filters = [{"Name": "db-cluster-id", "Values": [self.cfg.source_identifier]}]
        if snapshot_id:
            filters = [{"Name": "db-cluster-snapshot-id", "Values": [snapshot_id]}]
        out: list[dict[str, Any]] = []
        for page in self.rds.get_paginator("describe_db_cluster_snapshots").paginate(
            Filters=filters
        ):
            out += page["DBClusterSnapshots"]
        return out

    @staticmethod
    def _snapshot_point(snap: dict[str, Any]) -> datetime:
        """When a snapshot's data is from: OriginalSnapshotCreateTime (copies), else SnapshotCreateTime."""
        point = _utc(snap.get("OriginalSnapshotCreateTime")) or _utc(snap.get("SnapshotCreateTime"))
        if point is None:
            raise FleetError(f"snapshot {snap} has no creation time yet (still being created?)")
        return point

    def describe(self) -> Source:
        """Topology, engine version, restore window and snapshots of the source."""
        src = self._describe_source()
        if src["topology"] == AURORA:
            raw, id_key, kind = (
                self._cluster_snapshots(),
                "DBClusterSnapshotIdentifier",
                "cluster-snapshot",
            )
            version = src["cluster"].get("EngineVersion", "")
        else:
            raw, id_key, kind = self._instance_snapshots(), "DBSnapshotIdentifier", "db-snapshot"
            version = src["instance"].get("EngineVersion", "")
        snaps = [
            Snapshot(
                id=s[id_key],
                created_at=self._snapshot_point(s),
                size_bytes=int(s.get("AllocatedStorage") or 0) * 1024**3,
                kind=f"{kind}:{s.get('SnapshotType', 'manual')}",
            )
            for s in raw
            if s.get("SnapshotCreateTime")
        ]
        return Source(
            identifier=self.cfg.source_identifier,
            topology=src["topology"],
            engine_version=version,
            window=self._window(),
            snapshots=sorted(snaps, key=lambda s: s.created_at),
        )

    # ------------------------------------------------------------------ checks
    def check_target(self, target: RestoreTarget) -> datetime:
        """Refuse a time outside the window, an unknown snapshot or one of the wrong kind."""
        src = self._describe_source()
        ident = self.cfg.source_identifier
        if target.snapshot_id:
            sid = target.snapshot_id
            aurora = src["topology"] == AURORA
            right, wrong = (
                (self._cluster_snapshots, self._instance_snapshots)
                if aurora
                else (self._instance_snapshots, self._cluster_snapshots)
            )
            words = SNAPSHOT_WORDS[src["topology"]]
            found = right(sid)
            if not found:
                if wrong(sid):
                    raise InvalidRequest(
                        f"snapshot {sid!r} is a {words['wrong']} but source {ident} is an"
                        f" {words['source']}: give a {words['right']}"
                    )
                raise InvalidRequest(f"unknown {words['unknown']} {sid!r} of {ident}")
            snap, owner = found[0], found[0].get(words["owner"])
            if owner and owner.lower() != ident.lower():
                raise InvalidRequest(
                    f"snapshot {sid!r} is a snapshot of {owner}, not of the source {ident}"
                )
            if snap.get("Status") != "available":
                raise InvalidRequest(
                    f"snapshot {sid!r} is {snap.get('Status')!r}: wait until it is available"
                )
            return self._snapshot_point(snap)
        t = target.past_time()
        window = self._window()
        if window.earliest is None or window.latest is None:
            raise InvalidRequest(
                f"source {ident} has no point-in-time restore window (automated backups disabled?):"
                " restore from a snapshot instead"
            )
        if not window.earliest <= t <= window.latest:
            raise InvalidRequest(
                f"restore time {t.isoformat()} is outside the restore window of {ident}:"
                f" {window.earliest.isoformat()} .. {window.latest.isoformat()}"
            )
        return t

    # ------------------------------------------------------------------ connections
    def _address(self, host: str, port: int) -> tuple[str, int]:
        if self.endpoint_override is not None:
            return self.endpoint_override(host, port)
        return host, port

    def _source_endpoint(self) -> tuple[str, int]:
        src = self._describe_source()
        if src["topology"] == AURORA:
            return src["cluster"]["Endpoint"], int(src["cluster"].get("Port") or 5432)
        ep = src["instance"].get("Endpoint") or {}
        return ep["Address"], int(ep.get("Port") or 5432)

    def production_dsn(self, database: str) -> str:
        """DSN of one production database with the secret's current credentials (never log it)."""
        creds = self.secrets.current(self.cfg.secret_arn)
        host, port = creds.host, creds.port
        if not host or not port:
            host, port = self._source_endpoint()
        host, port = self._address(host, int(port))
        return creds.dsn(host, port, database, self.sslmode)

    def temp_dsn(self, db: TempDatabase, database: str) -> str:
        """DSN of one database of the temporary server, with the credentials valid at the restore point."""
        creds = self.secrets.temp(db.restore_id)
        host, port = self._address(creds.host or db.host, int(creds.port or db.port))
        return creds.dsn(host, port, database, self.sslmode)

    # ------------------------------------------------------------------ provisioning
    def prepare(self, restore_id: str, record: RecordResource) -> None:
        """Start the slow resources the run needs later (the DMS replication instance) without waiting."""
        self.check_identifiers_free(restore_id)
        if self.dms is not None:
            self.dms.start_replication_instance(restore_id, record)

    # ------------------------------------------------------------------ ownership
    def check_identifiers_free(self, restore_id: str) -> None:
        """Refuse (before any create) when an identifier this restore would create is taken by a
        resource without its tag; this restore's own resources (a retried step) are allowed."""
        self.servers.check_free(restore_id, self._describe_source()["topology"] == AURORA)
        self.secrets.check_free(temp_secret_name(restore_id), restore_id)
        if self.dms is not None:
            self.dms.check_identifiers_free(restore_id)

    def provision(
        self, restore_id: str, target: RestoreTarget, record: RecordResource, timeout: float
    ) -> TempDatabase:
        """Restore a temporary instance (or cluster + writer) at the target; create its temporary secret."""
        point = self.check_target(target)
        creds, choice = self.secrets.at(self.cfg.secret_arn, point)
        self.prepare(restore_id, record)  # checks every identifier is free first
        src = self._describe_source()
        started = time.monotonic()

        def left() -> float:
            return max(1.0, timeout - (time.monotonic() - started))

        details: dict[str, Any] = {
            "topology": src["topology"],
            "restore_point": point.isoformat(),
            "target": target.describe(),
            "secret_version": choice.version_id or "AWSCURRENT",
            "secret_fallback": choice.fallback,
        }
        if choice.warning:
            details["warning"] = choice.warning
        req = TempRequest(restore_id, target, record, left, details)
        if src["topology"] == AURORA:
            snapshot = (
                self._cluster_snapshots(target.snapshot_id)[0] if target.snapshot_id else None
            )
            ident, host, port = self.servers.restore_cluster(src, snapshot, req)
        else:
            ident, host, port = self.servers.restore_instance(src, req)
        details["secret_name"] = temp_secret_name(restore_id)
        details["secret_arn"] = self.secrets.create_temp(restore_id, creds, host, port, record)
        return TempDatabase(
            restore_id=restore_id,
            identifier=ident,
            host=host,
            port=port,
            user=creds.username,
            details=details,
        )

    # ------------------------------------------------------------------ deletion
    def delete_resource(self, kind: str, identifier: str, details: dict[str, Any]) -> None:
        """Delete one recorded resource if it carries its restore's tag (NotOwned otherwise);
        a resource already gone is success."""
        known = (INSTANCE_RESOURCE, CLUSTER_RESOURCE, SECRET_RESOURCE, "ecs-task")
        if kind not in known and not kind.startswith("dms-"):
            raise FleetError(f"the AWS fleet cannot delete a resource of kind {kind!r}")
        owner = expected_owner(kind, identifier, details)
        if kind == INSTANCE_RESOURCE:
            self.servers.delete_instance(identifier, owner)
        elif kind == CLUSTER_RESOURCE:
            self.servers.delete_cluster(identifier, owner)
        elif kind == SECRET_RESOURCE:
            self.secrets.delete(identifier, owner=owner)
        elif kind.startswith("dms-") and self.dms is not None:
            self.dms.delete_resource(kind, identifier, details)
        elif kind.startswith("dms-"):
            from restore_assets.backends.aws.dms import DmsManager

            DmsManager(self.cfg, self.clients.dms).delete_resource(kind, identifier, details)
        elif kind == "ecs-task":
            from restore_assets.backends.aws.ecs import stop_owned_task

            stop_owned_task(self.clients.ecs, identifier, details, owner)
        else:
            raise FleetError(f"the AWS fleet cannot delete a resource of kind {kind!r}")

    # ------------------------------------------------------------------ plan
    def plan_resources(self, plan: Any) -> list[dict[str, Any]]:
        """What a restore of this plan would create, with an estimate of time and cost (no mutation)."""
        from restore_assets.backends.aws.pricing import plan_resources

        return plan_resources(self, plan)
