"""The SQLite and DynamoDB audit logs give the same records for the same calls (one shared logic)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from restore_assets.backends.aws.audit import DynamoAuditLog
from restore_assets.backends.local.audit import SqliteAuditLog
from restore_assets.core.audit import AuditConflict, AuditLog, ClaimConflict

pytestmark = pytest.mark.aws


@pytest.fixture(params=["sqlite", "dynamodb"])
def audit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog]:
    if request.param == "sqlite":
        yield SqliteAuditLog(tmp_path / "audit.sqlite")
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="audit",
            KeySchema=[{"AttributeName": "restore_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "restore_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoAuditLog(client, "audit")


def _comparable(rec: dict[str, Any]) -> dict[str, Any]:
    """A record without the values that differ by time or by store (stamps, durations, claims)."""
    drop = {"created_at", "finished_at", "ended_at", "started_at", "duration_s", "claims"}
    drop |= {"deleted_at"}
    out = {k: v for k, v in rec.items() if k not in drop | {"phases", "resources"}}
    out["phases"] = [{k: v for k, v in p.items() if k not in drop} for p in rec["phases"]]
    out["resources"] = [
        {k: v for k, v in r.items() if k not in drop} for r in rec.get("resources") or []
    ]
    return out


def test_both_logs_keep_the_same_record(audit: AuditLog) -> None:
    rid = audit.open("schema_restore", {"database": "d"}, "r-1", {"pid": 1}, ["d.s_x"])
    with pytest.raises(AuditConflict, match="already exists"):
        audit.open("schema_restore", {}, "r-1")
    with pytest.raises(ClaimConflict, match="being restored by restore r-1"):
        audit.open("schema_restore", {}, "r-2", claims=["d.s_x"])
    with pytest.raises(KeyError):
        audit.get("r-2")  # nothing of the refused open was written
    audit.resource(rid, "cluster", "a", {"port": 5433})
    audit.resource(rid, "schema", "b", {})
    audit.resource_deleted(rid, "schema", "b")
    audit.phase(rid, "copy", "succeeded", started_at="2026-01-01T00:00:00+00:00", metadata={"n": 2})
    audit.update(rid, restore_point="2026-01-01T00:00:00+00:00", result={"rows": 3})
    with pytest.raises(ValueError, match="cannot update"):
        audit.update(rid, status="failed")
    with pytest.raises(ValueError, match="unknown final status"):
        audit.close(rid, "running")
    audit.close(rid, "succeeded")
    assert audit.claims(rid) == []
    with pytest.raises(AuditConflict, match="already succeeded"):
        audit.close(rid, "failed", "late")
    rejected = audit.reject("schema_restore", {"database": "d"}, "bad input", "r-1")
    rec, rej = audit.get(rid), audit.get(rejected)
    assert _comparable(rec) == {
        "restore_id": "r-1",
        "kind": "schema_restore",
        "status": "succeeded",
        "inputs": {"database": "d"},
        "cause": None,
        "restore_point": "2026-01-01T00:00:00+00:00",
        "result": {"rows": 3},
        "owner": {"pid": 1},
        "phases": [
            {
                "restore_id": "r-1",
                "phase": "copy",
                "outcome": "succeeded",
                "error": None,
                "metadata": {"n": 2},
            }
        ],
        "resources": [
            {"restore_id": "r-1", "kind": "schema", "identifier": "b", "details": {}},
            {"restore_id": "r-1", "kind": "cluster", "identifier": "a", "details": {"port": 5433}},
        ],
    }
    assert [bool(r["deleted_at"]) for r in rec["resources"]] == [True, False]
    assert [r["identifier"] for r in audit.resources(rid)] == ["a"]
    assert rej["status"] == "rejected" and rej["cause"] == "bad input"
    assert rej["inputs"] == {"database": "d", "requested_restore_id": "r-1"}
    assert [h["restore_id"] for h in audit.history()] == [rejected, rid]
    assert set(audit.history()[0]) >= {"restore_id", "status", "inputs", "finished_at", "cause"}
