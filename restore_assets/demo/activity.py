"""Application-like writes against the demo tenants for a bounded time: the traffic a restore runs beside."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from restore_assets.core.errors import InvalidRequest
from restore_assets.demo import data, ownership
from restore_assets.demo.schema import DEMO_LAYOUT, DsnFactory, check_layout, dsn_factory

KINDS = (
    "users_created",
    "users_updated",
    "orders_created",
    "order_status_changes",
    "price_changes",
)
"""What one activity operation does; order_items_created counts the items of created orders."""

WEIGHTS = (0.15, 0.15, 0.35, 0.25, 0.10)

SESSION_SETTINGS = "SET statement_timeout = '5s'; SET lock_timeout = '2s'"

REGISTER_USER = "SELECT {s}.register_user(%(name)s, %(email)s, %(metadata)s)"

# a user who can still shop, at or after a random id (the first one when none is)
PLACE_ORDER = """
SELECT {s}.place_order(u.id, %(items)s, %(currency)s)
  FROM (SELECT id FROM {s}.users
         WHERE status IN ('active', 'pending') AND id >= %(user_from)s
         ORDER BY id LIMIT 1) AS u
"""

TOUCH_USER = """
UPDATE {s}.users
   SET last_login_at = now(),
       balance = greatest(0, balance + %(delta)s::numeric),
       metadata = jsonb_set(metadata, '{{logins}}',
                            to_jsonb(coalesce((metadata->>'logins')::int, 0) + 1))
 WHERE id = (SELECT id FROM {s}.users WHERE id >= %(user_from)s ORDER BY id LIMIT 1)
"""

ADVANCE_ORDER = """
UPDATE {s}.orders
   SET status = CASE
           WHEN status = 'pending' AND %(cancel)s THEN 'cancelled'
           WHEN status = 'pending' THEN 'processing'
           WHEN status = 'processing' THEN 'shipped'
           ELSE 'completed' END::{s}.order_status
 WHERE id = (SELECT id FROM {s}.orders
              WHERE status IN ('pending', 'processing', 'shipped') AND id >= %(order_from)s
              ORDER BY id LIMIT 1)
"""

REPRICE = """
UPDATE {s}.products
   SET price = round(price * %(factor)s::numeric, 2),
       stock_quantity = greatest(0, stock_quantity + %(stock)s)
 WHERE id = %(product_id)s
"""

RANGES = """
SELECT (SELECT min(id) FROM {s}.users), (SELECT max(id) FROM {s}.users),
       (SELECT max(id) FROM {s}.products), (SELECT max(id) FROM {s}.orders)
"""


@dataclass
class _Tenant:
    database: str
    schema: str
    first_user: int = 1000
    last_user: int = 1000
    last_product: int = 1
    last_order: int = 1
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.database}.{self.schema}"

    def q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=sql.Identifier(self.schema))


def activity(
    production_dsn: DsnFactory | str,
    *,
    seconds: float,
    layout: Mapping[str, Sequence[str]] = DEMO_LAYOUT,
    rate: float = 20.0,
    stop: threading.Event | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Write like the application for `seconds` (or until `stop` is set), `rate` operations a second."""
    if not isinstance(seconds, int | float) or math.isnan(seconds) or seconds < 0:
        raise InvalidRequest(f"seconds must be a number >= 0, got {seconds!r}")
    if not isinstance(rate, int | float) or not rate > 0 or math.isinf(rate):
        raise InvalidRequest(f"rate must be a positive number of operations a second, got {rate!r}")
    plan = check_layout(layout)
    dsn_for = dsn_factory(production_dsn)
    rng = random.Random(seed)
    nonce = time.time_ns()
    totals = dict.fromkeys((*KINDS, "order_items_created", "errors"), 0)
    tenants = [_Tenant(db, schema) for db, schemas in plan.items() for schema in schemas]
    conns: dict[str, psycopg.Connection] = {}
    started = time.monotonic()
    deadline = started + seconds
    ops = 0
    last_error: str | None = None
    try:
        for db in plan:
            conns[db] = _connect(dsn_for(db))
            for schema in plan[db]:  # the demo writes only into schemas it created
                ownership.require_owned(conns[db], db, schema)
        for tenant in tenants:
            _load_ranges(conns[tenant.database], tenant)
            tenant.counts = dict.fromkeys((*KINDS, "order_items_created", "errors"), 0)
        while True:
            now = time.monotonic()
            if now >= deadline or (stop is not None and stop.is_set()):
                break
            due = started + ops / rate
            if due > now:
                wait = min(due, deadline) - now
                if stop is not None:
                    stop.wait(wait)
                else:
                    time.sleep(wait)
                continue
            tenant = tenants[ops % len(tenants)]
            kind = rng.choices(KINDS, weights=WEIGHTS)[0]
            ops += 1
            conn = conns[tenant.database]
            try:
                with conn.transaction():
                    changed, items = _operation(conn, tenant, kind, rng, f"{nonce}.{ops}")
            except psycopg.Error as exc:
                tenant.counts["errors"] += 1
                totals["errors"] += 1
                first_line = (str(exc).strip().splitlines() or [""])[0]
                last_error = f"{tenant.label} {kind}: {type(exc).__name__}: {first_line}"
                if conn.closed:
                    conns[tenant.database] = _connect(dsn_for(tenant.database))
                continue
            tenant.counts[kind] += changed
            totals[kind] += changed
            tenant.counts["order_items_created"] += items
            totals["order_items_created"] += items
    finally:
        for conn in conns.values():
            conn.close()
    return {
        **totals,
        "operations": ops,
        "seconds": round(time.monotonic() - started, 3),
        "by_schema": {t.label: t.counts for t in tenants},
        "last_error": last_error,
    }


