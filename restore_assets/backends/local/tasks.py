"""Local implementations of the DDL task (a subprocess of pg_dump plus the engine) and the COPY mover."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from restore_assets.core import ddl
from restore_assets.core.ddl.parallel import apply_post
from restore_assets.core.mover import copy_schema
from restore_assets.core.mover.mover import TablePost
from restore_assets.core.schema_restore.services import DdlBatch, SchemaCopy


class LocalDdlTask:
    """Runs the DDL engine in this process (pg_dump as a subprocess)."""

    def __init__(self, lock_timeout: str = "5s", workers: int = 4) -> None:
        self.lock_timeout = lock_timeout
        self.workers = workers

    def extract(self, dsn: str, schemas: list[str], suffix: str) -> ddl.DdlBundle:
        """A DdlBundle of the schemas, renamed to `<schema>_<suffix>`."""
        return ddl.extract(dsn, schemas, suffix)

    def apply(self, batch: DdlBatch, on_start: Callable[[int], None]) -> None:
        """Guard, then apply statements in one transaction; on_start gets its xid before anything runs."""
        ddl.guard(batch.statements, batch.allowed_schemas)
        with psycopg.connect(batch.dsn) as conn:
            xid = conn.execute("SELECT pg_catalog.txid_current()").fetchone()[0]
            on_start(int(xid))
            ddl.apply(conn, batch.statements, lock_timeout=self.lock_timeout)

    def apply_post(self, batch: DdlBatch) -> dict[str, int]:
        """Guard, then apply post: per-table index and key builds in parallel, then the rest."""
        return apply_post(
            batch.dsn,
            batch.statements,
            batch.allowed_schemas,
            workers=self.workers,
            lock_timeout=self.lock_timeout,
        )


class CopyMover:
    """The parallel COPY streaming mover (builds each table's indexes as soon as it is copied)."""

    pipelines_post = True  # copy() takes each table's post builds

    def __init__(self, workers: int = 4) -> None:
        self.workers = workers

    def copy(
        self, job: SchemaCopy, progress: Callable[[Any], None] | None, post: TablePost | None = None
    ) -> Any:
        """Copy every (or the listed) table of a schema (and build each as it ends); the CopyReport."""
        return copy_schema(
            job.source_dsn,
            job.target_dsn,
            job.schema,
            job.target_schema,
            workers=self.workers,
            tables=job.tables,
            progress=progress,
            post=post,
        )
