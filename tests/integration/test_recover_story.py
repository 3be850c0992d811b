"""The demo story ends with the recovery plan of its incident (computed, not applied)."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import scratch_dir

pytestmark = pytest.mark.integration


def test_demo_story_ends_with_the_recovery_plan_summary():
    from restore_assets.demo.ownership import demo_fleet
    from restore_assets.demo.story import run_story

    root = scratch_dir("ra-story-") / "demo"
    try:
        out = run_story(root, rows=20, activity_seconds=2.0, log=lambda m: None)
        assert out["status"] == "succeeded", out.get("cause")
        rec, damage = out["recovery"], out["incident"]
        tables = rec["tables"]
        # rows the incident deleted that existed at the restore point come back; none invented
        assert 0 < tables["customer_a1.users"]["inserts"] <= damage["deleted"]["users"]
        assert 0 < tables["customer_a1.orders"]["inserts"] <= damage["deleted"]["orders"]
        assert tables["customer_a1.products"]["updates"] >= damage["updated"]["products"]
        lines = out["summary"].splitlines()
        assert lines[-4].startswith("recovery plan (not applied): products +0 inserts")
        assert f"--restore-id {out['restore_id']}" in lines[-2] and "--apply" in lines[-2]
        assert lines[-1].startswith("comparison report: ")
        assert rec["sql_file"].endswith("recovery-plan.sql")
    finally:
        if root.exists():
            demo_fleet(root).down(purge=True)
        shutil.rmtree(root.parent, ignore_errors=True)
