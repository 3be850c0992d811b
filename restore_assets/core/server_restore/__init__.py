"""core.server_restore."""
