"""The audit log in DynamoDB: one item per restore (key `restore_id`) with inputs, resources,
phases, status and cause. Every string is passed through `redact()` before it is written.

The protocol and the logic every log shares (claims, owners, refusals, checks) are the core's
(core/audit.AuditLog); this module only stores and reads.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from restore_assets.backends.aws.clients import error_code
from restore_assets.backends.aws.secrets import redact, redact_any
from restore_assets.core.audit import (
    AuditLog,
    ClaimConflict,
    closed_conflict,
    exists_conflict,
    now_iso,
    seconds_since,
    unknown_record,
)

_ser = TypeSerializer()
_de = TypeDeserializer()
_seq = itertools.count()
CLAIM_PREFIX = "claim:"  # claim items share the table; a restore id never holds ':'


def _stamp() -> str:
    """A sortable creation stamp: ISO time + nanoseconds + a per-process counter."""
    return f"{now_iso()}|{time.time_ns():020d}|{next(_seq):08d}"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value % 1 else int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items()}


def _val(value: Any) -> dict[str, Any]:
    return _ser.serialize(value)


class DynamoAuditLog(AuditLog):
    """The AuditLog protocol over one DynamoDB table whose partition key is `restore_id` (string)."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def encode(self, value: Any) -> str:
        """JSON text with every secret redacted."""
        return redact(json.dumps(redact_any(value), default=str))

    def text(self, value: str) -> str:
        """A free text with every secret redacted."""
        return redact(value)

    # ------------------------------------------------------------ writes
    def _insert(self, record: dict[str, Any], claims: tuple[str, ...]) -> None:
        rid = record["restore_id"]
        item = {**record, "resources": {}, "phases": []}
        if "duration_s" in item:
            item["duration_s"] = Decimal(str(item["duration_s"]))
        if record["status"] == "running":
            item["claims"] = list(claims)
        new_item = "attribute_not_exists(restore_id)"
        if not claims:
            try:
                self.client.put_item(
                    TableName=self.table, Item=_item(item), ConditionExpression=new_item
                )
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    raise exists_conflict(rid) from None
                raise
            return
        puts = [
            {"Put": {"TableName": self.table, "Item": _item(item), "ConditionExpression": new_item}}
        ]
        for target in claims:
            claim = {
                "restore_id": CLAIM_PREFIX + target,
                "kind": "claim",
                "holder": rid,
                "created_at": record["created_at"],
            }
            puts.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _item(claim),
                        "ConditionExpression": new_item,
                    }
                }
            )
        try:
            self.client.transact_write_items(TransactItems=puts)
        except Exception as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [
                r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons") or []
            ]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise exists_conflict(rid) from None
            for target in claims:
                holder = self._holder(target)
                if holder:
                    raise ClaimConflict(target, holder) from None
            raise

    def _update(self, restore_id: str, expression: str, names: dict, values: dict | None) -> None:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"restore_id": _val(restore_id)},
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(restore_id)",
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self.client.update_item(**kwargs)
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise unknown_record(restore_id) from None
            raise

    def _set(self, restore_id: str, fields: dict[str, Any]) -> None:
        names, values, sets = {}, {}, []
        for i, (key, value) in enumerate(fields.items()):
            names[f"#f{i}"] = key
            values[f":v{i}"] = _val(value)
            sets.append(f"#f{i} = :v{i}")
        self._update(restore_id, "SET " + ", ".join(sets), names, values)

    def resource(
        self, restore_id: str, kind: str, identifier: str, details: dict[str, Any]
    ) -> None:
        """Record a resource before it is relied on, so cleanup can find it after a crash."""
        entry = {
            "kind": kind,
            "identifier": identifier,
            "details": self.encode(details),
            "created_at": _stamp(),
        }
        self._update(
            restore_id,
            "SET #r.#k = :v",
            {"#r": "resources", "#k": f"{kind}|{identifier}"},
            {":v": _val(entry)},
        )

    def resource_deleted(self, restore_id: str, kind: str, identifier: str) -> None:
        """Mark a recorded resource as removed."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"restore_id": _val(restore_id)},
                UpdateExpression="SET #r.#k.deleted_at = :now",
                ConditionExpression="attribute_exists(#r.#k)",
                ExpressionAttributeNames={"#r": "resources", "#k": f"{kind}|{identifier}"},
                ExpressionAttributeValues={":now": _val(now_iso())},
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def _add_phase(self, restore_id: str, entry: dict[str, Any]) -> None:
        self._update(
            restore_id,
            "SET #p = list_append(if_not_exists(#p, :empty), :e)",
            {"#p": "phases"},
            {":empty": _val([]), ":e": _val([entry])},
        )

    def _finish(self, restore_id: str, status: str, cause: str | None) -> None:
        rec = self._record(restore_id)
        now = datetime.now(UTC)
        duration = seconds_since(rec["created_at"], now)
        names = {"#s": "status", "#fa": "finished_at", "#d": "duration_s"}
        values = {
            ":s": _val(status),
            ":fa": _val(now.isoformat()),
            ":d": _val(Decimal(str(round(duration, 3)))),
            ":running": _val("running"),
        }
        expr = "SET #s = :s, #fa = :fa, #d = :d"
        if cause is not None:
            names["#c"] = "cause"
            values[":c"] = _val(cause)
            expr += ", #c = :c"
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"restore_id": _val(restore_id)},
                UpdateExpression=expr,
                ConditionExpression="#s = :running",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise closed_conflict(restore_id, self._record(restore_id)["status"]) from None
            raise
        for target in rec.get("claims") or []:
            try:
                self.client.delete_item(
                    TableName=self.table,
                    Key={"restore_id": _val(CLAIM_PREFIX + target)},
                    ConditionExpression="holder = :me",
                    ExpressionAttributeValues={":me": _val(restore_id)},
                )
            except Exception as exc:  # held by another restore (or gone): not ours to release
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise

    # ------------------------------------------------------------ reads
    def _holder(self, target: str) -> str | None:
        """The restore that holds a claim, None when nobody does."""
        held = self.client.get_item(
            TableName=self.table,
            Key={"restore_id": _val(CLAIM_PREFIX + target)},
            ConsistentRead=True,
        ).get("Item")
        return _de.deserialize(held["holder"]) if held else None

    def claims(self, restore_id: str) -> list[str]:
        """The targets a running record holds."""
        rec = self._record(restore_id)
        return sorted(t for t in rec.get("claims") or [] if self._holder(t) == restore_id)

    def _record(self, restore_id: str) -> dict[str, Any]:
        resp = self.client.get_item(
            TableName=self.table, Key={"restore_id": _val(restore_id)}, ConsistentRead=True
        )
        if "Item" not in resp:
            raise unknown_record(restore_id)
        return _plain({k: _de.deserialize(v) for k, v in resp["Item"].items()})

    @staticmethod
    def _resources(raw: dict[str, Any], include_deleted: bool) -> list[dict[str, Any]]:
        out = []
        for entry in (raw.get("resources") or {}).values():
            if entry.get("deleted_at") and not include_deleted:
                continue
            out.append(
                {
                    "restore_id": raw["restore_id"],
                    "kind": entry["kind"],
                    "identifier": entry["identifier"],
                    "details": json.loads(entry.get("details") or "{}"),
                    "created_at": entry["created_at"].split("|")[0],
                    "deleted_at": entry.get("deleted_at"),
                    "_order": entry["created_at"],
                }
            )
        out.sort(key=lambda r: r["_order"], reverse=True)
        for r in out:
            r.pop("_order")
        return out

    def resources(self, restore_id: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The resources of a run that cleanup must remove (newest first)."""
        try:
            raw = self._record(restore_id)
        except KeyError:
            return []
        return self._resources(raw, include_deleted)

    def _recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest summaries (a Scan: the audit table holds one item per run and per claim)."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            ProjectionExpression="restore_id, kind, #s, created_at, finished_at, duration_s,"
            " cause, restore_point, inputs",
            ExpressionAttributeNames={"#s": "status"},
        )
        items = [
            _plain({k: _de.deserialize(v) for k, v in i.items()})
            for page in pages
            for i in page["Items"]
        ]
        items = [r for r in items if r.get("kind") != "claim"]
        items.sort(key=lambda r: r.get("created_at", ""), reverse=True)
        return items[:limit]
