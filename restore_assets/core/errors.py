"""Errors a user can hit: each carries a message that says what is wrong and what to do."""

from __future__ import annotations

from psycopg.errors import Error as PsycopgError


class RestoreError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidRequest(RestoreError):
    """Bad input, refused before anything is created."""


class FleetError(RestoreError):
    """A cluster, snapshot or WAL archive operation failed."""


class DdlError(RestoreError):
    """The DDL engine could not extract, split, rename or apply a dump."""


class GuardViolation(DdlError):
    """A DDL statement would create or change something outside the restored schema."""


class CopyError(RestoreError):
    """The data mover failed to copy a table."""


def server_message(exc: BaseException) -> str:
    """The server's primary message (and detail) of a psycopg error, else str(exc)."""
    if isinstance(exc, PsycopgError) and exc.diag.message_primary:
        msg = exc.diag.message_primary
        if exc.diag.message_detail:
            msg += f" ({exc.diag.message_detail})"
        return msg
    return str(exc).strip() or type(exc).__name__
