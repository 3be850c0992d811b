"""Database credentials from Secrets Manager: current, as of a point in time, and temporary copies.

A secret value is never logged, never put in an exception message and never written to the audit
log: `Credentials` masks its password in repr(), and `redact()` scrubs every secret value this
process has read out of any text (exception messages, audit fields) before it leaves.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from restore_assets.backends.aws.clients import is_not_found
from restore_assets.backends.aws.config import tags, temp_secret_name
from restore_assets.backends.aws.ownership import OWNER_KEY, check_free, check_owned
from restore_assets.core.errors import FleetError

log = logging.getLogger("restore_assets.aws")

SECRET_RESOURCE = "aws-secret"
PENDING = "AWSPENDING"

_known_values: set[str] = set()
_known_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Register a secret value so that `redact()` removes it from any text."""
    if value and len(value) >= 4:
        with _known_lock:
            _known_values.add(value)


def redact(text: str) -> str:
    """The text with every secret value this process has read replaced by ***."""
    with _known_lock:
        values = sorted(_known_values, key=len, reverse=True)
    for v in values:
        if v in text:
            text = text.replace(v, "***")
    return text


def redact_any(value: Any) -> Any:
    """redact() applied to every string inside a JSON-like value."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_any(v) for v in value]
    return value


@dataclass(frozen=True)
class Credentials:
    """Login of a database server from a secret (RDS format: username, password, host, port, dbname)."""

    username: str
    password: str = field(repr=False)
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    version_id: str | None = None
    created: datetime | None = None

    @classmethod
    def from_secret_string(
        cls, text: str, version_id: str | None = None, created: datetime | None = None
    ) -> Credentials:
        """Parse a JSON secret; a clear error (without the value) when it is not one."""
        try:
            data = json.loads(text)
        except ValueError:
            raise FleetError(
                "the database secret is not JSON: expected the RDS format"
                " {username, password, host, port, dbname}"
            ) from None
        if not isinstance(data, dict) or "username" not in data or "password" not in data:
            raise FleetError("the database secret has no username/password keys (RDS format)")
        remember_secret(str(data["password"]))
        port = data.get("port")
        return cls(
            username=str(data["username"]),
            password=str(data["password"]),
            host=data.get("host"),
            port=int(port) if port not in (None, "") else None,
            dbname=data.get("dbname"),
            version_id=version_id,
            created=created,
        )

    def dsn(self, host: str, port: int, database: str, sslmode: str = "prefer") -> str:
        """libpq connection string WITH the password: never log it."""
        return psycopg.conninfo.make_conninfo(
            host=host,
            port=port,
            dbname=database,
            user=self.username,
            password=self.password,
            sslmode=sslmode,
            connect_timeout=15,
            application_name="restore-assets",
        )

    def secret_string(self, host: str, port: int, dbname: str | None = None) -> str:
        """The JSON of a temporary secret with these credentials and another server's address."""
        return json.dumps(
            {
                "engine": "postgres",
                "username": self.username,
                "password": self.password,
                "host": host,
                "port": port,
                "dbname": dbname or self.dbname or "postgres",
            }
        )


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))


@dataclass
class VersionChoice:
    """Which version of a secret was current at a point in time, and whether history reached back."""

    version_id: str | None
    created: datetime | None
    fallback: bool
    warning: str | None = None


