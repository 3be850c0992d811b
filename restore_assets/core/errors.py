"""Errors a user can hit: each carries a message that says what is wrong and what to do."""

from __future__ import annotations


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
