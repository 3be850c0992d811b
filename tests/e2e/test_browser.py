"""A real browser (Debian's chromium driven by Playwright) on a real dagster-webserver: launch a
restore from the launchpad, see it succeed, open its report from the asset's link; launch a bad
request and read its refusal: one message, no stack trace. Screenshots go to pytest's temporary directory; with
RESTORE_ASSETS_SCREENSHOTS=docs they refresh docs/ (committed, shown in the README), so a plain
`make test` leaves the clone unchanged."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from restore_assets.backends.local.pg import free_port
from restore_assets.core.report_server import URL_ENV, report_server
from tests.e2e.dagster_web import gql, webserver

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
STATUS = "query S($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
TAGS = "query T($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }"

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def ui(demo_fleet, tmp_path_factory) -> Iterator[dict]:
    """dagster-webserver over the demo fleet plus the report server, one for the module's tests
    (each test reads only its own run); yields their addresses."""
    tmp_path = tmp_path_factory.mktemp("ui")
    # the screenshots: docs/ when refreshing them, else pytest's own temporary directory
    shots = (
        REPO / "docs"
        if os.environ.get("RESTORE_ASSETS_SCREENSHOTS") == "docs"
        else tmp_path_factory.mktemp("screenshots")
    )
    artifacts = Path(demo_fleet.root) / "artifacts"
    artifacts.mkdir(exist_ok=True)
    reports = report_server(artifacts, "127.0.0.1", free_port())
    threading.Thread(target=reports.serve_forever, daemon=True).start()
    reports_url = f"http://127.0.0.1:{reports.server_address[1]}"
    try:
        with webserver(demo_fleet.root, tmp_path, **{URL_ENV: reports_url}) as server:
            yield {
                "base": server.base,
                "address": server.address,
                "reports": reports_url,
                "shots": shots,
            }
    finally:
        reports.shutdown()
        reports.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's chromium, headless, through Playwright (no downloaded browser)."""
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open_launchpad(page, ui: dict) -> None:
    """Open schema_restore's launchpad; dismiss Dagster's first-visit community dialog."""
    page.goto(f"{ui['base']}/locations/{ui['address']}/jobs/schema_restore/playground")
    page.wait_for_selector(".CodeMirror", timeout=60_000)
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except playwright_api.TimeoutError:
        pass


def _launch(page, ui: dict, yaml_text: str, shot: str | None = None) -> str:
    """Open the launchpad, type the config, launch; the new run's id."""
    _open_launchpad(page, ui)
    page.evaluate(
        "text => document.querySelector('.CodeMirror').CodeMirror.setValue(text)", yaml_text
    )
    launch = page.get_by_role("button", name="Launch Run")
    launch.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)  # the launchpad validates the config before enabling the button
    if shot:
        page.screenshot(path=str(ui["shots"] / shot))
    launch.click()
    page.wait_for_url("**/runs/**", timeout=60_000)
    return page.url.rstrip("/").split("/runs/")[1].split("?")[0].split("/")[0]


def _wait(ui: dict, run_id: str) -> str:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = gql(f"{ui['base']}/graphql", STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not end in 600 s")


def _last_restore(fleet) -> dict:
    """The newest restore's audit summary (why a run failed, in an assertion's message)."""
    from restore_assets.backends.factory import build_services

    recent = build_services({"root": str(fleet.root)}).audit.history(1)
    return {k: recent[0].get(k) for k in ("restore_id", "status", "cause")} if recent else {}


def test_launchpad_restore_succeeds_and_its_report_opens(ui, browser, demo_fleet) -> None:
    point = datetime.now(UTC)
    time.sleep(0.2)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        # the default config the launchpad opens with is the request skeleton, every field described
        _open_launchpad(page, ui)
        page.wait_for_timeout(1500)
        skeleton = page.evaluate(
            "() => document.querySelector('.CodeMirror').CodeMirror.getValue()"
        )
        assert "restore_time" in skeleton and "snapshot_id" in skeleton, skeleton
        page.screenshot(path=str(ui["shots"] / "ui-launchpad-skeleton.png"))
        config = (
            "database: tenant_b\nschemas: [customer_b1]\n"
            f'restore_time: "{point.isoformat()}"\nsuffix: browser\n'
        )
        run_id = _launch(page, ui, config, shot="ui-launchpad.png")
        status = _wait(ui, run_id)
        assert status == "SUCCESS", _last_restore(demo_fleet)
        page.reload()
        page.get_by_text("Success").first.wait_for(timeout=60_000)
        page.screenshot(path=str(ui["shots"] / "ui-run-success.png"))
        # the report asset's materialization carries a link to the HTML report
        page.goto(f"{ui['base']}/assets/comparison_report?view=events")
        link = page.locator(f"a[href^='{ui['reports']}']").first
        link.wait_for(timeout=60_000)
        page.screenshot(path=str(ui["shots"] / "ui-report-asset.png"), full_page=True)
        with context.expect_page() as opened:
            link.click()
        report = opened.value
        report.wait_for_load_state()
        assert "customer_b1_browser" in report.content()
        report.screenshot(path=str(ui["shots"] / "ui-report.png"))
    finally:
        context.close()
        with psycopg.connect(demo_fleet.production_dsn("tenant_b"), autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS customer_b1_browser CASCADE")


def test_launchpad_bad_request_shows_its_refusal(ui, browser) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        config = (
            "database: tenant_b\nschemas: [no_such_schema]\n"
            f'restore_time: "{datetime.now(UTC).isoformat()}"\n'
        )
        run_id = _launch(page, ui, config)
        assert _wait(ui, run_id) == "FAILURE"
        page.reload()
        message = page.get_by_text("Request refused, nothing was created").first
        message.wait_for(timeout=60_000)
        page.get_by_text("Execution was interrupted").first.wait_for(
            timeout=30_000
        )  # the last event
        text = page.inner_text("body")
        assert "no_such_schema" in text
        # one message, no Python error: no stack trace, no traceback lines, no failed step
        for trace in ("Stack Trace", "Traceback", 'File "', "dagster._core", "STEP_FAILURE"):
            assert trace not in text, trace
        assert text.count("Request refused, nothing was created") == 1
        tags = gql(f"{ui['base']}/graphql", TAGS, {"id": run_id})["runOrError"]["tags"]
        assert {"key": "restore-assets/rejected", "value": "true"} in tags
        # the screenshot shows the refusal: the event log filtered to the run's failure event
        page.locator("input[placeholder^='Filter']").first.fill("type:RUN_FAILURE")
        page.keyboard.press("Enter")
        message.wait_for(state="visible", timeout=30_000)
        page.screenshot(path=str(ui["shots"] / "ui-rejected.png"))
    finally:
        context.close()
