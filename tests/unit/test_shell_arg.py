"""Paths spliced into archive_command / restore_command survive the shell and PostgreSQL's % escapes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from restore_assets.backends.local.pg import shell_arg


def _expand(command: str, **values: str) -> str:
    """What PostgreSQL does to the command: %f, %p replaced, %% becomes %, left to right."""
    return re.sub(r"%(.)", lambda m: "%" if m.group(1) == "%" else values[m.group(1)], command)


@pytest.mark.parametrize("name", ["plain", "with space", "quote'd", "per%cent", "semi;colon $(x)"])
def test_restore_command_copies_from_an_awkward_directory(tmp_path: Path, name: str) -> None:
    """cp <archive>/%f %p, with the archive path through shell_arg, copies the right file."""
    archive = tmp_path / name
    archive.mkdir()
    (archive / "000000010000000000000001").write_text("wal")
    command = f"cp {shell_arg(archive)}/%f %p"
    target = tmp_path / "RECOVERYXLOG"
    expanded = _expand(command, f="000000010000000000000001", p=str(target))
    subprocess.run(["sh", "-c", expanded], check=True, cwd=tmp_path)
    assert target.read_text() == "wal"
    assert not (tmp_path / "x").exists()  # nothing in the name ran


def test_plain_path_unchanged() -> None:
    """A path with no special character is spliced as it is."""
    assert shell_arg(Path("/srv/fleet/archive")) == "/srv/fleet/archive"
