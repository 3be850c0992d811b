"""Demo restore wall time: the CLI against a launchpad run on a real dagster-webserver, with the
in-process executor (what `definitions.py` ships) and with Dagster's multiprocess executor.

One fresh demo fleet (the `make demo` tenants, 200 users per schema); each round restores
tenant_a/customer_a1 to "now" three ways, in rotating order, compare on (as the launchpad default):

- cli: `restore-assets restore ...` from process start to exit;
- ui-inprocess: GraphQL launchRun to the run's SUCCESS, webserver loading `workspace.yaml`;
- ui-multiprocess: the same with `bench/ui_multiprocess_defs.py` (every op its own process).

Medians are printed, and `ratio: X` = ui-inprocess / cli (the target is 1.5 at most).

    .venv/bin/python bench/ui_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

REPO = Path(__file__).resolve().parents[1]
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  }
}
"""
LOGS = """query L($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  ... on ExecutionStepFailureEvent { error { message } } } } } }"""
STATUS = "query S($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { ... on RepositoryLocation { repositories { name } } } } } } }"""


def gql(url: str, query: str, variables: dict | None = None) -> dict:
    """One GraphQL call; its data."""
    resp = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=60)
    resp.raise_for_status()
    return resp.json()["data"]


@contextmanager
def webserver(root: Path, home: Path, workspace: Path):
    """dagster-webserver on a free port over the fleet; yields (graphql url, location, repo)."""
    from restore_assets.backends.local.pg import free_port

    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "RESTORE_ASSETS_ROOT": str(root)}
    log = open(home / f"webserver-{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port)]
        + ["-w", str(workspace)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        for _ in range(300):
            try:
                entries = gql(url, LOCATIONS)["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    repo = entries[0]["locationOrLoadError"]["repositories"][0]["name"]
                    yield url, entries[0]["name"], repo
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise SystemExit("webserver did not load")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def ui_restore(url: str, location: str, repo: str, suffix: str) -> float:
    """Seconds from launchRun to SUCCESS of one launchpad-shaped restore."""
    point = datetime.now(UTC).isoformat()
    time.sleep(0.2)
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": repo,
            "jobName": "schema_restore",
        },
        "runConfigData": {
            "database": "tenant_a",
            "schemas": ["customer_a1"],
            "restore_time": point,
            "suffix": suffix,
        },
        "mode": "default",
    }
    t0 = time.monotonic()
    launched = gql(url, LAUNCH, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"launch failed: {launched}")
    run_id = launched["run"]["runId"]
    while True:
        status = gql(url, STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(0.25)
    seconds = time.monotonic() - t0
    if status != "SUCCESS":
        events = gql(url, LOGS, {"id": run_id})["logsForRun"]["events"]
        errors = [e["error"]["message"] for e in events if (e.get("error") or {}).get("message")]
        raise SystemExit(f"run {run_id} ended {status}: {errors}")
    return seconds


def cli_restore(root: Path, suffix: str) -> float:
    """Seconds of `restore-assets restore` from start to exit."""
    point = datetime.now(UTC).isoformat()
    time.sleep(0.2)
    t0 = time.monotonic()
    subprocess.run(
        [str(REPO / ".venv/bin/restore-assets"), "restore", "--root", str(root)]
        + ["--database", "tenant_a", "--schema", "customer_a1", "--restore-time", point]
        + ["--suffix", suffix],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - t0


def drop(root: Path, schema: str) -> None:
    """Drop one restored schema of the bench (the bench's own fleet)."""
    from restore_assets.backends.local.fleet import LocalFleet

    with psycopg.connect(LocalFleet(root).production_dsn("tenant_a"), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(schema))
        )


def main() -> None:
    """Run the rounds and print the medians."""
    from restore_assets.backends.local.fleet import LocalFleet
    from restore_assets.demo import seed

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ra-uibench-", dir="/tmp"))
    work.chmod(0o755)
    root, home = work / "fleet", work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n"
    )
    multi_ws = work / "workspace-multiprocess.yaml"
    multi_ws.write_text(
        "load_from:\n  - python_file:\n"
        f"      relative_path: {REPO / 'bench' / 'ui_multiprocess_defs.py'}\n"
        f"      working_directory: {REPO}\n"
    )
    fleet = LocalFleet(root)
    times: dict[str, list[float]] = {"cli": [], "ui-inprocess": [], "ui-multiprocess": []}
    try:
        fleet.up()
        seed(fleet.production_dsn, rows=args.rows)
        fleet.snapshot()
        n = 0
        with (
            webserver(root, home, REPO / "workspace.yaml") as inproc,
            webserver(root, home, multi_ws) as multi,
        ):
            kinds = list(times)
            for r in range(args.rounds):
                for kind in kinds[r % 3 :] + kinds[: r % 3]:
                    n += 1
                    suffix = f"b{n}"
                    if kind == "cli":
                        secs = cli_restore(root, suffix)
                    else:
                        secs = ui_restore(*(inproc if kind == "ui-inprocess" else multi), suffix)
                    drop(root, f"customer_a1_{suffix}")
                    times[kind].append(secs)
                    print(f"round {r + 1} {kind}: {secs:.1f}s", flush=True)
    finally:
        fleet.down(purge=True)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k}: median {v:.1f}s over {len(times[k])} runs")
    print(f"ratio multiprocess: {med['ui-multiprocess'] / med['cli']:.2f}")
    print(f"ratio: {med['ui-inprocess'] / med['cli']:.2f}")


if __name__ == "__main__":
    main()
