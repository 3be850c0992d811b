"""Server restore on RDS / Aurora through a plain boto3 RDS client.

Restore in place keeping the endpoint: rename the original to `<id>-old-<suffix>` (and, for an
Aurora cluster, every member instance), restore the snapshot under the original identifier with
every setting of the original passed explicitly, wait for it and every member, then delete the
renamed original with a final snapshot. The restored target is created WITHOUT deletion protection
(turned on once it is verified), so a rollback can always delete it.

Modules: `backend` (the protocol, names and checks), `config` (describe -> call parameters),
`rds` (describe, waits, rename), `snapshots` (check, take, export to S3), `swap` (set aside,
restore, wait, delete the original), `rollback`.
"""

from restore_assets.backends.aws.server_restore.backend import AwsInstanceBackend

__all__ = ["AwsInstanceBackend"]
