"""The parallel COPY data mover: a schema's tables from the temporary database into production."""

from restore_assets.core.mover.mover import CopyReport, TableCopy, copy_schema
from restore_assets.core.mover.plan import TablePlan, plan_schema

__all__ = ["CopyReport", "TableCopy", "TablePlan", "copy_schema", "plan_schema"]
