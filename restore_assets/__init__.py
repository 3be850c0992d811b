"""restore-assets: tenant-level point-in-time restore for multi-tenant PostgreSQL."""

__version__ = "0.1.0"