def _connect(dsn: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    conn.execute(SESSION_SETTINGS)
    return conn


def _load_ranges(conn: psycopg.Connection, tenant: _Tenant) -> None:
    try:
        row = conn.execute(tenant.q(RANGES)).fetchone()
    except psycopg.errors.UndefinedTable:
        raise InvalidRequest(
            f"demo schema {tenant.schema!r} is missing in database {tenant.database!r}:"
            " seed the demo first"
        ) from None
    first_user, last_user, last_product, last_order = row
    tenant.first_user = first_user or 1000
    tenant.last_user = last_user or tenant.first_user
    tenant.last_product = last_product or 1
    tenant.last_order = last_order or 1


def _operation(
    conn: psycopg.Connection, tenant: _Tenant, kind: str, rng: random.Random, nonce: str
) -> tuple[int, int]:
    """Run one operation; return (rows it changed of its kind, order items it created)."""
    user_from = rng.randint(tenant.first_user, max(tenant.first_user, tenant.last_user))
    if kind == "users_created":
        name = f"{rng.choice(data.FIRST_NAMES)} {rng.choice(data.LAST_NAMES)}"
        metadata = {
            "source": rng.choice(data.SOURCES),
            "newsletter": rng.random() < 0.4,
            "prefs": {"lang": rng.choice(data.LANGUAGES)},
            "signup": "activity",
        }
        params = {"name": name, "email": f"new.{nonce}@example.com", "metadata": Jsonb(metadata)}
        new_id = conn.execute(tenant.q(REGISTER_USER), params).fetchone()[0]
        tenant.last_user = max(tenant.last_user, new_id)
        return 1, 0
    if kind == "orders_created":
        items = [
            {"product_id": rng.randint(1, tenant.last_product), "quantity": rng.randint(1, 3)}
            for _ in range(rng.randint(1, 4))
        ]
        params = {
            "items": Jsonb(items),
            "currency": rng.choice(["EUR", "EUR", "USD", "JPY"]),
            "user_from": user_from,
        }
        row = conn.execute(tenant.q(PLACE_ORDER), params).fetchone()
        if row is None:
            return 0, 0
        tenant.last_order = max(tenant.last_order, row[0])
        return 1, len(items)
    if kind == "users_updated":
        params = {"user_from": user_from, "delta": round(rng.uniform(-50, 100), 2)}
        return conn.execute(tenant.q(TOUCH_USER), params).rowcount, 0
    if kind == "order_status_changes":
        params = {"order_from": rng.randint(1, tenant.last_order), "cancel": rng.random() < 0.1}
        return conn.execute(tenant.q(ADVANCE_ORDER), params).rowcount, 0
    if kind == "price_changes":
        params = {
            "product_id": rng.randint(1, tenant.last_product),
            "factor": round(rng.uniform(0.8, 1.25), 3),
            "stock": rng.randint(-5, 20),
        }
        return conn.execute(tenant.q(REPRICE), params).rowcount, 0
    raise ValueError(f"unknown activity kind {kind!r}")
