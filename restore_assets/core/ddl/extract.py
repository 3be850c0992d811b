"""Extract: pg_dump --schema-only of the schemas, and the values of their sequences."""

from __future__ import annotations

import os
import subprocess

import psycopg
from psycopg import sql

from restore_assets.core.ddl.extensions import extension_refusal, extensions_in
from restore_assets.core.ddl.names import target_name
from restore_assets.core.ddl.split import DdlBundle, build_bundle, strip_restrict
from restore_assets.core.errors import DdlError
from restore_assets.core.pgtools import pg_bin

DUMP_TIMEOUT_S = 3600
_SEQUENCE_BATCH = 500


def schema_pattern(schema: str) -> str:
    """A pg_dump -n pattern matching exactly this schema name (double-quoted, quotes doubled)."""
    return '"' + schema.replace('"', '""') + '"'


def dump_schema_ddl(dsn: str, schemas: list[str], *, timeout: float = DUMP_TIMEOUT_S) -> str:
    r"""pg_dump --schema-only of exactly these schemas (UTF-8), \restrict lines stripped."""
    if not schemas:
        raise DdlError("no schema to dump")
    args = [
        pg_bin("pg_dump"),
        "--schema-only",
        "--strict-names",
        "--encoding=UTF8",
        "--no-password",
    ]
    for schema in schemas:
        args += ["--schema", schema_pattern(schema)]
    # the password travels in the environment, never on the command line (visible in ps)
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    password = params.pop("password", None)
    args += ["--dbname", psycopg.conninfo.make_conninfo(**params)]
    env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "30")}
    if password is not None:
        env["PGPASSWORD"] = str(password)
    try:
        proc = subprocess.run(
            args, capture_output=True, timeout=timeout, env=env, check=False, cwd="/"
        )
    except subprocess.TimeoutExpired as exc:
        raise DdlError(
            f"pg_dump of schemas {schemas} did not finish within {timeout:.0f}s"
        ) from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = " | ".join(err[-5:]) if err else f"exit code {proc.returncode}"
        raise DdlError(f"pg_dump --schema-only of schemas {schemas} failed: {tail}")
    return strip_restrict(proc.stdout.decode("utf-8"))


def read_sequence_values(
    conn: psycopg.Connection, schemas: list[str]
) -> dict[tuple[str, str], tuple[int, bool]]:
    """(schema, sequence) -> (last_value, is_called) for every sequence of the schemas."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'S' AND n.nspname = ANY(%s) ORDER BY 1, 2",
        (list(schemas),),
    ).fetchall()
    out: dict[tuple[str, str], tuple[int, bool]] = {}
    for i in range(0, len(rows), _SEQUENCE_BATCH):
        batch = rows[i : i + _SEQUENCE_BATCH]
        parts = [
            sql.SQL("SELECT {}::int AS i, last_value, is_called FROM {}").format(
                sql.Literal(j), sql.Identifier(schema, name)
            )
            for j, (schema, name) in enumerate(batch)
        ]
        for j, last_value, is_called in conn.execute(sql.SQL(" UNION ALL ").join(parts)):
            out[batch[j]] = (int(last_value), bool(is_called))
    return out


def read_unpopulated_matviews(conn: psycopg.Connection, schemas: list[str]) -> set[tuple[str, str]]:
    """Materialized views of the schemas that are not populated (they must not be refreshed)."""
    rows = conn.execute(
        "SELECT schemaname, matviewname FROM pg_catalog.pg_matviews"
        " WHERE schemaname = ANY(%s) AND NOT ispopulated",
        (list(schemas),),
    ).fetchall()
    return {(s, m) for s, m in rows}


def extract(dsn: str, schemas: list[str], suffix: str, *, include_owner: bool = False) -> DdlBundle:
    """Dump the schemas, read their sequences, and build the bundle renaming s -> s_<suffix>."""
    renames = {s: target_name(s, suffix) for s in schemas}
    dump = dump_schema_ddl(dsn, schemas)
    with psycopg.connect(dsn) as conn:
        values = read_sequence_values(conn, schemas)
        unpopulated = read_unpopulated_matviews(conn, schemas)
        refusal = extension_refusal(extensions_in(conn, schemas), "at the restore point")
    if refusal:  # before anything is created in production
        raise DdlError(refusal)
    bundle = build_bundle(
        dump,
        renames,
        values,
        include_owner=include_owner,
        unpopulated_matviews=unpopulated,
    )
    bundle.check_guard()  # a refused or unknown statement stops the restore before anything is created
    return bundle
