"""The audit log in DynamoDB: one item per restore (key `restore_id`) with inputs, resources,
phases, status and cause. Every string is passed through `redact()` before it is written."""

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
    RESTORE_ID_RE,
    STATUSES,
    UPDATABLE,
    AuditConflict,
    ClaimConflict,
    check_restore_id,
    new_restore_id,
    process_owner,
)

_ser = TypeSerializer()
_de = TypeDeserializer()
_seq = itertools.count()
CLAIM_PREFIX = "claim:"  # claim items share the table; a restore id never holds ':'


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _stamp() -> str:
    """A sortable creation stamp: ISO time + nanoseconds + a per-process counter."""
    return f"{_now()}|{time.time_ns():020d}|{next(_seq):08d}"


def _json(value: Any) -> str:
    return redact(json.dumps(redact_any(value), default=str))


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


class DynamoAuditLog:
    """The AuditLog protocol over one DynamoDB table whose partition key is `restore_id` (string)."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    # ------------------------------------------------------------ writes
    def open(
        self,
        kind: str,
        inputs: dict[str, Any],
        restore_id: str | None = None,
        owner: dict[str, Any] | None = None,
        claims: list[str] | tuple[str, ...] = (),
    ) -> str:
        """Create the record of a new run, owned by owner, holding claims; never reuses an id."""
        rid = check_restore_id(restore_id or new_restore_id())
        now = _now()
        item = {
            "restore_id": rid,
            "kind": kind,
            "status": "running",
            "inputs": _json(inputs),
            "created_at": now,
            "owner": json.dumps(owner or process_owner()),
            "claims": list(claims),
            "resources": {},
            "phases": [],
        }
        new_item = "attribute_not_exists(restore_id)"
        if not claims:
            try:
                self.client.put_item(
                    TableName=self.table, Item=_item(item), ConditionExpression=new_item
                )
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    raise self._exists(rid) from None
                raise
            return rid
        puts = [
            {"Put": {"TableName": self.table, "Item": _item(item), "ConditionExpression": new_item}}
        ]
        for target in claims:
            claim = {
                "restore_id": CLAIM_PREFIX + target,
                "kind": "claim",
                "holder": rid,
                "created_at": now,
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
                raise self._exists(rid) from None
            for target in claims:
                held = self.client.get_item(
                    TableName=self.table,
                    Key={"restore_id": _val(CLAIM_PREFIX + target)},
                    ConsistentRead=True,
                ).get("Item")
                if held:
                    raise ClaimConflict(target, _de.deserialize(held["holder"])) from None
            raise
        return rid

    @staticmethod
    def _exists(rid: str) -> AuditConflict:
        return AuditConflict(f"restore id {rid} already exists in the audit log: choose another")

    def reject(
        self, kind: str, inputs: dict[str, Any], cause: str, restore_id: str | None = None
    ) -> str:
        """Record a refused request; if restore_id already exists, under a fresh id (returned)."""
        rid = restore_id if restore_id and RESTORE_ID_RE.fullmatch(restore_id) else None
        rid = rid or new_restore_id()
        now = _now()
        for attempt in (rid, new_restore_id()):
            record = dict(inputs)
            if attempt != restore_id and restore_id:
                record["requested_restore_id"] = str(restore_id)[:80]
            item = {
                "restore_id": attempt,
                "kind": kind,
                "status": "rejected",
                "inputs": _json(record),
                "created_at": now,
                "finished_at": now,
                "duration_s": Decimal("0"),
                "cause": redact(cause),
                "owner": json.dumps(process_owner()),
                "resources": {},
                "phases": [],
            }
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item=_item(item),
                    ConditionExpression="attribute_not_exists(restore_id)",
                )
                return attempt
            except Exception as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                # the id is another run's: its record stays as it is; try a fresh id
        raise AuditConflict(f"could not record the refusal of {restore_id}")  # pragma: no cover

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
                raise KeyError(f"unknown restore id {restore_id}") from None
            raise

    def resource(
        self, restore_id: str, kind: str, identifier: str, details: dict[str, Any]
    ) -> None:
        """Record a resource before it is relied on, so cleanup can find it after a crash."""
        entry = {
            "kind": kind,
            "identifier": identifier,
            "details": _json(details),
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
                ExpressionAttributeValues={":now": _val(_now())},
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def phase(
        self,
        restore_id: str,
        phase: str,
        outcome: str,
        *,
        started_at: str,
        error: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Record one phase's start, end, outcome and metadata."""
        entry = {
            "phase": phase,
            "started_at": started_at,
            "ended_at": _now(),
            "outcome": outcome,
            "error": redact(error) if error else None,
            "metadata": _json(metadata or {}),
        }
        self._update(
            restore_id,
            "SET #p = list_append(if_not_exists(#p, :empty), :e)",
            {"#p": "phases"},
            {":empty": _val([]), ":e": _val([entry])},
        )

    def update(self, restore_id: str, **fields: Any) -> None:
        """Set fields of the run record (restore_point, result, status, cause)."""
        bad = set(fields) - set(UPDATABLE)
        if bad:
            raise ValueError(f"cannot update audit fields {sorted(bad)}")
        if not fields:
            return
        names, values, sets = {}, {}, []
        for i, (key, value) in enumerate(fields.items()):
            if isinstance(value, dict | list):
                value = _json(value)
            elif isinstance(value, str):
                value = redact(value)
            names[f"#f{i}"] = key
            values[f":v{i}"] = _val(value)
            sets.append(f"#f{i} = :v{i}")
        self._update(restore_id, "SET " + ", ".join(sets), names, values)

    def close(self, restore_id: str, status: str, cause: str | None = None) -> None:
        """Set the final status of a running record (AuditConflict otherwise); release its claims."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"unknown final status {status!r}")
        rec = self._raw(restore_id)
        now = datetime.now(UTC)
        duration = (now - datetime.fromisoformat(rec["created_at"])).total_seconds()
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
            values[":c"] = _val(redact(cause))
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
                current = self._raw(restore_id)["status"]
                raise AuditConflict(
                    f"restore {restore_id} is already {current}: its record is not changed"
                ) from None
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

    def claims(self, restore_id: str) -> list[str]:
        """The targets a running record holds."""
        rec = self._raw(restore_id)
        out = []
        for target in rec.get("claims") or []:
            held = self.client.get_item(
                TableName=self.table,
                Key={"restore_id": _val(CLAIM_PREFIX + target)},
                ConsistentRead=True,
            ).get("Item")
            if held and _de.deserialize(held["holder"]) == restore_id:
                out.append(target)
        return sorted(out)

    # ------------------------------------------------------------ reads
    def _raw(self, restore_id: str) -> dict[str, Any]:
        resp = self.client.get_item(
            TableName=self.table, Key={"restore_id": _val(restore_id)}, ConsistentRead=True
        )
        if "Item" not in resp:
            raise KeyError(f"unknown restore id {restore_id}")
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
            raw = self._raw(restore_id)
        except KeyError:
            return []
        return self._resources(raw, include_deleted)

    def get(self, restore_id: str) -> dict[str, Any]:
        """The whole record of one run, with its phases and resources."""
        raw = self._raw(restore_id)
        rec = {k: v for k, v in raw.items() if k not in ("resources", "phases")}
        rec.setdefault("finished_at", None)
        rec.setdefault("duration_s", None)
        rec.setdefault("cause", None)
        rec.setdefault("restore_point", None)
        rec["inputs"] = json.loads(raw.get("inputs") or "{}")
        rec["result"] = json.loads(raw["result"]) if raw.get("result") else None
        rec["owner"] = json.loads(raw["owner"]) if raw.get("owner") else None
        rec["phases"] = [
            {**p, "restore_id": restore_id, "metadata": json.loads(p.get("metadata") or "{}")}
            for p in raw.get("phases") or []
        ]
        rec["resources"] = self._resources(raw, include_deleted=True)
        return rec

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent runs, newest first (a Scan: the audit table holds one item per run)."""
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
        items.sort(key=lambda r: r.get("created_at", ""), reverse=True)
        out = []
        items = [r for r in items if r.get("kind") != "claim"]
        for r in items[:limit]:
            r["inputs"] = json.loads(r.get("inputs") or "{}")
            for k in ("finished_at", "duration_s", "cause", "restore_point"):
                r.setdefault(k, None)
            out.append(r)
        return out
