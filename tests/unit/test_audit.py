"""The SQLite audit log records runs, resources and phases, and never reuses a restore id."""

import pytest

from restore_assets.backends.local.audit import SqliteAuditLog


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


# ------------------------------------------------------------------ ownership (issue 11, item 1)
def test_restore_ids_that_are_paths_or_odd_are_refused(tmp_path):
    from restore_assets.core.audit import check_restore_id
    from restore_assets.core.errors import InvalidRequest

    for bad in (".", "..", "a/b", "/abs", "-x", "x" * 65, "a.b", "a b", "", "é", "a:b", None, 7):
        with pytest.raises(InvalidRequest, match="restore id .* is not valid"):
            check_restore_id(bad)
    for good in ("r-20260102T030405Z-1a2b3c", "dg-" + "0" * 36, "a", "rid_1", "x" * 64):
        assert check_restore_id(good) == good
    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    with pytest.raises(InvalidRequest):
        audit.open("schema_restore", {}, restore_id="..")
    assert audit.history() == []


def test_a_refusal_never_overwrites_an_existing_record(tmp_path):
    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    audit.open("schema_restore", {"database": "d"}, restore_id="rid1")
    audit.close("rid1", "succeeded")
    other = audit.reject("schema_restore", {"database": "d"}, "target exists", restore_id="rid1")
    assert other != "rid1"
    assert audit.get("rid1")["status"] == "succeeded"
    rec = audit.get(other)
    assert rec["status"] == "rejected" and rec["inputs"]["requested_restore_id"] == "rid1"


def test_close_only_from_running(tmp_path):
    from restore_assets.core.audit import AuditConflict

    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    audit.open("schema_restore", {}, restore_id="rid1")
    audit.close("rid1", "succeeded")
    with pytest.raises(AuditConflict, match="already succeeded"):
        audit.close("rid1", "failed", "cleanup after a crash")
    assert audit.get("rid1")["status"] == "succeeded"
    rej = audit.reject("schema_restore", {}, "bad", restore_id="rid2")
    with pytest.raises(AuditConflict):
        audit.close(rej, "failed")
    with pytest.raises(ValueError):
        audit.update("rid1", status="failed")


def test_each_record_carries_its_owner(tmp_path):
    import os
    import socket

    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    audit.open("schema_restore", {}, restore_id="rid1")
    owner = audit.get("rid1")["owner"]
    assert (owner["host"], owner["pid"]) == (socket.gethostname(), os.getpid())
    assert owner["started"]
    from restore_assets.core.audit import process_owner

    audit.open("schema_restore", {}, restore_id="rid2", owner=process_owner("run-123"))
    assert audit.get("rid2")["owner"]["dagster_run_id"] == "run-123"


def test_a_claim_is_held_by_one_running_record_and_released_at_close(tmp_path):
    from restore_assets.core.audit import ClaimConflict

    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    audit.open("schema_restore", {}, restore_id="win", claims=["db.s_x"])
    with pytest.raises(ClaimConflict, match="being restored by restore win"):
        audit.open("schema_restore", {}, restore_id="lose", claims=["db.s_y", "db.s_x"])
    with pytest.raises(KeyError):  # nothing of the loser was written
        audit.get("lose")
    assert audit.claims("win") == ["db.s_x"]
    audit.close("win", "succeeded")
    assert audit.claims("win") == []
    audit.open("schema_restore", {}, restore_id="next", claims=["db.s_x"])


def test_owner_gone_proves_death_only_for_a_dead_local_process(tmp_path):
    import subprocess
    import sys

    from restore_assets.core.audit import owner_gone, process_owner

    me = process_owner()
    gone, why = owner_gone(me)
    assert not gone and "still running" in why
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = {**me, "pid": child.pid, "started": None}
        assert owner_gone(theirs)[0] is False
    finally:
        child.kill()
        child.wait()
    assert owner_gone(theirs)[0] is True  # pid gone
    assert owner_gone({**me, "started": "other-boot:1"})[0] is True  # pid reused
    assert owner_gone({**me, "host": "elsewhere"})[0] is False
    assert owner_gone(None)[0] is False
    assert owner_gone({**me, "dagster_run_id": "r"}, "STARTED")[0] is False
    assert owner_gone({**me, "dagster_run_id": "r"}, "FAILURE")[0] is True
