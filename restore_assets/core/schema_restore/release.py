"""Release a succeeded restore's temporary resources after its answer (no Dagster here).

A restore answers `succeeded` as soon as its restored schemas are complete; the temporary server
(and, on AWS, the DMS objects and the temporary secret) are removed afterwards, so removing them
does not delay the answer. The resources stay recorded in the audit log until each is deleted, so
a crash while releasing leaves them to `restore-assets cleanup`. The removal is audited as the
phase `cleanup` recorded after the final status.

    python -m restore_assets.core.schema_restore.release RESTORE_ID   # backend settings as JSON on standard input
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from restore_assets.core.schema_restore.phases import Services, cleanup

log = logging.getLogger("restore_assets")

PHASE = "cleanup"


def cleanup_or_defer(services: Services, restore_id: str, failed: bool) -> dict[str, Any]:
    """The cleanup before the answer: all of it after a failure; nothing yet after a success.

    After a success the temporary resources are removed by `release_temporary` once the answer is
    written; until then they stay recorded, so a crash leaves them to `restore-assets cleanup`.
    """
    if failed:
        return cleanup(services, restore_id, failed=True)
    return {"removed": [], "kept": [], "errors": [], "deferred": True}


def release_temporary(services: Services, restore_id: str) -> dict[str, Any]:
    """Remove a succeeded restore's temporary resources (the restored schemas stay); audit it."""
    rec = services.audit.get(restore_id)
    if rec["status"] != "succeeded":
        raise ValueError(
            f"restore {restore_id} is {rec['status']}, not succeeded: use `restore-assets cleanup`"
        )
    started = datetime.now(UTC).isoformat()
    t0 = time.monotonic()
    out = cleanup(services, restore_id, failed=False)
    seconds = round(time.monotonic() - t0, 3)
    services.audit.phase(
        restore_id,
        PHASE,
        "failed" if out["errors"] else "succeeded",
        started_at=started,
        error="; ".join(out["errors"]) or None,
        metadata={
            "removed": out["removed"],
            "kept": out["kept"],
            "after_answer": True,
            "seconds": seconds,
        },
    )
    return {**out, "seconds": seconds}


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
            [sys.executable, "-m", "restore_assets.core.schema_restore.release", restore_id],
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

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m restore_assets.core.schema_restore.release RESTORE_ID < settings.json",
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
