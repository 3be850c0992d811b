"""The answer comes first: a restore is `succeeded` before its temporary server is removed."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import sql

from restore_assets.backends.factory import build_services
from restore_assets.core.schema_restore.cleanup import cleanup_restore
from restore_assets.jobs.launch import run_schema_restore

pytestmark = pytest.mark.integration

TEMP = "local-temp-cluster"


def _restore(fleet, suffix: str, **kwargs) -> dict:
    out = run_schema_restore(
        {
            "database": "tenant_a",
            "schemas": ["customer_a1"],
            "snapshot_id": fleet.snapshots()[-1].id,
            "suffix": suffix,
        },
        {"root": str(fleet.root)},
        compare=False,
        **kwargs,
    )
    assert out["status"] == "succeeded", out
    return out


def _drop(fleet, schema: str) -> None:
    with psycopg.connect(fleet.production_dsn("tenant_a"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _schemas(fleet) -> set[str]:
    with psycopg.connect(fleet.production_dsn("tenant_a")) as conn:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}


def _temp_resources(rec: dict) -> list[dict]:
    return [r for r in rec["resources"] if r["kind"] == TEMP]


def test_temporary_server_is_removed_after_the_answer_and_audited(demo_fleet):
    out = _restore(demo_fleet, "answered")
    try:
        rec = build_services({"root": str(demo_fleet.root)}).audit.get(out["restore_id"])
        [temp] = _temp_resources(rec)
        assert temp["deleted_at"] is not None
        # the final status was written before the temporary server was deleted
        assert rec["finished_at"] <= temp["deleted_at"]
        [released] = [p for p in rec["phases"] if p["phase"] == "cleanup"]
        assert released["outcome"] == "succeeded"
        assert released["metadata"]["after_answer"] is True
        assert released["started_at"] >= rec["finished_at"]
        assert f"{TEMP}:{out['restore_id']}" in released["metadata"]["removed"]
        assert "tenant_a.customer_a1_answered" in released["metadata"]["kept"]
        assert out["rto_s"] == rec["duration_s"]
        assert out["total_s"] >= out["rto_s"]
        assert demo_fleet.temp_instances() == []
    finally:
        _drop(demo_fleet, "customer_a1_answered")


def test_detached_release_removes_the_temporary_server_after_returning(demo_fleet):
    out = _restore(demo_fleet, "detached", detach_cleanup=True)
    audit = build_services({"root": str(demo_fleet.root)}).audit
    try:
        assert "customer_a1_detached" in _schemas(demo_fleet)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rec = audit.get(out["restore_id"])
            if any(p["phase"] == "cleanup" for p in rec["phases"]):
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the detached release never recorded its cleanup phase")
        [temp] = _temp_resources(rec)
        assert temp["deleted_at"] is not None and rec["finished_at"] <= temp["deleted_at"]
        assert rec["status"] == "succeeded"
        assert not [i for i in demo_fleet.temp_instances() if i["restore_id"] == out["restore_id"]]
        assert "customer_a1_detached" in _schemas(demo_fleet)  # a succeeded restore stays
    finally:
        _drop(demo_fleet, "customer_a1_detached")


def test_a_release_that_never_ran_leaves_the_server_recorded_for_cleanup(demo_fleet, monkeypatch):
    import restore_assets.jobs.schema_phases as job

    # the detached process dies before doing anything (a crash right after the answer)
    monkeypatch.setattr(job, "launch_detached", lambda *_a, **_k: 0)
    out = _restore(demo_fleet, "orphaned", detach_cleanup=True)
    services = build_services({"root": str(demo_fleet.root)})
    try:
        rec = services.audit.get(out["restore_id"])
        [temp] = _temp_resources(rec)
        assert temp["deleted_at"] is None  # still recorded: cleanup can find it
        assert [i for i in demo_fleet.temp_instances() if i["restore_id"] == out["restore_id"]]
        cleaned = cleanup_restore(services, out["restore_id"])
        assert f"{TEMP}:{out['restore_id']}" in cleaned["removed"]
        assert "tenant_a.customer_a1_orphaned" in cleaned["kept"]
        assert not [i for i in demo_fleet.temp_instances() if i["restore_id"] == out["restore_id"]]
        assert "customer_a1_orphaned" in _schemas(demo_fleet)
        assert services.audit.get(out["restore_id"])["status"] == "succeeded"
    finally:
        _drop(demo_fleet, "customer_a1_orphaned")
