"""PostgreSQL programs on this machine (server binaries and client tools), for any layer."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from pathlib import Path

from restore_assets.core.errors import FleetError

SERVER_BINARIES = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


@functools.cache
def bindir() -> Path:
    """Directory holding the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup)."""
    candidates: list[Path] = []
    env = os.environ.get("RESTORE_ASSETS_PG_BINDIR")
    if env:
        candidates.append(Path(env))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for c in candidates:
        if all((c / b).exists() for b in SERVER_BINARIES):
            return c
    raise FleetError(
        "PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) not found: run `make setup`"
        " (installs Debian's postgresql package) or set RESTORE_ASSETS_PG_BINDIR"
    )


def pg_bin(name: str) -> str:
    """Absolute path of one PostgreSQL program (server binaries' directory first, then PATH)."""
    try:
        p = bindir() / name
        if p.exists():
            return str(p)
    except FleetError:
        pass  # a client-only install (the pg tools image): pg_dump and psql from PATH
    found = shutil.which(name)
    if not found:
        raise FleetError(
            f"PostgreSQL program {name!r} not found in the server binaries' directory or on PATH:"
            " run `make setup` or install the PostgreSQL client"
        )
    return found
