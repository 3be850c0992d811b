"""Artifacts in a local directory: `<root>/<restore_id>/<name>`."""

from __future__ import annotations

import shutil
from pathlib import Path

from restore_assets.errors import RestoreError


class LocalArtifacts:
    """Keeps each restore's DDL files and reports under one directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, restore_id: str, name: str) -> Path:
        path = (self.root / restore_id / name).resolve()
        if self.root not in path.parents:
            raise RestoreError(f"artifact name {name!r} escapes the artifact directory")
        return path

    def put(self, restore_id: str, name: str, data: bytes | str) -> str:
        """Store one artifact and return its path as a file:// URI."""
        path = self._path(restore_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        path.write_bytes(data)
        return path.as_uri()

    def get(self, restore_id: str, name: str) -> bytes:
        """Read one artifact back."""
        return self._path(restore_id, name).read_bytes()

    def purge(self, restore_id: str) -> None:
        """Delete every artifact of a restore (idempotent)."""
        shutil.rmtree(self.root / restore_id, ignore_errors=True)
