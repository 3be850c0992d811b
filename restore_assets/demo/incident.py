"""The incident: one tenant loses orders and users and gets corrupted products, in one transaction."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core.errors import InvalidRequest
from restore_assets.demo import ownership
from restore_assets.demo.schema import check_name

MAX_ORDERS = 500
MAX_USERS = 50
MAX_PRODUCTS = 100

# the most recent orders, as a cleanup job with a wrong date condition would delete them
RECENT_ORDERS = """
SELECT id FROM {s}.orders ORDER BY created_at DESC, id DESC LIMIT %(n)s FOR UPDATE
"""

# inactive accounts, as a retention job run against the wrong tenant would delete them
INACTIVE_USERS = """
SELECT id FROM {s}.users WHERE status = 'inactive' ORDER BY id LIMIT %(n)s FOR UPDATE
"""

ORDERS_OF_USERS = """
SELECT id FROM {s}.orders WHERE user_id = ANY(%(users)s) ORDER BY id FOR UPDATE
"""

ITEMS_OF_ORDERS = "SELECT count(*) FROM {s}.order_items WHERE order_id = ANY(%(orders)s)"

DELETE_ORDERS = "DELETE FROM {s}.orders WHERE id = ANY(%(orders)s)"
DELETE_USERS = "DELETE FROM {s}.users WHERE id = ANY(%(users)s)"

# a bulk edit gone wrong: prices multiplied by 100 (free ones set to 9999.99), names in capitals
CORRUPT_PRODUCTS = """
UPDATE {s}.products
   SET price = CASE WHEN price = 0 THEN 9999.99 ELSE least(price * 100, 99999999.99) END,
       name = upper(name) || ' [IMPORTED]'
 WHERE id IN (SELECT id FROM {s}.products ORDER BY id LIMIT %(n)s FOR UPDATE)
RETURNING id
"""


def incident(
    dsn: str,
    schema: str,
    *,
    orders: int | None = None,
    users: int | None = None,
    products: int | None = None,
) -> dict[str, Any]:
    """Delete recent orders and some inactive users (cascading) and corrupt products; report it all."""
    check_name("schema", schema)
    with psycopg.connect(dsn, connect_timeout=10) as conn:

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(s=sql.Identifier(schema))

        database, started_at = conn.execute(
            "SELECT current_database(), clock_timestamp()"
        ).fetchone()
        conn.execute("SET LOCAL lock_timeout = '30s'")
        ownership.require_owned(conn, database, schema)
        try:
            sizes = conn.execute(
                q(
                    "SELECT (SELECT count(*) FROM {s}.orders), (SELECT count(*) FROM {s}.users),"
                    " (SELECT count(*) FROM {s}.products)"
                )
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            raise InvalidRequest(
                f"demo schema {schema!r} is missing in database {database!r}: seed the demo first"
            ) from None
        n_orders = _batch(orders, sizes[0] // 10, MAX_ORDERS)
        n_users = _batch(users, sizes[1] // 20, MAX_USERS)
        n_products = _batch(products, sizes[2] // 10, MAX_PRODUCTS)

        batch = [r[0] for r in conn.execute(q(RECENT_ORDERS), {"n": n_orders})]
        batch_items = conn.execute(q(ITEMS_OF_ORDERS), {"orders": batch}).fetchone()[0]
        conn.execute(q(DELETE_ORDERS), {"orders": batch})

        victims = [r[0] for r in conn.execute(q(INACTIVE_USERS), {"n": n_users})]
        their_orders = [r[0] for r in conn.execute(q(ORDERS_OF_USERS), {"users": victims})]
        their_items = conn.execute(q(ITEMS_OF_ORDERS), {"orders": their_orders}).fetchone()[0]
        conn.execute(q(DELETE_USERS), {"users": victims})

        corrupted = sorted(r[0] for r in conn.execute(q(CORRUPT_PRODUCTS), {"n": n_products}))
        conn.commit()
        committed_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        conn.commit()

    return {
        "database": database,
        "schema": schema,
        "started_at": started_at.isoformat(),
        "committed_at": committed_at.isoformat(),
        "deleted": {
            "orders": len(batch) + len(their_orders),
            "order_items": batch_items + their_items,
            "users": len(victims),
        },
        "updated": {"products": len(corrupted)},
        "keys": {
            "orders": sorted(batch + their_orders),
            "users": sorted(victims),
            "products": corrupted,
        },
        "steps": [
            {
                "action": "DELETE recent orders (order_items cascade)",
                "orders": len(batch),
                "order_items": batch_items,
            },
            {
                "action": "DELETE inactive users (their orders and order_items cascade)",
                "users": len(victims),
                "orders": len(their_orders),
                "order_items": their_items,
            },
            {
                "action": "UPDATE products: price x100 (0 -> 9999.99), name upper-cased + ' [IMPORTED]'",
                "products": len(corrupted),
            },
        ],
    }


def _batch(requested: int | None, proportional: int, cap: int) -> int:
    """How many rows a step touches: as requested, else a tenth/twentieth of the table, capped."""
    if requested is None:
        return max(1, min(cap, proportional))
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 0:
        raise InvalidRequest(f"incident batch sizes must be integers >= 0, got {requested!r}")
    return requested
