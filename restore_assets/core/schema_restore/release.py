"""Release a succeeded restore's temporary resources after its answer (no Dagster here).

A restore answers `succeeded` as soon as its restored schemas are complete; the temporary server
(and, on AWS, the DMS objects and the temporary secret) are removed afterwards, so removing them
does not delay the answer. The resources stay recorded in the audit log until each is deleted, so
a crash while releasing leaves them to `restore-assets cleanup`. The removal is audited as the
phase `cleanup` recorded after the final status. The detached process that runs it after the
answer is `backends/release.py` (it builds the services from the backend settings).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from restore_assets.core.schema_restore.cleanup import cleanup
from restore_assets.core.schema_restore.services import Services

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
