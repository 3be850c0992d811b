"""Artifacts in S3: `s3://<bucket>/<prefix><restore_id>/<name>`, always encrypted at rest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from restore_assets.backends.aws.clients import is_not_found
from restore_assets.backends.aws.config import RESTORE_ID_TAG
from restore_assets.backends.aws.ownership import NotOwned, check_free, tag_value
from restore_assets.core.errors import RestoreError

log = logging.getLogger("restore_assets.aws")


@dataclass(eq=False)
class S3Artifacts:
    """Keeps each restore's DDL files, task specs/results and reports under one S3 prefix."""

    client: Any
    bucket: str
    prefix: str = "restores/"
    sse: str = "AES256"
    kms_key_id: str | None = None

    def key(self, restore_id: str, name: str) -> str:
        """The object key of one artifact; refuses names that leave the restore's prefix."""
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise RestoreError(f"artifact name {name!r} escapes the restore's prefix")
        if "/" in restore_id or restore_id in ("", ".", ".."):
            raise RestoreError(f"restore id {restore_id!r} cannot name an S3 prefix")
        return f"{self.prefix}{restore_id}/{name}"

    def put(self, restore_id: str, name: str, data: bytes | str) -> str:
        """Store one artifact (server-side encrypted, tagged with the restore id) and return its
        s3:// URI; an existing object of that key without this restore's tag is never replaced."""
        body = data.encode() if isinstance(data, str) else data
        key = self.key(restore_id, name)
        try:
            found = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if not is_not_found(exc):
                raise
        else:
            check_free(f"s3://{self.bucket}/", key, found.get("TagSet"), restore_id)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ServerSideEncryption": self.sse,
            "Tagging": urlencode({RESTORE_ID_TAG: restore_id}),
        }
        if self.sse == "aws:kms" and self.kms_key_id:
            kwargs["SSEKMSKeyId"] = self.kms_key_id
        if name.endswith(".json"):
            kwargs["ContentType"] = "application/json"
        elif name.endswith(".sql"):
            kwargs["ContentType"] = "application/sql; charset=utf-8"
        elif name.endswith(".html"):
            kwargs["ContentType"] = "text/html; charset=utf-8"
        self.client.put_object(**kwargs)
        return f"s3://{self.bucket}/{kwargs['Key']}"

    def get(self, restore_id: str, name: str) -> bytes:
        """Read one artifact back."""
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key(restore_id, name))
        except Exception as exc:
            if is_not_found(exc):
                raise RestoreError(
                    f"artifact {name!r} of restore {restore_id} not found in s3://{self.bucket}/"
                    f"{self.prefix}{restore_id}/"
                ) from None
            raise
        return resp["Body"].read()

    def exists(self, restore_id: str, name: str) -> bool:
        """True when the artifact exists."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(restore_id, name))
        except Exception as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    def list(self, restore_id: str) -> list[str]:
        """Names of every artifact of a restore."""
        base = f"{self.prefix}{restore_id}/"
        names: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
            names += [o["Key"][len(base) :] for o in page.get("Contents", [])]
        return names

    def owned(self, restore_id: str, key: str) -> bool:
        """True when the object carries the tag `restore-assets:restore-id=<restore_id>`."""
        try:
            resp = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_not_found(exc):
                return True  # already gone: nothing to protect
            raise
        return tag_value(resp.get("TagSet")) == restore_id

    def purge(self, restore_id: str) -> None:
        """Delete every artifact of a restore that carries its tag (idempotent); objects under
        its prefix without that tag are kept and reported (NotOwned)."""
        base = f"{self.prefix}{restore_id}/"
        keys, foreign = [], []
        for name in self.list(restore_id):
            (keys if self.owned(restore_id, base + name) else foreign).append(base + name)
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[i : i + 1000]]
            resp = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True}
            )
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise RestoreError(
                    f"could not delete {len(errors)} artifact(s) of {restore_id}:"
                    f" {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        if foreign:
            message = (
                f"kept {len(foreign)} object(s) under s3://{self.bucket}/{base} without the tag"
                f" {RESTORE_ID_TAG}={restore_id} (not written by this restore): {foreign[:5]}"
            )
            log.error("%s", message)
            raise NotOwned(message)
