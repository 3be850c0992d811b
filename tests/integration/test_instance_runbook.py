"""The instance restore runbook notebook, executed with papermill against a local fleet."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from restore_assets.audit import SqliteAuditLog
from restore_assets.backends.local.fleet import LocalFleet
from tests.conftest import REPO, scratch_dir

pytestmark = [pytest.mark.integration, pytest.mark.notebooks]

NOTEBOOK = REPO / "notebooks" / "instance_restore_runbook.ipynb"


def checksum(dsn: str) -> str:
    """A checksum over every row of the items table."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT md5(coalesce(string_agg(i::text, '|' ORDER BY id), '')) FROM items i"
        ).fetchone()[0]


def outputs(path: Path) -> str:
    """Every stream output and error of an executed notebook, as one text."""
    nb = json.loads(path.read_text())
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append("".join(out["text"]))
            elif out.get("output_type") == "error":
                texts.append(f"{out['ename']}: {out['evalue']}")
    return "\n".join(texts)


def marked(text: str, marker: str) -> dict:
    """The JSON printed after a marker such as RESULT_JSON:."""
    line = next(line for line in text.splitlines() if line.startswith(marker))
    return json.loads(line[len(marker) :])


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[LocalFleet, str, str]]:
    root = scratch_dir("ra-runbook-")
    fleet = LocalFleet(root / "fleet")
    fleet.up()
    try:
        with psycopg.connect(fleet.production_dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, label text)")
            conn.execute("INSERT INTO items SELECT g, 'v1' FROM generate_series(1, 50) g")
        snap = fleet.snapshot().id
        at_snapshot = checksum(fleet.production_dsn())
        with psycopg.connect(fleet.production_dsn(), autocommit=True) as conn:
            conn.execute("UPDATE items SET label = 'v2' WHERE id <= 10")
        yield fleet, snap, at_snapshot
    finally:
        fleet.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


def run(tmp_path: Path, name: str, **parameters) -> Path:
    """Execute the runbook with papermill (kernel python3); return the executed notebook's path."""
    import papermill

    out = tmp_path / name
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(REPO),
        progress_bar=False,
    )
    return out


def test_without_confirm_the_runbook_stops_before_any_change(fleet, tmp_path: Path) -> None:
    import papermill

    f, snap, _ = fleet
    datadir = f.root / "production" / "data"
    inode, before = datadir.stat().st_ino, checksum(f.production_dsn())
    with pytest.raises(papermill.PapermillExecutionError, match="confirm=True"):
        run(tmp_path, "preflight.ipynb", root=str(f.root), snapshot_id=snap)
    text = outputs(tmp_path / "preflight.ipynb")
    plan = marked(text, "PLAN_JSON: ")
    assert plan["preserved_configuration"]["port"] == f.config().port
    assert "configuration that will be preserved" in text
    assert datadir.stat().st_ino == inode and checksum(f.production_dsn()) == before
    assert not list((f.root / "production").glob("data.old-*"))
    audit = f.root / "audit.sqlite"
    assert not audit.exists() or SqliteAuditLog(audit).history() == []


def test_with_confirm_the_runbook_restores_in_place(fleet, tmp_path: Path) -> None:
    f, snap, at_snapshot = fleet
    dsn = f.production_dsn()
    path = run(tmp_path, "restore.ipynb", root=str(f.root), snapshot_id=snap, confirm=True)
    result = marked(outputs(path), "RESULT_JSON: ")
    assert result["status"] == "succeeded" and result["snapshot_id"] == snap
    assert f.production_dsn() == dsn and checksum(dsn) == at_snapshot
