"""The demo tenant DDL: a template (tenant_schema.sql) rendered for one schema name."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources

import psycopg
from pglast import keywords
from psycopg import sql

from restore_assets.core.errors import InvalidRequest

DEMO_LAYOUT: dict[str, list[str]] = {
    "tenant_a": ["customer_a1", "customer_a2"],
    "tenant_b": ["customer_b1", "customer_b2"],
}
"""Databases and the tenant schemas in each."""

TABLES = ("users", "products", "orders", "order_items")
"""The tenant tables, parents first."""

APP_ROLE = "demo_app"
"""The cluster-wide role the row level security policies and grants name."""

TEMPLATE_FILE = "tenant_schema.sql"
POST_DATA_MARKER = "-- @@post-data@@"
_BARE = re.compile(r"[a-z_][a-z0-9_]*")
_KEYWORDS = (
    keywords.RESERVED_KEYWORDS | keywords.TYPE_FUNC_NAME_KEYWORDS | keywords.COL_NAME_KEYWORDS
)

DsnFactory = Callable[[str], str]


@functools.cache
def template() -> str:
    """The DDL template text shipped with the package (markers not substituted)."""
    return resources.files(__package__).joinpath(TEMPLATE_FILE).read_text(encoding="utf-8")


def check_name(kind: str, name: object) -> str:
    """Return a database or schema name unchanged, or raise InvalidRequest saying what is wrong."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name.encode("utf-8")) > 63:
        raise InvalidRequest(f"{kind} name {name!r} is longer than PostgreSQL's 63 bytes")
    if "\x00" in name or "$" in name:
        raise InvalidRequest(
            f"{kind} name {name!r} may not contain '$' or NUL (the demo DDL dollar-quotes bodies)"
        )
    return name


def check_layout(layout: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """A validated copy of a {database: [schema, ...]} layout."""
    if not isinstance(layout, Mapping) or not layout:
        raise InvalidRequest("layout must be a non-empty {database: [schema, ...]} mapping")
    out: dict[str, list[str]] = {}
    for database, schemas in layout.items():
        check_name("database", database)
        if isinstance(schemas, str) or not schemas:
            raise InvalidRequest(
                f"layout[{database!r}] must be a non-empty list of schema names, got {schemas!r}"
            )
        names = [check_name("schema", s) for s in schemas]
        if len(set(names)) != len(names):
            raise InvalidRequest(f"layout[{database!r}] names a schema twice: {names}")
        out[database] = names
    return out


def dsn_factory(production_dsn: DsnFactory | str) -> DsnFactory:
    """A function database -> DSN, from such a function or from one DSN (its dbname replaced)."""
    if callable(production_dsn):
        return production_dsn
    if not isinstance(production_dsn, str):
        raise InvalidRequest("production_dsn must be a DSN string or a function database -> DSN")
    params = psycopg.conninfo.conninfo_to_dict(production_dsn)

    def for_database(database: str) -> str:
        return psycopg.conninfo.make_conninfo(**{**params, "dbname": database})

    return for_database


def quoted(name: str) -> str:
    """The name as a quoted SQL identifier (psycopg.sql.Identifier), e.g. '"customer_a1"'."""
    return sql.Identifier(name).as_string(None)


def as_written(name: str) -> str:
    """The name as a developer writes it in code: bare when valid unquoted, quoted otherwise."""
    if _BARE.fullmatch(name) and name not in _KEYWORDS:
        return name
    return quoted(name)


def render(text: str, schema: str) -> str:
    """Substitute the template markers of `text` for one schema."""
    check_name("schema", schema)
    written = as_written(schema)
    return (
        text.replace("{{SCHEMA}}", quoted(schema))
        .replace("{{schema_literal}}", written.replace("'", "''"))
        .replace("{{schema}}", written)
    )


def ddl_parts(schema: str) -> tuple[str, str]:
    """(pre-data, post-data) DDL of one tenant schema: what a bulk load needs, what comes after."""
    parts = re.split(rf"^{re.escape(POST_DATA_MARKER)}$", template(), flags=re.M)
    if len(parts) != 2:
        raise RuntimeError(f"{TEMPLATE_FILE} must hold exactly one {POST_DATA_MARKER!r} line")
    return render(parts[0], schema), render(parts[1], schema)


def schema_ddl(schema: str) -> sql.Composable:
    """The complete DDL of one demo tenant schema (several statements; run it in one execute)."""
    pre, post = ddl_parts(schema)
    return sql.SQL(pre + post)
