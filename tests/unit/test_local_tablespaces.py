"""Tablespace links of a temporary copy: a link leading outside the copy is refused before start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from restore_assets.backends.local.tablespaces import relocate_tablespaces


def test_a_link_to_another_clusters_tablespace_is_refused(tmp_path: Path) -> None:
    from restore_assets.core.errors import FleetError

    snapshot, datadir, production_ts = tmp_path / "snap", tmp_path / "copy", tmp_path / "prod_ts"
    for d in (snapshot, datadir / "pg_tblspc", production_ts):
        d.mkdir(parents=True)
    os.symlink(production_ts, datadir / "pg_tblspc" / "16390")
    with pytest.raises(FleetError, match="outside"):
        relocate_tablespaces(datadir, snapshot)
    assert os.readlink(datadir / "pg_tblspc" / "16390") == str(production_ts)


def test_a_copy_without_tablespaces_needs_nothing(tmp_path: Path) -> None:
    (tmp_path / "copy" / "pg_tblspc").mkdir(parents=True)
    assert relocate_tablespaces(tmp_path / "copy", tmp_path / "snap") == []
