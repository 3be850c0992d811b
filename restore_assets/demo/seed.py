"""Create the demo databases and tenant schemas and fill them with generated data, server-side."""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql

from restore_assets.core.errors import InvalidRequest
from restore_assets.demo import data, ownership
from restore_assets.demo.schema import (
    APP_ROLE,
    DEMO_LAYOUT,
    TABLES,
    DsnFactory,
    check_layout,
    ddl_parts,
    dsn_factory,
    quoted,
)

Progress = Callable[[str], None]

# The order a row belongs to drives everything in it, so orders and their items agree without a
# lookup: items per order k(g) = 1 + (3g mod 4) (4, 3, 2, 1: 2.5 on average), product and
# quantity of item j of order g by formula, the price of a product by formula of its id.
# Statements bind every value as a parameter; {s} is the schema as a quoted identifier.
_PRODUCT_OF_ITEM = "1 + mod(g * 7919 + j * 104729, %(n_products)s)"
_QUANTITY_OF_ITEM = "CASE WHEN mod(g + j, 3) = 0 THEN 1 + mod(g * j, 5) ELSE 1 END"
_ITEMS_OF_ORDER = "generate_series(1, 1 + mod(g * 3, 4)::int)"
_ORDER_TIME = "timestamptz '2023-01-01 00:00:00+00' + make_interval(secs => g * %(order_step)s)"


def _price_of(column: str) -> str:
    """SQL: the seeded price of the product whose id is in `column` (2% free, else 1.50..2981)."""
    return (
        f"CASE WHEN mod({column}, 50) = 0 THEN 0::numeric"
        f" ELSE round((0.5 + exp(mod({column}::bigint * 2654435761, 99991) / 12500.0))::numeric, 2)"
        " END"
    )


def _at(name: str, index: str) -> str:
    """SQL: element mod(index, n) of the bound text array `name` (cycling through it)."""
    arr = f"%({name})s::text[]"
    return f"({arr})[1 + mod({index}, cardinality({arr}))]"


def _draw(name: str, r: str) -> str:
    """SQL: a random element of the bound text array `name`, chosen by the uniform draw `r`."""
    arr = f"%({name})s::text[]"
    return f"({arr})[1 + floor({r} * cardinality({arr}))::int]"


def _q(text: str, schema: str) -> sql.Composed:
    """A statement whose {s} is the quoted schema; everything else is bound parameters."""
    return sql.SQL(text).format(s=sql.Identifier(schema))


# g: the row's number; r1..r4: its own uniform draws (a subquery with volatile output columns is
# not flattened, so each draw is made once per row and can be used several times)
PRODUCTS_SQL = f"""
INSERT INTO {{s}}.products (id, sku, name, description, price, stock_quantity, tags,
                           dimensions_mm, attributes, is_active, created_at, updated_at)
SELECT g,
       'SKU-' || lpad(g::text, 8, '0'),
       {_at("adjectives", "g")} || ' ' || {_at("nouns", "g / 7")} || ' #' || g,
       CASE WHEN r1 < 0.25 THEN NULL ELSE {_at("descriptions", "g")} END,
       {_price_of("g")},
       floor(r2 * 1000)::int,
       (%(tags)s::text[])[1 + mod(g, 5) : mod(g, 5) + mod(g, 4)],
       CASE WHEN r3 < 0.1 THEN NULL
            ELSE ARRAY[10 + mod(g, 490), 10 + mod(g * 7, 290), 1 + mod(g * 13, 120)]::int[] END,
       CASE WHEN r3 < 0.05 THEN '{{{{}}}}'::jsonb
            ELSE jsonb_build_object(
                'color', {_at("colors", "g")},
                'weight_g', 50 + mod(g * 37, 5000),
                'origin', {_at("countries", "g")},
                'fragile', r2 < 0.2,
                'rating', CASE WHEN r1 < 0.3 THEN NULL ELSE round((1 + r1 * 4)::numeric, 1) END)
       END,
       r2 >= 0.1,
       ts,
       ts + make_interval(days => floor(r3 * 300)::int)
  FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3,
               timestamptz '2022-06-01 00:00:00+00' + make_interval(hours => mod(g, 5000)::int) AS ts
          FROM generate_series(1, %(n_products)s) AS g) AS x
"""

