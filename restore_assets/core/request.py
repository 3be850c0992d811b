"""The restore request: its model, static checks and the checks against the live server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg
from pydantic import Field, field_validator, model_validator

from restore_assets.backends.protocols import Fleet, RestoreTarget
from restore_assets.core.ddl.extensions import extension_refusal, extensions_in
from restore_assets.core.ddl.names import check_identifier_length, default_suffix, target_name
from restore_assets.core.errors import InvalidRequest
from restore_assets.core.jsonable import json_ready
from restore_assets.core.keys import StrictModel


def check_identifier(kind: str, name: str) -> str:
    """Refuse an empty name or one PostgreSQL would truncate (over 63 bytes)."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{kind} name must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise InvalidRequest(f"{kind} name {name!r} contains a NUL byte")
    check_identifier_length(name, what=f"{kind} name")
    return name


def parse_time(value: str | datetime) -> datetime:
    """An ISO 8601 timestamp that must carry a time zone."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidRequest(
                f"restore_time {value!r} is not an ISO 8601 timestamp (example: 2026-01-02T03:04:05Z)"
            ) from None
    if dt.tzinfo is None:
        raise InvalidRequest(
            f"restore_time {value!s} has no time zone: add Z or an offset such as +00:00"
        )
    return dt.astimezone(UTC)


class RestoreRequest(StrictModel):
    """What the operator asks for: schemas of one database at one point in time or snapshot.

    The one request model of the CLI, the runbook notebooks and the Dagster launchpad (whose config
    schema is built from these fields): every field is checked when the model is made.
    """

    where: ClassVar[str] = "the restore request"

    database: str = Field(
        default="",
        validate_default=True,
        description="The database holding the tenant schemas, e.g. tenant_a (required).",
    )
    schemas: tuple[str, ...] = Field(
        default=(),
        validate_default=True,
        description="The schemas to restore, e.g. [customer_a1] (at least one; required).",
    )
    restore_time: datetime | None = Field(
        default=None,
        description=(
            "The point in time to restore to: ISO 8601 with a time zone, inside the restore "
            "window (`restore-assets fleet status`), e.g. 2026-01-02T03:04:05Z. "
            "Give this or snapshot_id, not both."
        ),
    )
    snapshot_id: str | None = Field(
        default=None,
        description=(
            "The snapshot to restore from (`restore-assets fleet status` lists them). "
            "Give this or restore_time, not both."
        ),
    )
    tables: tuple[str, ...] = Field(
        default=(),
        description="Restore only these tables (plus the tables they reference); empty: all.",
    )
    include_dependencies: bool = Field(
        default=True,
        description="With tables: also restore the tables they reference by foreign key.",
    )
    suffix: str | None = Field(
        default=None,
        description=(
            "The restored schema is <schema>_<suffix>; empty: the restore point as YYYYMMDDHHMMSS."
        ),
    )
    # (old, new) pairs: restored objects of tablespace old are created in new
    tablespace_map: tuple[tuple[str, str], ...] = Field(
        default=(),
        description=(
            "OLD=NEW entries: restored objects of tablespace OLD are created in NEW; empty: every"
            " object keeps its tablespace."
        ),
    )
    full_provision: bool = Field(
        default=False,
        description=(
            "Copy the whole snapshot into the temporary server; default: only the restored"
            " database's files (the others zero-filled) when the snapshot allows it."
        ),
    )

    @field_validator("database", mode="before")
    @classmethod
    def _database(cls, value: Any) -> str:
        return check_identifier("database", value or "")

    @field_validator("schemas", mode="before")
    @classmethod
    def _schemas(cls, value: Any) -> tuple[str, ...]:
        raw = [value] if isinstance(value, str) else list(value or [])
        if not raw:
            raise InvalidRequest("at least one schema is required")
        schemas = tuple(check_identifier("schema", s) for s in raw)
        dupes = sorted({s for s in schemas if schemas.count(s) > 1})
        if dupes:
            raise InvalidRequest(f"duplicate schema(s) in request: {', '.join(dupes)}")
        return schemas

    @field_validator("restore_time", mode="before")
    @classmethod
    def _restore_time(cls, value: Any) -> datetime | None:
        return parse_time(value) if value else None

    @field_validator("snapshot_id", mode="before")
    @classmethod
    def _snapshot_id(cls, value: Any) -> str | None:
        return str(value) if value else None

    @field_validator("tables", mode="before")
    @classmethod
    def _tables(cls, value: Any) -> tuple[str, ...]:
        return tuple(check_identifier("table", t) for t in (value or []))

    @field_validator("include_dependencies", "full_provision", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> bool:
        return bool(value)

    @field_validator("suffix", mode="before")
    @classmethod
    def _suffix(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest("suffix must be a non-empty string")
        return value

    @field_validator("tablespace_map", mode="before")
    @classmethod
    def _tablespace_map(cls, value: Any) -> tuple[tuple[str, str], ...]:
        return parse_tablespace_map(value)

    @model_validator(mode="after")
    def _one_target(self) -> RestoreRequest:
        if bool(self.restore_time) == bool(self.snapshot_id):
            raise InvalidRequest("give exactly one of restore_time or snapshot_id")
        if self.suffix:
            for s in self.schemas:
                target_name(s, self.suffix)
        return self

    @property
    def target(self) -> RestoreTarget:
        """The point in time or snapshot to restore."""
        return RestoreTarget(restore_time=self.restore_time, snapshot_id=self.snapshot_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the audit record's inputs)."""
        return {
            "database": self.database,
            "schemas": list(self.schemas),
            "restore_time": self.restore_time.isoformat() if self.restore_time else None,
            "snapshot_id": self.snapshot_id,
            "tables": list(self.tables),
            "include_dependencies": self.include_dependencies,
            "suffix": self.suffix,
            "tablespace_map": dict(self.tablespace_map),
            "full_provision": self.full_provision,
        }


