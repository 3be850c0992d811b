"""The Mover protocol over DMS: one full-load task per schema, from the temporary database."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from restore_assets.backends.aws.config import AwsConfig, temp_secret_name
from restore_assets.backends.aws.dms.manager import DmsManager
from restore_assets.backends.aws.dms.settings import lob_settings
from restore_assets.backends.aws.tools_task import database_of
from restore_assets.backends.protocols import RecordResource
from restore_assets.core.errors import CopyError
from restore_assets.core.schema_restore.services import SchemaCopy


class DmsMover:
    """The Mover protocol over DMS: one full-load task per schema from the temporary database."""

    def __init__(self, manager: DmsManager, cfg: AwsConfig) -> None:
        self.manager = manager
        self.cfg = cfg

    def bind_restore(self, restore_id: str, record: RecordResource, stage: str = "") -> DmsMover:
        """This mover bound to one restore."""
        return DmsMover(self.manager.bind_restore(restore_id, record, stage), self.cfg)

    def copy(self, job: SchemaCopy, progress: Callable[[Any], None] | None) -> Any:
        """Copy every (or the listed) table of a schema with a DMS full-load task; a CopyReport."""
        from restore_assets.core.mover import CopyReport, TableCopy, plan_schema

        source_dsn, tables = job.source_dsn, job.tables
        schema, target_schema = job.schema, job.target_schema
        m = self.manager
        if m.restore_id is None:
            raise CopyError("the DMS mover must be bound to a restore (phases bind it)")
        started = time.monotonic()
        timeout = self.cfg.waiter_timeout_s
        database = database_of(source_dsn)
        with psycopg.connect(source_dsn, autocommit=True) as conn:
            expected = {p.table for p in plan_schema(conn, schema, target_schema, tables)}
        lob = lob_settings(source_dsn, schema, tables, self.cfg.dms_lob_mode)
        instance = m.wait_replication_instance(timeout)
        source = m.ensure_endpoint("source", temp_secret_name(m.restore_id), database)
        target = m.ensure_endpoint("target", self.cfg.secret_arn, database)
        m.test_connection(instance, source, timeout)
        m.test_connection(instance, target, timeout)
        selected = sorted(expected) if tables is not None else None
        arn = m.create_task(schema, target_schema, selected, instance, source, target, lob)
        task, stats = m.run_task(arn, max(1.0, timeout - (time.monotonic() - started)))
        report = CopyReport()
        loaded = set()
        for t in stats:
            if t.get("SchemaName") not in (schema, target_schema):
                continue
            loaded.add(t["TableName"])
            start, end = t.get("FullLoadStartTime"), t.get("FullLoadEndTime")
            seconds = (end - start).total_seconds() if start and end else 0.0
            done = TableCopy(
                schema=schema,
                table=t["TableName"],
                target_schema=target_schema,
                rows=int(t.get("FullLoadRows") or 0),
                bytes=0,
                seconds=seconds,
                format="dms",
            )
            report.tables.append(done)
            if progress is not None:
                progress(done)
        missing = sorted(expected - loaded)
        if missing:
            raise CopyError(
                f"DMS task for {schema} did not load table(s) {', '.join(missing)}:"
                " check the task's table mappings and logs"
            )
        report.seconds = round(time.monotonic() - started, 6)
        return report
