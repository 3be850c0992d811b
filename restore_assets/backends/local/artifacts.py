"""Artifacts in a local directory: `<root>/<restore_id>/<name>`, readable by their owner only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from restore_assets.backends.local.manifest import Manifest
from restore_assets.core.errors import FleetError, RestoreError

PRIVATE_UMASK = 0o077


@contextmanager
def owner_only() -> Iterator[None]:
    """Create files 0600 and directories 0700 inside the block (umask 077; the previous one after).

    The umask is per process: another thread creating a file meanwhile gets a stricter mode, never
    a looser one.
    """
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


class LocalArtifacts:
    """Keeps each restore's DDL files and reports under one directory.

    With a manifest (the fleet's), each restore's directory is recorded before it is created, and
    purge deletes only a recorded one.
    """

    def __init__(self, root: str | Path, manifest: Manifest | None = None) -> None:
        self.root = Path(root).resolve()
        self.manifest = manifest

    def _path(self, restore_id: str, name: str) -> Path:
        path = (self.root / restore_id / name).resolve()
        if self.root not in path.parents:
            raise RestoreError(f"artifact name {name!r} escapes the artifact directory")
        return path

    def _run_dir(self, restore_id: str) -> Path:
        run_dir = self.root / restore_id
        if run_dir.parent != self.root or restore_id in ("", ".", ".."):
            raise RestoreError(f"restore id {restore_id!r} is not an artifact directory's name")
        return run_dir

    def put(self, restore_id: str, name: str, data: bytes | str) -> str:
        """Store one artifact (0600, in 0700 directories) and return its path as a file:// URI."""
        path = self._path(restore_id, name)
        run_dir = self._run_dir(restore_id)
        if self.manifest is not None and self.manifest.exists() and not run_dir.exists():
            self.manifest.record(run_dir)
        with owner_only():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        return path.as_uri()

    def get(self, restore_id: str, name: str) -> bytes:
        """Read one artifact back."""
        return self._path(restore_id, name).read_bytes()

    def purge(self, restore_id: str) -> None:
        """Delete every artifact of a restore (idempotent); only a directory the manifest lists."""
        run_dir = self._run_dir(restore_id)
        if not os.path.lexists(run_dir):
            return
        if self.manifest is None or not self.manifest.owns(run_dir):
            raise FleetError(
                f"{run_dir} is not listed in the fleet manifest: it was not created by this tool"
                " and is left in place"
            )
        self.manifest.remove(run_dir)
