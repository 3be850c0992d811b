"""Launch `schema_restore` through the GraphQL API of a real dagster-webserver with launchpad-shaped config."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest
import requests

from tests.e2e import dagster_web
from tests.e2e.dagster_web import gql

pytestmark = pytest.mark.e2e

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}
"""
RUNS = "{ runsOrError { ... on Runs { results { runId } } } }"
LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events {
    ... on ExecutionStepFailureEvent { error { message } } } } }
}
"""


@pytest.fixture
def webserver(demo_fleet, tmp_path):
    """dagster-webserver on a free port, loading workspace.yaml, pointed at the demo fleet."""
    with dagster_web.webserver(demo_fleet.root, tmp_path) as server:
        yield server.graphql, server.location


def test_launchpad_config_runs_schema_restore(webserver, demo_fleet):
    url, location = webserver
    repo = location["locationOrLoadError"]["repositories"][0]
    assert {"schema_restore", "cleanup"} <= {j["name"] for j in repo["jobs"]}
    point = datetime.now(UTC)
    time.sleep(0.2)
    # the launchpad config is the request itself, at the top level
    run_config = {
        "database": "tenant_b",
        "schemas": ["customer_b2"],
        "restore_time": point.isoformat(),
        "suffix": "e2e",
        "compare": False,
    }
    params = {
        "selector": {
            "repositoryLocationName": location["name"],
            "repositoryName": repo["name"],
            "jobName": "schema_restore",
        },
        "runConfigData": run_config,
        "mode": "default",
    }
    # what the request model checks alone (a time without zone) is refused before a run exists
    bad = {**params, "runConfigData": {**run_config, "restore_time": "2026-01-01T00:00"}}
    # (the webserver answers a PythonError result with HTTP 500; the launchpad shows its message)
    answer = requests.post(url, json={"query": LAUNCH, "variables": {"params": bad}}, timeout=60)
    refused = answer.json()["data"]["launchRun"]
    assert refused["__typename"] == "PythonError", refused
    assert "Request refused before a run exists" in refused["message"]
    assert "has no time zone" in refused["message"]
    assert gql(url, RUNS)["runsOrError"]["results"] == []
    launched = gql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 300
    status = None
    while time.monotonic() < deadline:
        status = gql(url, STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    if status != "SUCCESS":
        events = gql(url, LOGS, {"runId": run_id})["logsForRun"]["events"]
        errors = [e["error"]["message"] for e in events if (e.get("error") or {}).get("message")]
        raise AssertionError(f"run {run_id} ended {status}: {errors}")
    with psycopg.connect(demo_fleet.production_dsn("tenant_b")) as conn:
        live = conn.execute("SELECT count(*) FROM customer_b2.users").fetchone()[0]
        restored = conn.execute("SELECT count(*) FROM customer_b2_e2e.users").fetchone()[0]
        conn.execute("DROP SCHEMA customer_b2_e2e CASCADE")
    assert restored == live
    assert demo_fleet.temp_instances() == []
