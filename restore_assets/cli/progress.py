"""The CLI's live progress of a schema restore (phases from the audit log, the copy per table)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from restore_assets.core.progress import CopyWatcher, LiveProgress


@contextlib.contextmanager
def restore_progress(
    backend_config: dict[str, Any],
    request: dict[str, Any],
    restore_id: str,
    stream: TextIO,
    enabled: bool = True,
) -> Iterator[LiveProgress | None]:
    """Within the block, show the restore's progress on stream (nothing when not enabled)."""
    if not enabled:
        yield None
        return
    from restore_assets.backends.factory import build_services
    from restore_assets.core.request import RestorePlan, RestoreRequest

    services = build_services(backend_config)
    watcher: list[CopyWatcher] = []

    def record() -> dict[str, Any] | None:
        try:
            return services.audit.get(restore_id)
        except KeyError:
            return None

    def copy_watcher() -> CopyWatcher | None:
        if not watcher:
            rec = record()
            if not rec or not rec.get("restore_point"):
                return None
            point = datetime.fromisoformat(rec["restore_point"])
            plan = RestorePlan.at_point(RestoreRequest.parse(request), point)
            dsn = services.fleet.production_dsn(plan.request.database)
            watcher.append(CopyWatcher(dsn, plan.targets))
        return watcher[0]

    with LiveProgress(stream, record, copy_watcher) as live:
        yield live
