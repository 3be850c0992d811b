"""Apply a statement list to a database in one transaction, with bounded lock waits."""

from __future__ import annotations

import psycopg
from psycopg import sql

from restore_assets.core.ddl.guard import guard
from restore_assets.core.errors import DdlError


def apply(
    conn: psycopg.Connection,
    statements: list[str],
    *,
    lock_timeout: str = "5s",
    statement_timeout: str | None = None,
    allowed_schemas: set[str] | None = None,
) -> None:
    """Run the statements in one transaction (all or nothing), lock waits bounded.

    The guard runs first, before anything is sent, when `allowed_schemas` is given (the restore
    job passes ``bundle.target_schemas``); a caller passing None takes responsibility for having
    run ``guard()`` itself. Inside the transaction: ``SET LOCAL lock_timeout`` (so a restore never
    queues behind application locks for long), ``check_function_bodies = off`` and optionally
    ``statement_timeout``. Pre and post are each applied by one call: a failure rolls the whole
    phase back and leaves nothing half-built. A failure raises DdlError naming the statement
    (first 200 characters) and the server's message.
    """
    if allowed_schemas is not None:
        guard(statements, allowed_schemas)
    settings = {"lock_timeout": lock_timeout, "check_function_bodies": "off"}
    if statement_timeout is not None:
        settings["statement_timeout"] = statement_timeout
    with conn.transaction():
        with conn.cursor() as cur:
            for name, value in settings.items():
                cur.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, value))
            for number, statement in enumerate(statements, 1):
                try:
                    cur.execute(sql.SQL(statement))  # type: ignore[arg-type]  # trusted, guarded
                except psycopg.Error as exc:
                    text = " ".join(statement.split())[:200]
                    diag = exc.diag.message_primary or str(exc).strip()
                    detail = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
                    raise DdlError(
                        f"statement {number} of {len(statements)} failed and the transaction was"
                        f" rolled back: {diag}{detail}. Statement: {text}"
                    ) from exc
