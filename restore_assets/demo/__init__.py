"""The multi-tenant demo: tenant schemas, generated data, application activity and an incident.

`seed` creates the databases and schemas of a layout (DEMO_LAYOUT by default) and fills them,
`activity` writes like the application for a while, `incident` damages one schema the way a
faulty job would, and `schema_ddl` is the DDL of one tenant schema.
"""

from restore_assets.demo.activity import activity
from restore_assets.demo.incident import incident
from restore_assets.demo.schema import APP_ROLE, DEMO_LAYOUT, TABLES, schema_ddl
from restore_assets.demo.seed import seed, sizes, table_counts

__all__ = [
    "APP_ROLE",
    "DEMO_LAYOUT",
    "TABLES",
    "activity",
    "incident",
    "schema_ddl",
    "seed",
    "sizes",
    "table_counts",
]
