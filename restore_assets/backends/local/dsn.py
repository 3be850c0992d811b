"""libpq connection strings of the local fleet: mask or drop their password, connect, and hand the
password to a program run as the server user."""

from __future__ import annotations

import psycopg

from restore_assets.core.errors import FleetError


def mask_dsn(dsn: str) -> str:
    """A connection string with any password replaced by ***."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    if "password" in params:
        params["password"] = "***"
    return psycopg.conninfo.make_conninfo(**params)


def without_password(dsn: str) -> str:
    """A connection string without its password (to pass on a command line, where ps shows it)."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo(**params)


def connect(dsn: str) -> psycopg.Connection:
    """A connection to dsn (10 s timeout); FleetError naming the masked DSN when it fails."""
    try:
        return psycopg.connect(dsn, connect_timeout=10)
    except psycopg.Error as exc:
        raise FleetError(f"cannot connect to {mask_dsn(dsn)}: {str(exc).strip()}") from None


def password_env(dsn: str) -> dict[str, str]:
    """PGPASSWORD for a program run as the server user, which cannot read the caller's pgpass file.

    libpq is asked which password it used (from the DSN, PGPASSWORD or a pgpass file).
    """
    with connect(dsn) as conn:
        password = conn.info.password
    return {"PGPASSWORD": str(password)} if password else {}