USERS_SQL = f"""
INSERT INTO {{s}}.users (name, email, status, age, balance, country_code, city, interests,
                        metadata, last_login_at, created_at, updated_at)
SELECT {_draw("first_names", "r1")} || ' ' || {_draw("last_names", "r2")},
       'user' || g || '@' || {_at("domains", "g")},
       (CASE WHEN r3 < 0.70 THEN 'active' WHEN r3 < 0.85 THEN 'inactive'
             WHEN r3 < 0.95 THEN 'pending' ELSE 'suspended' END)::{{s}}.user_status,
       CASE WHEN r1 < 0.1 THEN NULL ELSE 18 + floor(r2 * 70)::int END,
       round((r4 * 5000)::numeric, 2),
       (%(countries)s::text[])[c],
       (%(cities)s::text[])[c],
       CASE WHEN r4 < 0.15 THEN NULL WHEN r4 < 0.25 THEN '{{{{}}}}'::text[]
            ELSE (%(interests)s::text[])[1 + mod(g, 11) : 1 + mod(g, 11) + mod(g, 4)] END,
       CASE WHEN r2 < 0.1 THEN '{{{{}}}}'::jsonb
            ELSE jsonb_build_object(
                'source', {_at("sources", "g")},
                'newsletter', r1 < 0.4,
                'score', round((r3 * 100)::numeric, 3),
                'prefs', jsonb_build_object(
                    'lang', {_at("languages", "g")},
                    'theme', CASE WHEN r4 < 0.5 THEN 'dark' ELSE 'light' END),
                'referrer', CASE WHEN r1 < 0.7 THEN NULL ELSE 'user' || (g / 2 + 1) END)
       END,
       CASE WHEN r4 < 0.2 THEN NULL ELSE ts + make_interval(days => floor(r1 * 400)::int) END,
       ts,
       ts + make_interval(days => floor(r2 * 30)::int)
  FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
               1 + mod(g, cardinality(%(countries)s::text[])) AS c,
               timestamptz '2022-01-01 00:00:00+00'
                   + make_interval(secs => g * %(user_step)s) AS ts
          FROM generate_series(1, %(n_users)s) AS g) AS x
"""

ORDERS_SQL = f"""
INSERT INTO {{s}}.orders (id, public_id, user_id, status, total_amount, currency,
                         shipping_address, notes, created_at, updated_at)
SELECT g,
       md5(%(salt)s || g::text)::uuid,
       -- a user who had signed up by then (users sign up from 2022, orders start in 2023)
       %(first_user)s
           + floor(r1 * least(%(n_users)s, %(n_users)s * (365 + 700.0 * g / %(n_orders)s) / 700))::int,
       (CASE WHEN r2 < 0.60 THEN 'completed' WHEN r2 < 0.70 THEN 'shipped'
             WHEN r2 < 0.78 THEN 'processing' WHEN r2 < 0.88 THEN 'pending'
             WHEN r2 < 0.96 THEN 'cancelled' ELSE 'refunded' END)::{{s}}.order_status,
       (SELECT coalesce(sum(quantity * {_price_of("product_id")}), 0)
          FROM (SELECT {_PRODUCT_OF_ITEM} AS product_id, {_QUANTITY_OF_ITEM} AS quantity
                  FROM {_ITEMS_OF_ORDER} AS j) AS items),
       CASE WHEN r3 < 0.60 THEN 'EUR' WHEN r3 < 0.85 THEN 'USD'
            WHEN r3 < 0.95 THEN 'JPY' ELSE 'SEK' END,
       CASE WHEN r4 < 0.05 THEN NULL
            ELSE jsonb_build_object(
                'street', {_at("streets", "g")},
                'city', {_at("cities", "g")},
                'zip', lpad(mod(g, 100000)::text, 5, '0'),
                'gift', r4 > 0.9)
       END,
       CASE WHEN r4 < 0.8 THEN NULL ELSE {_at("notes", "g")} END,
       ts,
       ts + make_interval(hours => floor(r1 * 240)::int)
  FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
               {_ORDER_TIME} AS ts
          FROM generate_series(1::bigint, %(n_orders)s) AS g) AS x
"""

