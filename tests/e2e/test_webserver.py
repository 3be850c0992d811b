"""Launch `schema_restore` through the GraphQL API of a real dagster-webserver with launchpad-shaped config."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import requests

from restore_assets.backends.local.pg import free_port
from restore_assets.backends.local.pg import port_in_use as listening

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

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
LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events {
    ... on ExecutionStepFailureEvent { error { message } } } } }
}
"""
LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { name jobs { name } } }
  ... on PythonError { message } } } } } }
"""


def _gql(url: str, query: str, variables: dict | None = None) -> dict:
    resp = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=30)
    resp.raise_for_status()
    body = resp.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def webserver(demo_fleet, tmp_path):
    """dagster-webserver on a free port, loading workspace.yaml, pointed at the demo fleet."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "RESTORE_ASSETS_ROOT": str(demo_fleet.root)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(REPO / "workspace.yaml"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "webserver.log", "w"),  # noqa: SIM115 - closed with the process
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "webserver.log").read_text()[-3000:])
            if listening(port):
                data = _gql(url, LOCATIONS)["workspaceOrError"]
                entries = data.get("locationEntries") or []
                if entries and entries[0]["loadStatus"] == "LOADED":
                    yield url, entries[0]
                    break
            time.sleep(1)
        else:
            raise AssertionError("dagster-webserver did not load the workspace in 120 s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


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
    launched = _gql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 300
    status = None
    while time.monotonic() < deadline:
        status = _gql(url, STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    if status != "SUCCESS":
        events = _gql(url, LOGS, {"runId": run_id})["logsForRun"]["events"]
        errors = [e["error"]["message"] for e in events if (e.get("error") or {}).get("message")]
        raise AssertionError(f"run {run_id} ended {status}: {errors}")
    with psycopg.connect(demo_fleet.production_dsn("tenant_b")) as conn:
        live = conn.execute("SELECT count(*) FROM customer_b2.users").fetchone()[0]
        restored = conn.execute("SELECT count(*) FROM customer_b2_e2e.users").fetchone()[0]
        conn.execute("DROP SCHEMA customer_b2_e2e CASCADE")
    assert restored == live
    assert demo_fleet.temp_instances() == []
