"""Server restore on the local fleet: the production cluster's data directory is the "instance".

Set aside = stop production and rename `<root>/production/data` to `data.old-<suffix>`; restore =
copy the base backup into its place with production's current configuration files, recover to the
consistent point (`recovery_target = 'immediate'`, on the snapshot's timeline) and promote (a new
timeline starts; archiving stays on), on the SAME port so the DSN is unchanged. A rollback stops and
removes the half-restored directory, moves the WAL of the abandoned timeline out of the archive (so
that later point-in-time restores, which follow the latest timeline, never take it), renames the
original back and starts it on the same port.

On a managed fleet backed up by its own pgBackRest stanza (`fleet up --pgbackrest`) the restore is
`pgbackrest restore --delta`: the set-aside directory is never written; the new data directory is
seeded with a copy of it (without its WAL), and --delta checksums that copy and rewrites only what
differs from the backup, then recovery runs to the backup's consistent point or to a point in time.
WAL archiving of the restored server is held (archive_command empty: PostgreSQL keeps the segments)
until it is verified, so a rollback before that leaves nothing of the abandoned timeline in the
repository; the tool never writes to the repository except through pgBackRest's commands, so after
a rollback that comes later the original is moved onto a new timeline above the abandoned one
(later restores follow the latest timeline: the original's).

Modules: `backend` (the protocol, names, checks, snapshots, verification), `set_aside` (set aside,
final backup, delete the original), `base_backup` (restore from pg_basebackup, WAL quarantine),
`pgbackrest_delta` (restore by pgbackrest restore --delta), `recovery` (configuration, recovery and
promotion, the archiving hold), `rollback`, `names`.
"""

from restore_assets.backends.local.server_restore.backend import LocalInstanceBackend

__all__ = ["LocalInstanceBackend"]
