"""Test doubles for what moto cannot do, each wrapping a real (moto) boto3 client.

- `RoutedClient`: every call goes to moto except the named operations, which go to a botocore
  `Stubber`-activated twin client (responses queued by the test).
- `EcsContainerDouble`: ECS through moto; `run_task` additionally runs the container's command in
  this process (`task_entrypoint.main` with the run_task overrides' command and environment),
  because moto starts no container. The captured stdout is written to the task's CloudWatch log
  stream (moto logs) so dagster-aws Pipes reads it like on AWS, and a non-zero exit code is set
  on moto's container so the real exit-code checks see it.
- `DmsFullLoadDouble`: DMS through moto; the task progress moto cannot produce (a task becoming
  `ready`, then `stopped` with a stop reason, and `describe_table_statistics`) comes from a
  Stubber, queued when the task is created and started. `start_replication_task` also performs
  the full load the way DMS would: it resolves the task's selection rules (DMS wildcards) against
  the source catalog, reads the endpoints' secrets, and copies the rows with the COPY mover.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import psycopg
from botocore.stub import Stubber

from restore_assets.backends.aws import task_entrypoint
from restore_assets.backends.aws.secrets import Credentials

Resolve = Callable[[str, int], tuple[str, int]]


class RoutedClient:
    """A moto client whose `stubbed` operations are answered by a shared Stubber instead."""

    def __init__(self, real: Any, stub_client: Any, stubbed: set[str]) -> None:
        self._real = real
        self._stub_client = stub_client
        self._stubbed = stubbed

    def __getattr__(self, name: str) -> Any:
        if name in self._stubbed:
            return getattr(self._stub_client, name)
        return getattr(self._real, name)


class RecordingClient:
    """A moto client that records the parameters of every call (for assertions)."""

    def __init__(
        self,
        real: Any,
        calls: list[tuple[str, dict[str, Any]]],
        fail: dict[str, Exception] | None = None,
    ) -> None:
        self._real = real
        self._calls = calls
        self._fail = fail if fail is not None else {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name.startswith("_") or not callable(attr) or name in ("get_waiter", "get_paginator"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((name, kwargs))
            if name in self._fail:
                raise self._fail[name]
            return attr(*args, **kwargs)

        return call


class DirectLauncher:
    """Delegates to the real EcsTaskLauncher; not one itself, so ops keep it instead of Pipes."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The real launcher's run (run_task, waiter, exit code)."""
        return self.launcher.run(*args, **kwargs)


def stubbed_twin(service: str, region: str = "us-east-1") -> tuple[Any, Stubber]:
    """A client of the service with an active Stubber (no call reaches moto or AWS)."""
    client = boto3.client(service, region_name=region)
    stubber = Stubber(client)
    stubber.activate()
    return client, stubber


