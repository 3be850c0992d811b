"""backends/factory: the one place a backend is chosen, for both restores; typos refused at every level."""

from __future__ import annotations

from pathlib import Path

import pytest

from restore_assets.backends import factory
from restore_assets.core.errors import InvalidRequest


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"aws": {"snapshot_export": {"s3_bukcet": "b"}}},
            "'s3_bukcet' (did you mean 's3_bucket'?)",
        ),
        ({"alerts": {"smtp": {"hots": "mail"}}}, "'hots' (did you mean 'host'?)"),
        ({"alerts": {"ses": {"form": "a@b"}}}, "'form' (did you mean 'from'?)"),
        ({"instance_restore": {"final_backups": True}}, "did you mean 'final_backup'?"),
    ],
)
def test_nested_sections_refuse_a_typo_naming_the_nearest_key(
    tmp_path: Path, config: dict, message: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        factory.check_backend_keys({"root": str(tmp_path), **config})
    assert message in str(err.value)


def test_both_restores_get_their_backend_from_the_same_choice(tmp_path: Path) -> None:
    from restore_assets.backends.local.audit import SqliteAuditLog
    from restore_assets.backends.local.fleet import LocalFleet
    from restore_assets.backends.local.server_restore import LocalInstanceBackend

    config = {"root": str(tmp_path)}
    schema = factory.build_services(config)
    server = factory.server_restore_services(config, notifier=False)
    assert isinstance(schema.fleet, LocalFleet) and isinstance(schema.audit, SqliteAuditLog)
    assert isinstance(server.backend, LocalInstanceBackend)
    assert server.audit.path == schema.audit.path == tmp_path / "audit.sqlite"
    with pytest.raises(InvalidRequest, match="did you mean 'root'"):
        factory.server_restore_services({"roots": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown backend 'gcp'"):
        factory.build_services({"backend": "gcp", "root": str(tmp_path)})


def test_every_backend_package_has_the_same_entries() -> None:
    for name in factory.BACKENDS:
        package = factory.backend_package({"backend": name})
        for entry in ("services", "server_restore_backend", "audit_log"):
            assert callable(getattr(package, entry)), (name, entry)


def test_aws_without_an_audit_table_records_in_the_local_log(tmp_path: Path) -> None:
    from restore_assets.backends.local.audit import SqliteAuditLog

    audit = factory.audit_log({"backend": "aws", "root": str(tmp_path), "aws": {}})
    assert isinstance(audit, SqliteAuditLog)
