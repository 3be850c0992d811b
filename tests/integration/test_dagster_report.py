"""The comparison_report asset (a partition per tenant schema, its numbers, table, commands and link)
and the read-only report server the link points at."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import requests
from psycopg import sql

from restore_assets.backends.local.pg import free_port
from restore_assets.core.report_server import URL_ENV, report_server
from restore_assets.jobs import schema_phases
from restore_assets.jobs.report_asset import REPORT_ASSET, TENANT_SCHEMAS
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.schema_restore import schema_restore
from restore_assets.jobs.tags import DATABASE_TAG, RESTORE_POINT_TAG, SCHEMAS_TAG, TARGETS_TAG

pytestmark = pytest.mark.integration


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A report server on a free port over an artifacts directory; yields (base url, root)."""
    root = tmp_path / "artifacts"
    root.mkdir()
    yield from _serving(root)


def _serving(root: Path) -> Iterator[tuple[str, Path]]:
    server = report_server(root, "127.0.0.1", free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_the_report_server_serves_report_files_only(serve, tmp_path: Path) -> None:
    base, root = serve
    (root / "r-1").mkdir()
    (root / "r-1" / "comparison-s.html").write_text("<html>report</html>")
    (root / "r-1" / "pre.sql").write_text("CREATE SCHEMA x;")
    (tmp_path / "secret.html").write_text("outside")
    (root / "r-1" / "link.html").symlink_to(tmp_path / "secret.html")
    ok = requests.get(f"{base}/r-1/comparison-s.html", timeout=10)
    assert ok.status_code == 200 and ok.text == "<html>report</html>"
    for path in ("/", "/r-1/", "/r-1/pre.sql", "/r-1/link.html", "/../secret.html", "/r-1/x.html"):
        assert requests.get(base + path, timeout=10).status_code == 404, path
    assert requests.post(f"{base}/r-1/comparison-s.html", timeout=10).status_code == 501
    assert requests.delete(f"{base}/r-1/comparison-s.html", timeout=10).status_code == 501
    assert (root / "r-1" / "comparison-s.html").exists()


def test_a_restore_records_its_report_with_numbers_table_commands_and_a_link_that_opens(
    demo_fleet, monkeypatch
) -> None:
    servers = _serving(Path(demo_fleet.root) / "artifacts")
    Path(demo_fleet.root, "artifacts").mkdir(exist_ok=True)
    base, _root = next(servers)
    monkeypatch.setenv(URL_ENV, base)
    monkeypatch.setattr(schema_phases, "COPY_PROGRESS_SECONDS", 0.05)  # demo copies are fast
    dsn = demo_fleet.production_dsn("tenant_b")
    time.sleep(0.1)
    point = datetime.now(UTC)
    time.sleep(0.1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM customer_b1.order_items WHERE id % 5 = 0")
        deleted = conn.execute("SELECT count(*) FROM customer_b1.order_items").fetchone()[0]
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = schema_restore.execute_in_process(
            run_config={
                "database": "tenant_b",
                "schemas": ["customer_b1"],
                "restore_time": point.isoformat(),
                "suffix": "rpt",
            },
            resources={"backend": RestoreBackend(root=str(demo_fleet.root))},
            instance=instance,
        )
        assert result.success
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any(m.startswith("copy customer_b1 -> customer_b1_rpt: ") for m in messages)
        run = instance.get_run_by_id(result.run_id)
        assert run.tags[DATABASE_TAG] == "tenant_b" and run.tags[SCHEMAS_TAG] == "customer_b1"
        assert run.tags[TARGETS_TAG] == "customer_b1_rpt"
        assert datetime.fromisoformat(run.tags[RESTORE_POINT_TAG]) <= point
        assert instance.get_dynamic_partitions(TENANT_SCHEMAS.name) == ["tenant_b/customer_b1"]
        event = instance.get_latest_materialization_event(dg.AssetKey(REPORT_ASSET))
        mat = event.asset_materialization
        assert mat.partition == "tenant_b/customer_b1"
        meta = {k: v.value for k, v in mat.metadata.items()}
        assert meta["restored_schema"] == "customer_b1_rpt"
        assert meta["restore_point"] == run.tags[RESTORE_POINT_TAG]
        assert meta["rto_seconds"] > 0
        assert "| `order_items` |" in meta["tables"]
        with psycopg.connect(dsn) as conn:
            restored = conn.execute("SELECT count(*) FROM customer_b1_rpt.order_items").fetchone()[
                0
            ]
        row = next(ln for ln in meta["tables"].splitlines() if ln.startswith("| `order_items`"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:4] == [str(restored), str(deleted), str(restored - deleted)]
        assert "restore-assets recover" in meta["recover"] and "--apply" in meta["recover"]
        assert "restore-assets copy-back" in meta["recover"]
        url = meta["report"]
        assert url.startswith(base + "/") and url.endswith("comparison-customer_b1.html")
        page = requests.get(url, timeout=30)
        assert page.status_code == 200 and "customer_b1_rpt" in page.text
    finally:
        next(servers, None)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier("customer_b1_rpt")
                )
            )


def test_the_serve_reports_command_serves_a_fleet_s_reports(tmp_path: Path) -> None:
    import subprocess
    import sys

    from restore_assets.backends.local.pg import port_in_use

    (tmp_path / "artifacts" / "r-2").mkdir(parents=True)
    (tmp_path / "artifacts" / "r-2" / "comparison-s.html").write_text("<html>ok</html>")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "restore_assets.cli.main", "serve-reports", "--root", str(tmp_path)]
        + ["--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(120):
            if port_in_use(port) or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        page = requests.get(f"http://127.0.0.1:{port}/r-2/comparison-s.html", timeout=10)
        assert page.status_code == 200 and page.text == "<html>ok</html>"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "read-only" in (proc.stdout.read() if proc.stdout else "")
