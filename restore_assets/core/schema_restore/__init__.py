"""core.schema_restore."""
