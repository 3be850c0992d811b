"""instance_restore_runbook.ipynb, executed with papermill: the point-in-time server restore
(`restore_time`) is refused on a base-backup fleet and restores in place on a pgBackRest fleet."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from restore_assets.backends.local.fleet import LocalFleet
from tests.conftest import REPO, scratch_dir
from tests.integration.fleet_helpers import commit, execute, mark
from tests.notebooks.runbook import marked, notebook_text

pytestmark = pytest.mark.notebooks


NOTEBOOK = REPO / "restore_assets" / "notebook_files" / "instance_restore_runbook.ipynb"


def run_runbook(root: Path, out: Path, **parameters: Any) -> Path:
    """Execute the runbook with papermill (kernel python3) against the fleet under root."""
    import papermill

    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={"root": str(root), **parameters},
        kernel_name="python3",
        cwd=str(REPO),
        progress_bar=False,
    )
    return out


def test_restore_time_on_a_base_backup_fleet_is_refused_before_any_change(
    demo_fleet: LocalFleet, tmp_path: Path
) -> None:
    import papermill

    datadir = demo_fleet.root / "production" / "data"
    inode = datadir.stat().st_ino
    point = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    with pytest.raises(papermill.PapermillExecutionError, match="needs a fleet backed up by"):
        run_runbook(demo_fleet.root, tmp_path / "pitr.ipynb", restore_time=point, confirm=True)
    assert f'"restore_time": "{point}"' in notebook_text(tmp_path / "pitr.ipynb")
    assert datadir.stat().st_ino == inode
    assert sorted(p.name for p in datadir.parent.iterdir() if p.name.startswith("data.old")) == []
    assert demo_fleet.production_cluster().is_running()


@pytest.fixture(scope="module")
def pgbr_fleet() -> Iterator[LocalFleet]:
    """A managed fleet backed up by its own pgBackRest stanza: items in one full backup."""
    assert shutil.which("pgbackrest"), "pgbackrest is missing: `make setup` installs it"
    root = scratch_dir("ra-nb-pgbr-")
    fleet = LocalFleet(root / "fleet")
    fleet.up(pgbackrest=True)
    try:
        execute(fleet.production_dsn(), "CREATE DATABASE app")
        execute(
            fleet.production_dsn("app"),
            "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL)",
        )
        commit(fleet.production_dsn("app"), "seed")
        fleet.snapshot("full")
        # pgBackRest stamps a backup's stop in whole seconds: the window opens at that second, so
        # the tests' points in time come after it
        snap = fleet.snapshots()[-1]
        while datetime.now(UTC) <= (snap.completed_at or snap.created_at):
            time.sleep(0.1)
        yield fleet
    finally:
        fleet.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


def test_restore_time_restores_the_server_in_place_on_a_pgbackrest_fleet(
    pgbr_fleet: LocalFleet, tmp_path: Path
) -> None:
    app = pgbr_fleet.production_dsn("app")
    commit(app, "A")
    point = mark(app)
    commit(app, "B")
    dsn = pgbr_fleet.production_dsn()
    out = run_runbook(
        pgbr_fleet.root, tmp_path / "pitr.ipynb", restore_time=point.isoformat(), confirm=True
    )
    result = marked(notebook_text(out), "RESULT_JSON: ")
    assert result["status"] == "succeeded", result.get("cause")
    assert [r[0] for r in execute(app, "SELECT label FROM items ORDER BY id")] == ["seed", "A"]
    assert pgbr_fleet.production_dsn() == dsn
