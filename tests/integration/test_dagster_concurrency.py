"""The shipped dagster.yaml (restore_assets/jobs/dagster.yaml): a queue with a per-fleet limit on restores that every restore run matches."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from restore_assets.jobs.in_process import INSTANCE_SETTINGS
from restore_assets.jobs.schema_restore import schema_restore
from restore_assets.jobs.tags import CONCURRENCY_TAG, TARGET_TAG

pytestmark = pytest.mark.integration


def _limits(instance: dg.DagsterInstance) -> list[dict]:
    from dagster._core.run_coordinator import QueuedRunCoordinator

    coordinator = instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    return list(coordinator.get_run_queue_config().tag_concurrency_limits)


def test_the_shipped_instance_queues_restores_under_a_fleet_limit(tmp_path: Path) -> None:
    shutil.copy(INSTANCE_SETTINGS, tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        limits = _limits(instance)
    fleet = [lim for lim in limits if lim["key"] == CONCURRENCY_TAG]
    assert len(fleet) == 1 and fleet[0]["limit"] >= 1
    # every schema_restore run carries the tag the fleet limit counts
    assert schema_restore.tags[CONCURRENCY_TAG] == fleet[0]["value"]
    target = [lim for lim in limits if lim["key"] == TARGET_TAG]
    assert target and target[0]["limit"] == 1
    assert target[0]["value"] == {"applyLimitPerUniqueValue": True}