class EcsContainerDouble:
    """ECS client: moto, plus the container really run in-process on run_task (see module doc)."""

    def __init__(self, real: Any, logs: Any, resolve: Resolve, runs: list[dict[str, Any]]) -> None:
        self._real = real
        self._logs = logs
        self._resolve = resolve
        self.runs = runs
        self.fail_modes: set[str] = set()

    def run_task(self, **params: Any) -> Any:
        """moto's run_task, then the container command in this process."""
        resp = self._real.run_task(**params)
        task = resp["tasks"][0]
        override = params["overrides"]["containerOverrides"][0]
        env = {e["name"]: e["value"] for e in override.get("environment", [])}
        command = list(override.get("command") or [])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            if command and command[0] in self.fail_modes:
                print("simulated crash of the container", flush=True)
                rc = 3
            else:
                rc = task_entrypoint.main(command, environ=env, resolve=self._resolve)
        self.runs.append({"params": params, "command": command, "env": env, "rc": rc})
        self._write_logs(
            params["taskDefinition"], override["name"], task["taskArn"], out.getvalue()
        )
        if rc != 0:
            self._set_exit_code(task["taskArn"], rc)
        return resp

    def _write_logs(self, task_definition: str, container: str, task_arn: str, text: str) -> None:
        td = self._real.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
        conf = next(
            c.get("logConfiguration") for c in td["containerDefinitions"] if c["name"] == container
        )
        group = conf["options"]["awslogs-group"]
        stream = f"{conf['options']['awslogs-stream-prefix']}/{container}/{task_arn.split('/')[-1]}"
        with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
            self._logs.create_log_group(logGroupName=group)
        self._logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000) + 1
        events = [{"timestamp": now, "message": line} for line in text.splitlines() if line]
        if events:
            self._logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    @staticmethod
    def _set_exit_code(task_arn: str, rc: int) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ecs.models import ecs_backends

        backend = ecs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        for tasks in backend.tasks.values():
            if task_arn in tasks:
                container = tasks[task_arn].containers[0]
                container.exitCode = rc
                container.runtime_id = f"runtime-{task_arn.split('/')[-1]}"
                container.reason = "simulated non-zero exit"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def dms_pattern(pattern: str) -> re.Pattern[str]:
    """The regex of a DMS table-mapping pattern: % any run, _ one char, [x] the literal x."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "[":
            j = pattern.index("]", i + 2)
            out.append(re.escape(pattern[i + 1 : j]))
            i = j + 1
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.S)


class DmsFullLoadDouble:
    """DMS client: moto, plus task progress from a Stubber and a real full load (see module doc)."""

    def __init__(
        self,
        real: Any,
        secrets: Any,
        resolve: Resolve,
        stub_client: Any,
        stubber: Stubber,
        state: dict[str, Any],
    ) -> None:
        self._real = real
        self._secrets = secrets
        self._resolve = resolve
        self._stub_client = stub_client
        self.stubber = stubber
        self.state = state  # shared across the clients of one test: in_flight, created, loads, fail

    # -- calls answered by the stub while a task is in flight -------------------------------
    def describe_replication_tasks(self, **kwargs: Any) -> Any:
        """Stubbed for a task in flight (created, not yet seen stopped); moto otherwise."""
        filters = kwargs.get("Filters") or []
        arns = [v for f in filters if f["Name"] == "replication-task-arn" for v in f["Values"]]
        if arns and arns[0] in self.state["in_flight"]:
            resp = self._stub_client.describe_replication_tasks(**kwargs)
            status = resp["ReplicationTasks"][0]["Status"]
            if status in ("stopped", "failed"):
                self.state["in_flight"].discard(arns[0])
                self.state.setdefault("finished", {})[arns[0]] = resp  # as DMS keeps reporting it
            return resp
        if arns and arns[0] in self.state.get("finished", {}):
            return self.state["finished"][arns[0]]
        return self._real.describe_replication_tasks(**kwargs)

    def delete_replication_task(self, **kwargs: Any) -> Any:
        """moto delete; a finished task is no longer reported."""
        self.state.get("finished", {}).pop(kwargs.get("ReplicationTaskArn"), None)
        self.state.setdefault("calls", []).append(("delete_replication_task", kwargs))
        return self._real.delete_replication_task(**kwargs)

    def get_waiter(self, name: str) -> Any:
        """botocore's waiter, polling through this double (so the stubbed progress is seen)."""
        return type(self._real).get_waiter(self, name)

    def get_paginator(self, name: str) -> Any:
        """botocore's paginator, calling through this double."""
        return type(self._real).get_paginator(self, name)

    def describe_table_statistics(self, **kwargs: Any) -> Any:
        """Always stubbed (moto has no table statistics)."""
        return self._stub_client.describe_table_statistics(**kwargs)

    # -- calls that queue the stub and perform the load --------------------------------------
    def create_replication_task(self, **kwargs: Any) -> Any:
        """moto create; queue 'ready' for the first describe."""
        resp = self._real.create_replication_task(**kwargs)
        task = resp["ReplicationTask"]
        arn = task["ReplicationTaskArn"]
        self.state["created"].append(kwargs)
        self.state["in_flight"].add(arn)
        self.stubber.add_response(
            "describe_replication_tasks",
            {"ReplicationTasks": [self._task(task, "ready")]},
            {"Filters": [{"Name": "replication-task-arn", "Values": [arn]}]},
        )
        return resp

    def start_replication_task(self, **kwargs: Any) -> Any:
        """moto start; the full load (COPY mover), then queue 'stopped' and table statistics."""
        resp = self._real.start_replication_task(**kwargs)
        task = resp["ReplicationTask"]
        arn = task["ReplicationTaskArn"]
        fail = self.state.get("fail")
        loaded = [] if fail == "task" else self._full_load(task)
        started = datetime.now(UTC)
        stopped = self._task(task, "stopped")
        if fail == "task":
            stopped["StopReason"] = "Stop Reason FATAL_ERROR"
            stopped["LastFailureMessage"] = "Simulated: last error on table orders"
        else:
            stopped["StopReason"] = "Stop Reason FULL_LOAD_ONLY_FINISHED"
        stopped["ReplicationTaskStats"] = {
            "FullLoadProgressPercent": 100,
            "TablesLoaded": len(loaded),
            "TablesErrored": 0,
        }
        self.stubber.add_response(
            "describe_replication_tasks",
            {"ReplicationTasks": [stopped]},
            {"Filters": [{"Name": "replication-task-arn", "Values": [arn]}]},
        )
        if fail != "task":
            stats = [
                {
                    "SchemaName": schema,
                    "TableName": t.table,
                    "FullLoadRows": t.rows,
                    "FullLoadErrorRows": 1 if fail == "table" and i == 0 else 0,
                    "TableState": "Table error"
                    if fail == "table" and i == 0
                    else "Table completed",
                    "FullLoadStartTime": started,
                    "FullLoadEndTime": datetime.now(UTC),
                }
                for i, (schema, t) in enumerate(loaded)
            ]
            self.stubber.add_response(
                "describe_table_statistics",
                {"ReplicationTaskArn": arn, "TableStatistics": stats},
                {"ReplicationTaskArn": arn, "MaxRecords": 500},
            )
        return resp

    @staticmethod
    def _task(task: dict[str, Any], status: str) -> dict[str, Any]:
        keys = (
            "ReplicationTaskIdentifier",
            "ReplicationTaskArn",
            "SourceEndpointArn",
            "TargetEndpointArn",
            "ReplicationInstanceArn",
            "MigrationType",
        )
        return {**{k: task[k] for k in keys}, "Status": status}

    def _endpoint_dsn(self, endpoint_arn: str) -> str:
        ep = self._real.describe_endpoints(
            Filters=[{"Name": "endpoint-arn", "Values": [endpoint_arn]}]
        )["Endpoints"][0]
        settings = ep["PostgreSQLSettings"]
        secret = self._secrets.get_secret_value(SecretId=settings["SecretsManagerSecretId"])
        creds = Credentials.from_secret_string(secret["SecretString"])
        host, port = self._resolve(str(creds.host), int(creds.port or 5432))
        return creds.dsn(host, port, settings["DatabaseName"])

    def _full_load(self, task: dict[str, Any]) -> list[tuple[str, Any]]:
        from restore_assets.core.mover import copy_schema

        mappings = json.loads(task["TableMappings"])
        source = self._endpoint_dsn(task["SourceEndpointArn"])
        target = self._endpoint_dsn(task["TargetEndpointArn"])
        selections = [r for r in mappings["rules"] if r["rule-type"] == "selection"]
        rename = next(r for r in mappings["rules"] if r["rule-type"] == "transformation")
        with psycopg.connect(source, autocommit=True) as conn:
            catalog = conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
                " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            ).fetchall()
        chosen: dict[str, list[str]] = {}
        for schema, table in catalog:
            for rule in selections:
                loc = rule["object-locator"]
                if dms_pattern(loc["schema-name"]).match(schema) and dms_pattern(
                    loc["table-name"]
                ).match(table):
                    chosen.setdefault(schema, []).append(table)
        self.state["loads"].append({"selected": chosen, "rename": rename["value"]})
        out = []
        for schema, tables in chosen.items():
            if not dms_pattern(rename["object-locator"]["schema-name"]).match(schema):
                continue
            report = copy_schema(source, target, schema, rename["value"], workers=2, tables=tables)
            out += [(schema, t) for t in report.tables]
        return out

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name.startswith("_") or not callable(attr) or name in ("get_waiter", "get_paginator"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.state.setdefault("calls", []).append((name, kwargs))
            return attr(*args, **kwargs)

        return call


def moto_instance(rds: Any, ident: str, tags: list[dict[str, str]] | None = None) -> None:
    """A small PostgreSQL RDS instance in moto (for tests of waits and deletes)."""
    rds.create_db_instance(
        DBInstanceIdentifier=ident,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="postgres",
        MasterUserPassword="not-used-here",
        AllocatedStorage=20,
        Tags=tags or [],
    )