class SecretStore:
    """Reads the production secret (now or at a point in time) and manages temporary secrets."""

    def __init__(self, client: Any, warn: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.warn = warn or log.warning
        self._cache: dict[tuple[str, str | None], Credentials] = {}

    # -------------------------------------------------------------- reading
    def current(self, secret_id: str) -> Credentials:
        """The AWSCURRENT version of a secret."""
        return self._get(secret_id, None)

    def _get(self, secret_id: str, version_id: str | None) -> Credentials:
        key = (secret_id, version_id)
        if key not in self._cache:
            kwargs: dict[str, Any] = {"SecretId": secret_id}
            if version_id:
                kwargs["VersionId"] = version_id
            resp = self.client.get_secret_value(**kwargs)
            created = resp.get("CreatedDate")
            self._cache[key] = Credentials.from_secret_string(
                resp["SecretString"],
                version_id=resp.get("VersionId"),
                created=_as_datetime(created) if created else None,
            )
        return self._cache[key]

    def versions(self, secret_id: str) -> list[dict[str, Any]]:
        """Every version of a secret, deprecated ones included (all pages)."""
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "SecretId": secret_id,
            "IncludeDeprecated": True,
            "MaxResults": 100,
        }
        while True:
            resp = self.client.list_secret_version_ids(**kwargs)
            out += resp.get("Versions", [])
            token = resp.get("NextToken")
            if not token:
                return out
            kwargs["NextToken"] = token

    def version_at(self, secret_id: str, when: datetime) -> VersionChoice:
        """The version current at `when`: the newest created at or before it, never a pending-only one."""
        candidates = []
        oldest: datetime | None = None
        for v in self.versions(secret_id):
            if "CreatedDate" not in v:
                continue
            created = _as_datetime(v["CreatedDate"])
            stages = v.get("VersionStages") or []
            oldest = created if oldest is None or created < oldest else oldest
            if stages == [PENDING]:
                continue  # a rotation's candidate that never became current
            if created <= when:
                candidates.append((created, v["VersionId"]))
        if candidates:
            created, vid = max(candidates)
            return VersionChoice(vid, created, fallback=False)
        reach = oldest.isoformat() if oldest else "no version dates"
        return VersionChoice(
            None,
            None,
            fallback=True,
            warning=(
                f"the secret's version history does not reach back to {when.isoformat()}"
                f" (oldest kept version: {reach}): using its current version; if the password"
                " was rotated since, the temporary database will refuse it"
            ),
        )

    def at(self, secret_id: str, when: datetime) -> tuple[Credentials, VersionChoice]:
        """The credentials that were valid at `when` (falls back to the current version, warning)."""
        choice = self.version_at(secret_id, when)
        if not choice.fallback:
            try:
                return self._get(secret_id, choice.version_id), choice
            except Exception as exc:  # noqa: BLE001 - a version deleted since listing: fall back
                if not is_not_found(exc):
                    raise
                choice = VersionChoice(
                    None,
                    None,
                    fallback=True,
                    warning=f"secret version {choice.version_id} is no longer retrievable:"
                    " using the current version",
                )
        if choice.warning:
            self.warn(choice.warning)
        return self.current(secret_id), choice

    # -------------------------------------------------------------- temporary secrets
    def create_temp(
        self,
        restore_id: str,
        creds: Credentials,
        host: str,
        port: int,
        record: Callable[[str, str, dict[str, Any]], None],
        kms_key_id: str | None = None,
    ) -> str:
        """Create `restore-assets/<id>/temp-db` with the credentials and the temporary server's address."""
        name = temp_secret_name(restore_id)
        existing = self.check_free(name, restore_id)
        record(
            SECRET_RESOURCE,
            name,
            {"purpose": "temporary database credentials", OWNER_KEY: restore_id},
        )
        kwargs: dict[str, Any] = {
            "Name": name,
            "Description": f"restore-assets {restore_id}: credentials of the temporary database",
            "SecretString": creds.secret_string(host, port),
            "Tags": tags(restore_id),
        }
        if kms_key_id:
            kwargs["KmsKeyId"] = kms_key_id
        if existing is not None:  # this restore's own secret (a retried step): new value
            self.client.put_secret_value(SecretId=name, SecretString=kwargs["SecretString"])
            return str(existing["ARN"])
        resp = self.client.create_secret(**kwargs)
        return str(resp["ARN"])

    def _describe(self, secret_id: str) -> dict[str, Any] | None:
        try:
            return self.client.describe_secret(SecretId=secret_id)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    def check_free(self, name: str, restore_id: str) -> dict[str, Any] | None:
        """None when no secret has this name; its description when it is this restore's own;
        IdentifierTaken when another secret holds the name."""
        found = self._describe(name)
        if found is not None:
            check_free("secret", name, found.get("Tags"), restore_id)
        return found

    def temp(self, restore_id: str) -> Credentials:
        """The temporary secret of a restore (credentials + the temporary server's host/port)."""
        return self.current(temp_secret_name(restore_id))

    def delete(self, secret_id: str, *, owner: str) -> bool:
        """Delete a temporary secret of restore `owner` now (no recovery window) once its tag
        proves it is that restore's (NotOwned otherwise); False when it was already gone."""
        found = self._describe(secret_id)
        if found is None:
            return False
        check_owned("secret", secret_id, found.get("Tags"), owner)
        try:
            self.client.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
        except Exception as exc:
            if is_not_found(exc):
                return False
            raise
        return True
