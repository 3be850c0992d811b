"""AWS DMS as the data mover: one replication instance per restore (created at the start of the
run), source and target endpoints reading their credentials from Secrets Manager, and one
full-load task per schema with escaped selection rules, a schema rename and LOB settings that
never truncate silently.

Modules: `settings` (table mappings, task and LOB settings), `manager` (the DMS objects of a
restore: create, wait, delete with proof of ownership), `mover` (the Mover protocol).
"""

from restore_assets.backends.aws.dms.manager import (
    ENDPOINT_RESOURCE,
    INSTANCE_RESOURCE,
    TASK_RESOURCE,
    DmsManager,
)
from restore_assets.backends.aws.dms.mover import DmsMover
from restore_assets.backends.aws.dms.settings import (
    escape_name,
    lob_settings,
    table_mappings,
    task_settings,
)

__all__ = [
    "ENDPOINT_RESOURCE",
    "INSTANCE_RESOURCE",
    "TASK_RESOURCE",
    "DmsManager",
    "DmsMover",
    "escape_name",
    "lob_settings",
    "table_mappings",
    "task_settings",
]
