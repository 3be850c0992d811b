"""Extensions installed inside a restored schema: refused before anything is created.

``pg_dump -n`` leaves extensions out (they are database-wide), yet the schema's tables and
functions use their types and functions: a restored copy would reference ``<schema>_<suffix>.citext``
where nothing exists. A database holds one copy of an extension, and the live schema's copy is
already there, so the restored schema cannot get its own: the restore is refused, naming the
extension and the way out (move it to a schema the tenants share).
"""

from __future__ import annotations

import psycopg


def extensions_in(conn: psycopg.Connection, schemas: list[str]) -> list[tuple[str, str, bool]]:
    """(extension, schema, relocatable) for every extension installed inside the schemas."""
    rows = conn.execute(
        "SELECT e.extname, n.nspname, e.extrelocatable FROM pg_catalog.pg_extension e"
        " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
        " WHERE n.nspname = ANY(%s) ORDER BY 1",
        (list(schemas),),
    ).fetchall()
    return [(e, n, bool(r)) for e, n, r in rows]


def extension_refusal(found: list[tuple[str, str, bool]], where: str) -> str | None:
    """Why a restore of schemas holding these extensions is refused, and the way out; or None."""
    if not found:
        return None
    parts = []
    for ext, schema, relocatable in found:
        how = (
            f"ALTER EXTENSION {ext} SET SCHEMA public (it is relocatable)"
            if relocatable
            else f"it is not relocatable: DROP EXTENSION {ext} and CREATE EXTENSION {ext}"
            " SCHEMA public"
        )
        parts.append(f"extension {ext} is installed in schema {schema} ({how})")
    return (
        f"{'; '.join(parts)} {where}. pg_dump leaves extensions out and a database holds one copy"
        " of each, so the restored schema's columns and functions would reference types and"
        " functions that do not exist; nothing was created. Way out: move the extension to a"
        " schema the tenants share, as shown, on production (references keep working), and"
        " restore from a snapshot or point in time after the move"
    )