ORDER_ITEMS_SQL = f"""
INSERT INTO {{s}}.order_items (order_id, product_id, quantity, unit_price, created_at)
SELECT g, product_id, quantity, {_price_of("product_id")}, {_ORDER_TIME}
  FROM (SELECT g, {_PRODUCT_OF_ITEM} AS product_id, {_QUANTITY_OF_ITEM} AS quantity
          FROM generate_series(1::bigint, %(n_orders)s) AS g, {_ITEMS_OF_ORDER} AS j) AS x
"""


def sizes(rows: int) -> dict[str, int]:
    """How many users, products and orders a seed with `rows` creates per schema."""
    return {"users": rows, "products": max(10, rows // 2), "orders": 2 * rows}


def _seed_value(database: str, schema: str) -> float:
    """A setseed() argument in [-1, 1] derived from the schema's place, so data is repeatable."""
    return (zlib.crc32(f"{database}/{schema}".encode()) % 20001) / 10000.0 - 1.0


def table_counts(dsn: str, schema: str) -> dict[str, int]:
    """Exact row counts of the demo tables of one schema."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return _counts(conn, schema)


def _counts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    out = {}
    for table in TABLES:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        out[table] = conn.execute(query).fetchone()[0]
    return out


def _schema_state(conn: psycopg.Connection, schema: str) -> tuple[bool, int, bool]:
    """(exists, number of relations, functions and types in it, whether a table holds rows)."""
    row = conn.execute("SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,))
    found = row.fetchone()
    if found is None:
        return False, 0, False
    nsp = found[0]
    objects = conn.execute(
        "SELECT (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = %(n)s)"
        " + (SELECT count(*) FROM pg_catalog.pg_proc WHERE pronamespace = %(n)s)"
        " + (SELECT count(*) FROM pg_catalog.pg_type WHERE typnamespace = %(n)s"
        "    AND typtype IN ('e', 'd', 'c') AND typrelid = 0)",
        {"n": nsp},
    ).fetchone()[0]
    tables = conn.execute(
        "SELECT relname FROM pg_catalog.pg_class WHERE relnamespace = %s AND relkind IN ('r', 'p')",
        (nsp,),
    ).fetchall()
    has_rows = False
    for (table,) in tables:
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {}.{})").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        if conn.execute(query).fetchone()[0]:
            has_rows = True
            break
    return True, objects, has_rows


def ensure_app_role(conn: psycopg.Connection) -> None:
    """Create the NOLOGIN role the demo policies and grants name, if the cluster lacks it."""
    exists = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (APP_ROLE,))
    if exists.fetchone() is None:
        try:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(APP_ROLE)))
        except psycopg.errors.DuplicateObject:
            pass  # created concurrently by another seed


def _existing_databases(admin_dsn: str, names: list[str]) -> list[str]:
    with psycopg.connect(admin_dsn, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_catalog.pg_database WHERE datname = ANY(%s)", (names,)
        ).fetchall()
    found = {r[0] for r in rows}
    return [n for n in names if n in found]


def _ensure_database(admin_dsn: str, database: str) -> bool:
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        ensure_app_role(conn)
        found = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if found:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except psycopg.errors.DuplicateDatabase:
            return False
        return True


def seed(
    production_dsn: DsnFactory | str,
    *,
    rows: int = 200,
    layout: Mapping[str, Sequence[str]] = DEMO_LAYOUT,
    progress: Progress | None = None,
    replace: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Create the layout's databases and tenant schemas and fill each with `rows` users' data."""
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
        raise InvalidRequest(f"rows must be a positive integer, got {rows!r}")
    plan = check_layout(layout)
    dsn_for = dsn_factory(production_dsn)
    say = progress or (lambda _msg: None)
    started = time.monotonic()

    # check every schema before changing anything, so a refusal leaves the cluster as it was
    existing = _existing_databases(dsn_for("postgres"), list(plan))
    for database in existing:
        with psycopg.connect(dsn_for(database), connect_timeout=10) as conn:
            for schema in plan[database]:
                ownership.require_owned(conn, database, schema)
                exists, objects, has_rows = _schema_state(conn, schema)
                if exists and objects and not replace:
                    what = "holding data" if has_rows else f"with {objects} objects (no rows)"
                    raise InvalidRequest(
                        f"schema {schema!r} already exists in database {database!r} {what}:"
                        " seed with replace=True (CLI: --replace) to drop and recreate it"
                    )
    for database in plan:
        if _ensure_database(dsn_for("postgres"), database):
            say(f"created database {database}")

    jobs = [(database, schema) for database, schemas in plan.items() for schema in schemas]
    n_workers = workers or min(len(jobs), 4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        futures = {
            (db, schema): pool.submit(_seed_schema, dsn_for(db), db, schema, rows, say)
            for db, schema in jobs
        }
        results = {key: f.result() for key, f in futures.items()}

    out: dict[str, dict[str, dict[str, int]]] = {}
    for (database, schema), counts in results.items():
        out.setdefault(database, {})[schema] = counts
    return {"databases": out, "rows": rows, "seconds": round(time.monotonic() - started, 3)}


def _seed_schema(dsn: str, database: str, schema: str, rows: int, say: Progress) -> dict[str, int]:
    """Drop (if present) and create one schema, load it, then build keys, indexes and the rest."""
    n = sizes(rows)
    params: dict[str, Any] = {
        **data.VOCABULARY,
        "n_users": n["users"],
        "n_products": n["products"],
        "n_orders": n["orders"],
        "user_step": 700 * 86400.0 / n["users"],
        "order_step": 700 * 86400.0 / n["orders"],
        "salt": f"{database}/{schema}/",
    }
    label = f"{database}.{schema}"
    pre, post = ddl_parts(schema)
    counts: dict[str, int] = {}
    t0 = time.monotonic()
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        conn.execute("SET LOCAL lock_timeout = '60s'")
        conn.execute("SET LOCAL work_mem = '64MB'")
        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
        # checked again in this transaction: only a schema the demo made is replaced
        ownership.drop_owned(conn, database, schema)
        conn.execute(pre)
        ownership.mark(conn, schema)
        conn.execute("SELECT setseed(%s)", (_seed_value(database, schema),))
        for table, statement in (
            ("products", PRODUCTS_SQL),
            ("users", USERS_SQL),
            ("orders", ORDERS_SQL),
            ("order_items", ORDER_ITEMS_SQL),
        ):
            if table == "orders":
                first = conn.execute(
                    sql.SQL("SELECT min(id), max(id), count(*) FROM {}.users").format(
                        sql.Identifier(schema)
                    )
                ).fetchone()
                if first[2] != n["users"] or first[1] - first[0] + 1 != n["users"]:
                    raise RuntimeError(f"{label}: user ids are not contiguous: {first}")
                params["first_user"] = first[0]
            t = time.monotonic()
            cur = conn.execute(_q(statement, schema), params)
            counts[table] = cur.rowcount
            say(f"{label}: {table} {cur.rowcount} rows ({time.monotonic() - t:.1f}s)")
        for table in ("products", "orders"):
            conn.execute(
                "SELECT setval(pg_catalog.pg_get_serial_sequence(%s, 'id'), %s)",
                (f"{quoted(schema)}.{table}", counts[table]),
            )
        t = time.monotonic()
        conn.execute(post)
        say(f"{label}: keys, indexes, triggers, views, policies ({time.monotonic() - t:.1f}s)")
        conn.execute(
            sql.SQL("ANALYZE {}").format(
                sql.SQL(", ").join(sql.Identifier(schema, table) for table in TABLES)
            )
        )
    say(f"{label}: done in {time.monotonic() - t0:.1f}s")
    return {table: counts[table] for table in TABLES}
