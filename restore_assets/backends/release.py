"""The detached process that releases a succeeded restore's temporary resources after its answer.

    python -m restore_assets.backends.release RESTORE_ID   # backend settings as JSON on standard input

It builds the services of the configured backend (backends/factory) and runs the core's
`release_temporary`; it lives here, not in the core, because the core chooses no backend.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("restore_assets")


def launch_detached(settings: dict[str, Any], restore_id: str, log_dir: Path | None = None) -> int:
    """Start `release_temporary` in a process of its own session (outlives the caller); its pid.

    The backend settings travel on standard input, never on the command line.
    """
    out = subprocess.DEVNULL
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_dir / f"release-{restore_id}.log", "ab")  # noqa: SIM115 - handed to the child
        os.chmod(out.name, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "restore_assets.backends.release", restore_id],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(settings).encode())
        proc.stdin.close()
    finally:
        if out is not subprocess.DEVNULL:
            out.close()  # type: ignore[union-attr]
    return proc.pid


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached process: release one restore's temporary resources."""
    from restore_assets.backends.factory import build_services
    from restore_assets.core.audit import check_restore_id
    from restore_assets.core.schema_restore.release import release_temporary

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m restore_assets.backends.release RESTORE_ID < settings.json",
            file=sys.stderr,
        )
        return 2
    restore_id = check_restore_id(args[0])
    settings = json.loads(sys.stdin.read() or "{}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = release_temporary(build_services(settings), restore_id)
    log.info("restore %s: released %s in %.2fs", restore_id, out["removed"], out["seconds"])
    if out["errors"]:
        log.error(
            "restore %s: release incomplete (%s): run `restore-assets cleanup --restore-id %s`",
            restore_id,
            out["errors"],
            restore_id,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
