"""A real dagster-webserver for the e2e tests: a free port, its own DAGSTER_HOME, stopped after."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from restore_assets.backends.local.pg import free_port
from restore_assets.backends.local.pg import port_in_use as listening

REPO = Path(__file__).resolve().parents[2]

LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { name jobs { name } } }
  ... on PythonError { message } } } } } }
"""


def gql(url: str, query: str, variables: dict | None = None) -> dict:
    """One GraphQL call that must not error; its data."""
    resp = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=30)
    resp.raise_for_status()
    body = resp.json()
    assert "errors" not in body, body
    return body["data"]


@dataclass
class Webserver:
    """A running webserver: its base URL, GraphQL URL and the loaded code location entry."""

    base: str
    location: dict

    @property
    def graphql(self) -> str:
        """The GraphQL endpoint."""
        return f"{self.base}/graphql"

    @property
    def repository(self) -> str:
        """The repository's name."""
        return self.location["locationOrLoadError"]["repositories"][0]["name"]

    @property
    def address(self) -> str:
        """`repository@location`, as the UI's URLs name it."""
        return f"{self.repository}@{self.location['name']}"


@contextlib.contextmanager
def webserver(fleet_root: str | Path, tmp_path: Path, **env: str) -> Iterator[Webserver]:
    """dagster-webserver loading workspace.yaml over a fleet (runs launched in their own process)."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    port = free_port()
    environ = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RESTORE_ASSETS_ROOT": str(fleet_root),
        **env,
    }
    log_path = tmp_path / "webserver.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port)]
            + ["-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "dagster-webserver did not load in 180 s"
                if listening(port):
                    entries = gql(f"{base}/graphql", LOCATIONS)["workspaceOrError"]
                    entries = entries.get("locationEntries") or []
                    if entries and entries[0]["loadStatus"] == "LOADED":
                        break
                time.sleep(1)
            yield Webserver(base, entries[0])
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
