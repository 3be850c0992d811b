"""The DMS objects of one restore: replication instance, endpoints and full-load tasks, each
recorded before it is created, tagged with the restore id, and deleted only with that proof."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from restore_assets.backends.aws.clients import error_code, is_not_found
from restore_assets.backends.aws.config import AwsConfig, tags
from restore_assets.backends.aws.dms.settings import table_mappings, task_settings
from restore_assets.backends.aws.ownership import (
    OWNER_KEY,
    check_free,
    check_owned,
    expected_owner,
)
from restore_assets.backends.aws.waits import WaitTimedOut, poll_until, run_waiter
from restore_assets.backends.protocols import RecordResource
from restore_assets.core.errors import CopyError, FleetError

INSTANCE_RESOURCE = "dms-replication-instance"
ENDPOINT_RESOURCE = "dms-endpoint"
TASK_RESOURCE = "dms-task"
AFTER_CONNECT = "SET session_replication_role = replica"
OK_STOP_REASONS = ("FULL_LOAD_ONLY_FINISHED", "STOPPED_AFTER_FULL_LOAD")
TABLE_OK_STATES = ("Table completed",)
# replication instance states DeleteReplicationInstance refuses (InvalidResourceStateFault)
INSTANCE_BUSY = ("creating", "modifying", "upgrading", "rebooting", "maintenance")


@dataclass(eq=False)
class DmsManager:
    """Creates, waits for and deletes the DMS objects of one restore (all tagged with its id)."""

    cfg: AwsConfig
    client: Any
    restore_id: str | None = None
    record: RecordResource | None = None
    sleep: Callable[[float], None] = time.sleep

    def bind_restore(self, restore_id: str, record: RecordResource, stage: str = "") -> DmsManager:
        """This manager bound to one restore (its id names and tags everything it creates)."""
        return replace(self, restore_id=restore_id, record=record)

    def _record(self, kind: str, ident: str, details: dict[str, Any]) -> None:
        if self.record is None:
            raise FleetError("the DMS mover is not bound to a restore: nothing may be created")
        self.record(kind, ident, details)

    # -------------------------------------------------------------- describe helpers
    def _describe(self, op: str, key: str, filters: list[dict[str, Any]]) -> list[dict]:
        try:
            return getattr(self.client, op)(Filters=filters).get(key, [])
        except Exception as exc:
            if is_not_found(exc):  # DMS answers "not found" for an empty filter match
                return []
            raise

    def replication_instance(self, restore_id: str) -> dict[str, Any] | None:
        """The replication instance of a restore, if it exists."""
        return self.instance_by_id(self.cfg.temp_identifier(restore_id, "dms"))

    def _one(self, op: str, key: str, name: str, value: str | None) -> dict[str, Any] | None:
        found = self._describe(op, key, [{"Name": name, "Values": [value]}])
        return found[0] if found else None

    def instance_by_id(self, ident: str) -> dict[str, Any] | None:
        """One replication instance by identifier, if it exists."""
        return self._one(
            "describe_replication_instances",
            "ReplicationInstances",
            "replication-instance-id",
            ident,
        )

    def endpoint(self, ident: str) -> dict[str, Any] | None:
        """One endpoint by identifier, if it exists."""
        return self._one("describe_endpoints", "Endpoints", "endpoint-id", ident)

    def task(self, *, ident: str | None = None, arn: str | None = None) -> dict[str, Any] | None:
        """One replication task by identifier or ARN, if it exists."""
        name, value = ("replication-task-arn", arn) if arn else ("replication-task-id", ident)
        return self._one("describe_replication_tasks", "ReplicationTasks", name, value)

    # -------------------------------------------------------------- ownership
    def tags_of(self, arn: str) -> list[dict[str, Any]]:
        """The tags of one DMS object."""
        return list(self.client.list_tags_for_resource(ResourceArn=arn).get("TagList", []))

    def check_identifiers_free(self, restore_id: str) -> None:
        """Refuse when the replication instance or an endpoint name this restore would create is
        held by an object without its tag (this restore's own objects are allowed)."""
        found = self.replication_instance(restore_id)
        if found is not None:
            check_free(
                "DMS replication instance",
                found["ReplicationInstanceIdentifier"],
                self.tags_of(found["ReplicationInstanceArn"]),
                restore_id,
            )
        for role in ("src", "tgt"):
            ident = self.cfg.temp_identifier(restore_id, role)
            ep = self.endpoint(ident)
            if ep is not None:
                check_free("DMS endpoint", ident, self.tags_of(ep["EndpointArn"]), restore_id)

    # -------------------------------------------------------------- replication instance
    def start_replication_instance(self, restore_id: str, record: RecordResource) -> str:
        """Create the restore's replication instance (recorded first); do not wait for it."""
        ident = self.cfg.temp_identifier(restore_id, "dms")
        existing = self.replication_instance(restore_id)
        if existing:
            tag_list = self.tags_of(existing["ReplicationInstanceArn"])
            check_free("DMS replication instance", ident, tag_list, restore_id)
            return existing["ReplicationInstanceArn"]
        record(
            INSTANCE_RESOURCE, ident, {"class": self.cfg.dms_instance_class, OWNER_KEY: restore_id}
        )
        resp = self.client.create_replication_instance(
            ReplicationInstanceIdentifier=ident,
            ReplicationInstanceClass=self.cfg.dms_instance_class,
            AllocatedStorage=self.cfg.dms_allocated_storage_gb,
            VpcSecurityGroupIds=list(self.cfg.dms_security_group_ids),
            ReplicationSubnetGroupIdentifier=self.cfg.dms_subnet_group,
            MultiAZ=False,
            PubliclyAccessible=False,
            AutoMinorVersionUpgrade=False,
            Tags=tags(restore_id),
        )
        return resp["ReplicationInstance"]["ReplicationInstanceArn"]

    def wait_replication_instance(self, timeout: float) -> str:
        """The ARN of the bound restore's replication instance once available (created if missing)."""
        assert self.restore_id is not None
        inst = self.replication_instance(self.restore_id)
        if inst is None:
            assert self.record is not None
            arn = self.start_replication_instance(self.restore_id, self.record)
        else:
            arn = inst["ReplicationInstanceArn"]
        self._wait_instance(arn, timeout)
        return arn

    def _wait_instance(self, arn: str, timeout: float) -> None:
        run_waiter(
            self.client,
            "replication_instance_available",
            timeout,
            self.cfg.waiter_delay_s,
            lambda exc: CopyError(
                f"DMS replication instance {arn} not available within {timeout:.0f}s: {exc}"
            ),
            Filters=[{"Name": "replication-instance-arn", "Values": [arn]}],
        )

    # -------------------------------------------------------------- endpoints
    def ensure_endpoint(self, role: str, secret_id: str, database: str) -> str:
        """The bound restore's source or target endpoint (credentials from Secrets Manager)."""
        assert self.restore_id is not None
        ident = self.cfg.temp_identifier(self.restore_id, "src" if role == "source" else "tgt")
        found = self.endpoint(ident)
        if found:
            check_free("DMS endpoint", ident, self.tags_of(found["EndpointArn"]), self.restore_id)
            return found["EndpointArn"]
        settings: dict[str, Any] = {
            "SecretsManagerSecretId": secret_id,
            "SecretsManagerAccessRoleArn": self.cfg.dms_secrets_role_arn,
            "DatabaseName": database,
            "ExecuteTimeout": 3600,
        }
        if role == "source":
            settings["FailTasksOnLobTruncation"] = True
        else:
            settings["AfterConnectScript"] = AFTER_CONNECT
        self._record(ENDPOINT_RESOURCE, ident, {"role": role, OWNER_KEY: self.restore_id})
        resp = self.client.create_endpoint(
            EndpointIdentifier=ident,
            EndpointType=role,
            EngineName="postgres",
            SslMode="require",
            PostgreSQLSettings=settings,
            Tags=tags(self.restore_id),
        )
        return resp["Endpoint"]["EndpointArn"]

    def _connections(self, instance_arn: str, endpoint_arn: str, filters: list) -> list[dict]:
        found = self._describe("describe_connections", "Connections", filters)
        return [
            c
            for c in found
            if c.get("EndpointArn") == endpoint_arn
            and c.get("ReplicationInstanceArn") == instance_arn
        ]

    def test_connection(self, instance_arn: str, endpoint_arn: str, timeout: float) -> None:
        """Test one endpoint from the replication instance; refuse to continue unless it succeeds."""
        filters = [
            {"Name": "endpoint-arn", "Values": [endpoint_arn]},
            {"Name": "replication-instance-arn", "Values": [instance_arn]},
        ]
        current = self._connections(instance_arn, endpoint_arn, filters)
        if current and current[0].get("Status") == "successful":
            return
        if not current or current[0].get("Status") != "testing":
            self.client.test_connection(
                ReplicationInstanceArn=instance_arn, EndpointArn=endpoint_arn
            )

        def refused(exc: Exception) -> CopyError:
            conns = self._connections(instance_arn, endpoint_arn, filters)
            status = conns[0].get("Status") if conns else "missing"
            if status == "testing":
                return CopyError(
                    f"DMS connection test of {endpoint_arn} did not finish in {timeout:.0f}s"
                )
            message = (conns[0].get("LastFailureMessage") if conns else "") or status
            return CopyError(
                f"DMS cannot connect to endpoint {endpoint_arn}: {message} — check the"
                " security groups, the secret and the DMS secrets-access role"
            )

        run_waiter(
            self.client,
            "test_connection_succeeds",
            timeout,
            self.cfg.waiter_delay_s,
            refused,
            Filters=filters,
        )

    # -------------------------------------------------------------- tasks
    def create_task(
        self,
        schema: str,
        target_schema: str,
        tables: list[str] | None,
        instance_arn: str,
        source_arn: str,
        target_arn: str,
        lob: dict[str, Any],
    ) -> str:
        """Create the full-load task of one schema (recorded first) and return its ARN."""
        assert self.restore_id is not None
        digest = hashlib.sha256(schema.encode()).hexdigest()[:10]
        ident = self.cfg.temp_identifier(self.restore_id, f"t-{digest}")
        existing = self.task(ident=ident)
        if existing:
            raise CopyError(
                f"DMS task {ident} for schema {schema} already exists: run cleanup for"
                f" {self.restore_id} before retrying"
            )
        self._record(
            TASK_RESOURCE,
            ident,
            {"schema": schema, "target_schema": target_schema, OWNER_KEY: self.restore_id},
        )
        resp = self.client.create_replication_task(
            ReplicationTaskIdentifier=ident,
            SourceEndpointArn=source_arn,
            TargetEndpointArn=target_arn,
            ReplicationInstanceArn=instance_arn,
            MigrationType="full-load",
            TableMappings=json.dumps(table_mappings(schema, target_schema, tables)),
            ReplicationTaskSettings=json.dumps(task_settings(lob)),
            Tags=tags(self.restore_id),
        )
        return resp["ReplicationTask"]["ReplicationTaskArn"]

    def _wait_task(self, arn: str, waiter: str, timeout: float) -> None:
        """Wait with a replication_task_* waiter; CopyError naming the task's state if it gives up."""

        def gave_up(exc: Exception) -> CopyError:
            task = self.task(arn=arn)
            if task is None:
                return CopyError(f"DMS task {arn} disappeared")
            status = task.get("Status")
            name = task.get("ReplicationTaskIdentifier")
            if status == "failed":
                return CopyError(
                    f"DMS task {name} failed:"
                    f" {task.get('LastFailureMessage') or task.get('StopReason') or 'no message'}"
                )
            return CopyError(
                f"DMS task {name} is {status!r} ({waiter} not reached in {timeout:.0f}s)"
            )

        filters = [{"Name": "replication-task-arn", "Values": [arn]}]
        run_waiter(self.client, waiter, timeout, self.cfg.waiter_delay_s, gave_up, Filters=filters)

    def table_statistics(self, arn: str) -> list[dict[str, Any]]:
        """Per-table statistics of a task (all pages)."""
        pages = self.client.get_paginator("describe_table_statistics").paginate(
            ReplicationTaskArn=arn, PaginationConfig={"PageSize": 500}
        )
        return [t for page in pages for t in page.get("TableStatistics", [])]

    def run_task(self, arn: str, timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Start a ready task, wait until it stops, and fail on any error or errored table."""
        started = time.monotonic()
        self._wait_task(arn, "replication_task_ready", timeout)
        self.client.start_replication_task(
            ReplicationTaskArn=arn, StartReplicationTaskType="start-replication"
        )
        left = max(1.0, timeout - (time.monotonic() - started))
        self._wait_task(arn, "replication_task_stopped", left)
        task = self.task(arn=arn)
        if task is None:
            raise CopyError(f"DMS task {arn} disappeared")
        name = task.get("ReplicationTaskIdentifier")
        reason = task.get("StopReason") or ""
        if not any(ok in reason for ok in OK_STOP_REASONS) or "ERROR" in reason.upper():
            raise CopyError(
                f"DMS task {name} stopped: {reason or 'no reason'}"
                f" {task.get('LastFailureMessage') or ''}".strip()
            )
        stats = task.get("ReplicationTaskStats") or {}
        if int(stats.get("TablesErrored") or 0):
            raise CopyError(f"DMS task {name}: {stats['TablesErrored']} table(s) errored")
        tables = self.table_statistics(arn)
        bad = [
            f"{t.get('SchemaName')}.{t.get('TableName')} ({t.get('TableState')},"
            f" {t.get('FullLoadErrorRows', 0)} error rows)"
            for t in tables
            if t.get("TableState") not in TABLE_OK_STATES or int(t.get("FullLoadErrorRows") or 0)
        ]
        if bad:
            raise CopyError(f"DMS task {name}: table(s) with errors: {', '.join(bad)}")
        return task, tables

    # -------------------------------------------------------------- deletion
    def delete_resource(self, kind: str, identifier: str, details: dict[str, Any]) -> None:
        """Delete one DMS object of a restore once its tag proves it is that restore's (NotOwned
        otherwise; tasks are stopped first); missing is success."""
        owner = expected_owner(kind, identifier, details)
        delete = {
            TASK_RESOURCE: self._delete_task,
            ENDPOINT_RESOURCE: self._delete_endpoint,
            INSTANCE_RESOURCE: self._delete_instance,
        }.get(kind)
        if delete is None:
            raise FleetError(f"unknown DMS resource kind {kind!r}")
        try:
            delete(identifier, owner)
        except Exception as exc:
            if not is_not_found(exc):
                raise

    def _delete_task(self, identifier: str, owner: str) -> None:
        task = self.task(ident=identifier)
        if task is None:
            return
        arn = task["ReplicationTaskArn"]
        check_owned("DMS task", identifier, self.tags_of(arn), owner)
        timeout = self.cfg.waiter_timeout_s
        if task.get("Status") in ("running", "starting"):
            try:
                self.client.stop_replication_task(ReplicationTaskArn=arn)
            except Exception as exc:
                if error_code(exc) != "InvalidResourceStateFault":  # stopping already
                    raise
            self._wait_gone_or(arn, ("stopped", "failed", "ready"), timeout)
        if task.get("Status") != "deleting":
            self.client.delete_replication_task(ReplicationTaskArn=arn)
        self._wait_gone_or(arn, (), timeout)

    def _delete_endpoint(self, identifier: str, owner: str) -> None:
        ep = self.endpoint(identifier)
        if ep is not None:
            check_owned("DMS endpoint", identifier, self.tags_of(ep["EndpointArn"]), owner)
            self.client.delete_endpoint(EndpointArn=ep["EndpointArn"])

    def _delete_instance(self, identifier: str, owner: str) -> None:
        found = self.instance_by_id(identifier)
        if found is None:
            return
        arn = found["ReplicationInstanceArn"]
        check_owned("DMS replication instance", identifier, self.tags_of(arn), owner)
        state = found.get("ReplicationInstanceStatus")
        if state == "deleting":
            return
        if state in INSTANCE_BUSY:  # DMS refuses to delete it until it is available: wait first
            self._wait_instance(arn, self.cfg.waiter_timeout_s)
        self.client.delete_replication_instance(ReplicationInstanceArn=arn)

    def _wait_gone_or(self, arn: str, statuses: tuple[str, ...], timeout: float) -> None:
        # no waiter: replication_task_stopped fails on 'ready'/'failed' (both fine before a delete),
        # and replication_task_deleted needs DMS's ResourceNotFoundFault (moto answers an empty list)
        try:
            poll_until(
                lambda: self.task(arn=arn),
                lambda task: task is None or task.get("Status") in statuses,
                timeout=timeout,
                delay=self.cfg.waiter_delay_s,
                sleep=self.sleep,
            )
        except WaitTimedOut as exc:
            status = exc.last.get("Status") if exc.last else None
            raise FleetError(f"DMS task {arn} still {status!r} after {timeout:.0f}s") from None
