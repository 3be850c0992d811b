"""DDL engine: extract with pg_dump, split and rename with pglast, guard, apply.

Plain Python (no Dagster). Typical use::

    bundle = extract(temp_dsn, ["customer_a1"], default_suffix(restore_point))
    guard(bundle.pre + bundle.post, bundle.target_schemas)
    apply(prod_conn, bundle.pre, allowed_schemas=bundle.target_schemas)
    ...copy the data...
    apply(prod_conn, bundle.post, allowed_schemas=bundle.target_schemas)
"""

from restore_assets.core.ddl.apply import apply
from restore_assets.core.ddl.extract import (
    dump_schema_ddl,
    extract,
    read_sequence_values,
    read_unpopulated_matviews,
    schema_pattern,
)
from restore_assets.core.ddl.guard import guard, statement_violation
from restore_assets.core.ddl.names import (
    TargetNameTooLong,
    default_suffix,
    quote_ident,
    target_name,
)
from restore_assets.core.ddl.rename import Renamer
from restore_assets.core.ddl.split import DdlBundle, build_bundle, strip_restrict

__all__ = [
    "DdlBundle",
    "Renamer",
    "TargetNameTooLong",
    "apply",
    "build_bundle",
    "default_suffix",
    "dump_schema_ddl",
    "extract",
    "guard",
    "quote_ident",
    "read_sequence_values",
    "read_unpopulated_matviews",
    "schema_pattern",
    "statement_violation",
    "strip_restrict",
    "target_name",
]
