"""The SQLite audit log records runs, resources and phases, and never reuses a restore id."""

import pytest

from restore_assets.audit import SqliteAuditLog


def test_lifecycle(tmp_path):
    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    rid = audit.open("schema_restore", {"database": "d", "schemas": ["s"]})
    audit.resource(rid, "local-temp-cluster", rid, {"port": 1234})
    audit.resource(rid, "restored-schema", "d.s_x", {"schema": "s_x"})
    audit.phase(
        rid,
        "provision",
        "succeeded",
        started_at="2026-01-01T00:00:00+00:00",
        metadata={"port": 1234},
    )
    assert [r["kind"] for r in audit.resources(rid)] == ["restored-schema", "local-temp-cluster"]
    audit.resource_deleted(rid, "local-temp-cluster", rid)
    assert [r["kind"] for r in audit.resources(rid)] == ["restored-schema"]
    audit.update(rid, restore_point="2026-01-01T00:00:00+00:00", result={"ok": 1})
    audit.close(rid, "failed", "copy: boom")
    rec = audit.get(rid)
    assert rec["status"] == "failed"
    assert rec["cause"] == "copy: boom"
    assert rec["result"] == {"ok": 1}
    assert rec["duration_s"] >= 0
    assert rec["phases"][0]["metadata"] == {"port": 1234}
    assert len(rec["resources"]) == 2
    assert audit.history()[0]["restore_id"] == rid


def test_ids_are_never_shared(tmp_path):
    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    audit.open("schema_restore", {}, restore_id="r-1")
    with pytest.raises(ValueError, match="already exists"):
        audit.open("schema_restore", {}, restore_id="r-1")


def test_rejected_requests_are_recorded(tmp_path):
    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    rid = audit.reject("schema_restore", {"database": "x"}, "unknown database 'x'")
    rec = audit.get(rid)
    assert (rec["status"], rec["cause"]) == ("rejected", "unknown database 'x'")
    with pytest.raises(ValueError):
        audit.update(rid, inputs="{}")
