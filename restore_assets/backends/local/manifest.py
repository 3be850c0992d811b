"""The fleet manifest: every path the tool created for a fleet, the only paths it may delete.

A path is recorded before it is created. Deleting checks the path is recorded and lies inside the
fleet root or inside a recorded base (the directory PostgreSQL data is placed in when the root is
out of the server user's reach); anything else is refused, never removed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from restore_assets.core.errors import FleetError

MANIFEST_FILE = "manifest.json"


def _inside(path: Path, base: Path) -> bool:
    return path != base and base in path.parents


class Manifest:
    """The JSON list of created paths under `<root>/manifest.json` (0600, updated under a lock)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.path = self.root / MANIFEST_FILE

    def exists(self) -> bool:
        """True when the root holds a manifest (it is a fleet root made by this tool)."""
        return self.path.is_file()

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "r+") as fh:
                text = fh.read()
                data = json.loads(text) if text.strip() else {"paths": [], "bases": []}
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before:
                    fh.seek(0)
                    fh.truncate()
                    json.dump(data, fh, indent=2)
                    fh.flush()
                    os.fsync(fh.fileno())
        finally:
            os.close(fd)

    def _key(self, path: Path) -> str:
        path = Path(os.path.abspath(path))
        return str(path.relative_to(self.root)) if _inside(path, self.root) else str(path)

    def _abs(self, key: str) -> Path:
        p = Path(key)
        return p if p.is_absolute() else self.root / p

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"paths": [], "bases": []}
        return data

    def record(self, path: Path, *, base: bool = False, keep: bool = False) -> Path:
        """Record a path the tool is about to create.

        base=True: a directory outside the root that holds PostgreSQL data for this fleet.
        keep=True: the tool's, but left in place by a purge (a base backup taken into an adopted
        cluster's own backup directory, which its owner may rely on).
        """
        path = Path(os.path.abspath(path))
        if not (base or keep) and not self._allowed(path, self._read()):
            raise FleetError(f"{path} is outside the fleet root {self.root}: not recording it")
        with self._locked() as data:
            key = self._key(path)
            listing = data.setdefault("kept", []) if keep else data["paths"]
            if key not in listing:
                listing.append(key)
            if base and key not in data["bases"]:
                data["bases"].append(key)
        return path

    def forget(self, path: Path) -> None:
        """Drop a path from the manifest (after it was removed)."""
        with self._locked() as data:
            key = self._key(path)
            data["paths"] = [p for p in data["paths"] if p != key]
            data["kept"] = [p for p in data.get("kept", []) if p != key]
            data["bases"] = [p for p in data.get("bases", []) if p != key]

    def rename(self, old: Path, new: Path) -> None:
        """Rename a recorded path, recording the new name first (it keeps the old one's listing)."""
        data = self._read()
        keep = self._key(old) in data.get("kept", [])
        if not self.owns(old):
            raise FleetError(f"refusing to rename {old}: the fleet manifest does not list it")
        self.record(new, keep=keep)
        os.rename(old, new)
        self.forget(old)

    def paths(self) -> list[Path]:
        """Every recorded path, absolute, in recording order."""
        return [self._abs(k) for k in self._read().get("paths", [])]

    def bases(self) -> list[Path]:
        """Recorded directories outside the root that hold this fleet's PostgreSQL data."""
        return [self._abs(k) for k in self._read().get("bases", [])]

    def owns(self, path: Path) -> bool:
        """True when the path itself was recorded (a path merely below a recorded one is not)."""
        data = self._read()
        return self._key(path) in data.get("paths", []) + data.get("kept", [])

    def _allowed(self, path: Path, data: dict[str, Any]) -> bool:
        bases = [self._abs(k) for k in data.get("bases", [])]
        return _inside(path, self.root) or any(path == b or _inside(path, b) for b in bases)

    def remove(self, path: Path) -> bool:
        """Delete a recorded path (file or directory tree); refuse one that is not recorded.

        Returns False when it was already gone. A symbolic link is removed, never followed.
        """
        path = Path(os.path.abspath(path))
        data = self._read()
        key = self._key(path)
        if key not in data.get("paths", []) and key not in data.get("kept", []):
            raise FleetError(
                f"refusing to delete {path}: the fleet manifest {self.path} does not list it"
                " (the tool deletes only what it created)"
            )
        existed = os.path.lexists(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif existed:
            path.unlink()
        self.forget(path)
        return existed
