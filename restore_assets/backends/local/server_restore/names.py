"""The names of a local server restore: its one server, and the kinds of resources it records."""

IDENTIFIER = "production"
ASIDE_KIND = "local-set-aside"
RESTORED_KIND = "local-restored"
SNAPSHOT_KIND = "local-snapshot"
PGBACKREST_BACKUP_KIND = "pgbackrest-backup"
FINAL_BACKUPS = "final-backups"