def parse_tablespace_map(value: Any) -> tuple[tuple[str, str], ...]:
    """(old, new) tablespace pairs from {"old": "new"} or ["old=new", ...]; names checked."""
    if not value:
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, Sequence):
        pairs = []
        for item in value:
            old, sep, new = str(item).partition("=")
            if not sep:
                raise InvalidRequest(f"tablespace map entry {item!r} must look like old=new")
            pairs.append((old, new))
    else:
        raise InvalidRequest("tablespace_map must be a mapping {old: new} or a list of old=new")
    out = {}
    for old, new in pairs:
        old = check_identifier("tablespace", old)
        if old in out:
            raise InvalidRequest(f"tablespace {old!r} is mapped twice")
        out[old] = check_identifier("tablespace", new)
    return tuple(sorted(out.items()))


@dataclass
class RestorePlan:
    """A validated request: names resolved, restore point known, nothing created yet."""

    request: RestoreRequest
    restore_point: datetime
    suffix: str
    targets: dict[str, str]
    tables: dict[str, list[str]] | None = None
    left_out_foreign_keys: list[str] = field(default_factory=list)

    @classmethod
    def at_point(cls, request: RestoreRequest, point: datetime) -> RestorePlan:
        """The plan of a request at its restore point: suffix and target schema names resolved."""
        suffix = request.suffix or default_suffix(point)
        targets = {s: target_name(s, suffix) for s in request.schemas}
        return cls(request=request, restore_point=point, suffix=suffix, targets=targets)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return json_ready(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestorePlan:
        """Inverse of to_dict."""
        return cls(
            request=RestoreRequest.parse(
                {k: v for k, v in data["request"].items() if v not in (None, [])}
            ),
            restore_point=datetime.fromisoformat(data["restore_point"]),
            suffix=data["suffix"],
            targets=dict(data["targets"]),
            tables=data.get("tables"),
            left_out_foreign_keys=list(data.get("left_out_foreign_keys") or []),
        )


FK_EDGES = """
SELECT c.conname, src.relname AS src, dst.relname AS dst, dn.nspname AS dst_schema
FROM pg_catalog.pg_constraint c
JOIN pg_catalog.pg_class src ON src.oid = c.conrelid
JOIN pg_catalog.pg_namespace sn ON sn.oid = src.relnamespace
JOIN pg_catalog.pg_class dst ON dst.oid = c.confrelid
JOIN pg_catalog.pg_namespace dn ON dn.oid = dst.relnamespace
WHERE c.contype = 'f' AND sn.nspname = %s AND c.conparentid = 0
"""


def table_closure(
    conn: psycopg.Connection, schema: str, tables: Sequence[str], include_dependencies: bool
) -> tuple[list[str], list[str]]:
    """Named tables plus the tables they reference by foreign key; and the dangling keys left out."""
    edges = conn.execute(FK_EDGES, (schema,)).fetchall()
    chosen = list(dict.fromkeys(tables))
    if include_dependencies:
        i = 0
        while i < len(chosen):
            for _name, src, dst, dst_schema in edges:
                if src == chosen[i] and dst_schema == schema and dst not in chosen:
                    chosen.append(dst)
            i += 1
    left_out = sorted(
        f"{schema}.{src}.{name} -> {dst_schema}.{dst}"
        for name, src, dst, dst_schema in edges
        if src in chosen and dst_schema == schema and dst not in chosen
    )
    return chosen, left_out


def plan_restore(request: RestoreRequest, fleet: Fleet) -> RestorePlan:
    """Check a request against the production server and its restore window; create nothing."""
    try:
        with psycopg.connect(fleet.production_dsn("postgres"), connect_timeout=10) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (request.database,)
            ).fetchone()
    except psycopg.Error as exc:
        raise InvalidRequest(f"cannot reach the production server: {str(exc).strip()}") from None
    if not found:
        raise InvalidRequest(f"unknown database {request.database!r} on the production server")
    plan = RestorePlan.at_point(request, fleet.check_target(request.target))
    with psycopg.connect(fleet.production_dsn(request.database), connect_timeout=10) as conn:
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)",
                (list(request.schemas) + list(plan.targets.values()),),
            )
        }
        missing = [s for s in request.schemas if s not in existing]
        if missing:
            raise InvalidRequest(
                f"unknown schema(s) in database {request.database!r}: {', '.join(missing)}"
            )
        clash = [t for t in plan.targets.values() if t in existing]
        if clash:
            raise InvalidRequest(
                f"target schema(s) already exist: {', '.join(clash)} — drop them or choose another --suffix"
            )
        refusal = extension_refusal(extensions_in(conn, list(request.schemas)), "in production")
        if refusal:
            raise InvalidRequest(refusal)
        mapped = [new for _old, new in request.tablespace_map]
        known = {
            r[0]
            for r in conn.execute(
                "SELECT spcname FROM pg_catalog.pg_tablespace WHERE spcname = ANY(%s)", (mapped,)
            )
        }
        if set(mapped) - known:
            raise InvalidRequest(
                f"--tablespace-map names unknown tablespace(s): {', '.join(sorted(set(mapped) - known))}"
            )
        if request.tables:
            plan.tables = {}
            for s in request.schemas:
                present = {
                    r[0]
                    for r in conn.execute(
                        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
                        " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
                        (s,),
                    )
                }
                unknown = [t for t in request.tables if t not in present]
                if unknown:
                    raise InvalidRequest(f"unknown table(s) in schema {s!r}: {', '.join(unknown)}")
                plan.tables[s], dangling = table_closure(
                    conn, s, request.tables, request.include_dependencies
                )
                plan.left_out_foreign_keys += dangling
    return plan
