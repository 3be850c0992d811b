"""Configuration refuses unknown keys, naming the key and the nearest valid one; no fault switch ships."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pydantic
import pytest
import yaml

from restore_assets.backends.aws.config import AwsConfig
from restore_assets.backends.factory import build_services
from restore_assets.cli import main as cli
from restore_assets.core import runner
from restore_assets.core.errors import InvalidRequest
from restore_assets.jobs.instance_restore import (
    InstanceRestoreConfig,
    instance_request_as_run_config,
)
from restore_assets.jobs.resources import RestoreBackend
from restore_assets.jobs.schema_restore import RestoreRequestConfig, request_as_run_config
from restore_assets.jobs.snapshot import SnapshotConfig, snapshot_request_as_run_config

PACKAGE = Path(runner.__file__).resolve().parents[1]  # restore_assets/

AWS_SECTION = {
    "source_identifier": "db",
    "secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:x",
    "restore_subnet_group": "g",
    "restore_security_group_ids": ["sg-1"],
    "ecs_cluster": "c",
    "ecs_task_definition": "t",
    "ecs_subnets": ["s"],
    "ecs_security_group_ids": ["sg-2"],
    "artifact_bucket": "b",
    "audit_table": "a",
    "mover": "copy",
}


def test_aws_section_typo_is_refused_with_the_nearest_key() -> None:
    assert AwsConfig.from_mapping({"aws": AWS_SECTION}).artifact_bucket == "b"
    with pytest.raises(InvalidRequest) as err:
        AwsConfig.from_mapping({"aws": {**AWS_SECTION, "waiter_timout_s": 60}})
    assert "'waiter_timout_s' (did you mean 'waiter_timeout_s'?)" in str(err.value)
    assert not hasattr(AwsConfig, "extra")  # nothing keeps unknown keys aside any more


def test_backend_mapping_typos_are_refused_at_every_level(tmp_path: Path) -> None:
    cases = [
        ({"root": str(tmp_path), "copy_worker": 2}, "'copy_worker' (did you mean 'copy_workers'?)"),
        (
            {"root": str(tmp_path), "instance_restore": {"wait_timeout": 5}},
            "'wait_timeout' (did you mean 'wait_timeout_s'?)",
        ),
        (
            {"backend": "aws", "aws": {**AWS_SECTION, "artifact_buckets": "b"}},
            "'artifact_buckets' (did you mean 'artifact_bucket'?)",
        ),
        (
            {"root": str(tmp_path), "alerts": {"on_sucess": True}},
            "'on_sucess' (did you mean 'on_success'?)",
        ),
        # the former fault switches are unknown keys now
        ({"root": str(tmp_path), "fail_at_phase": "copy"}, "'fail_at_phase'"),
    ]
    for config, message in cases:
        with pytest.raises(InvalidRequest) as err:
            build_services(config)
        assert message in str(err.value), (config, str(err.value))
    assert not (tmp_path / "audit.sqlite").exists()  # refused before anything was created
    with pytest.raises(InvalidRequest, match="did you mean 'lock_timeout'"):
        RestoreBackend(root=str(tmp_path), config_file=_yaml(tmp_path, lock_timout="5s")).settings()


def _yaml(tmp_path: Path, **data: object) -> str:
    path = tmp_path / "backend.yaml"
    path.write_text(yaml.safe_dump({"backend": "local", **data}))
    return str(path)


def test_cli_refuses_a_backend_yaml_typo_without_a_trace(tmp_path: Path, capsys) -> None:
    config = _yaml(tmp_path, keep_artifact=False)
    rc = cli.main(
        ["restore", "--root", str(tmp_path / "fleet"), "--config", config, "--database", "d",
         "--schema", "s", "--restore-time", "2026-01-01T00:00:00Z", "--plan"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2
    assert "'keep_artifact' (did you mean 'keep_artifacts'?)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "fleet").exists()


@pytest.mark.parametrize(
    ("mapping", "config_cls", "valid", "typo", "nearest"),
    [
        (
            request_as_run_config,
            RestoreRequestConfig,
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "snapshot_id": "s-1",
                "suffix": "x",
            },
            "sufix",
            "suffix",
        ),
        (
            instance_request_as_run_config,
            InstanceRestoreConfig,
            {"snapshot_id": "snap-1", "keep_old": True},
            "keep_olds",
            "keep_old",
        ),
        (
            snapshot_request_as_run_config,
            SnapshotConfig,
            {"snapshot_identifier": "nightly"},
            "snapshot_identifer",
            "snapshot_identifier",
        ),
    ],
)
def test_launchpad_config_typo_is_refused_with_the_nearest_key(
    mapping: dg.ConfigMapping, config_cls: type[dg.Config], valid: dict, typo: str, nearest: str
) -> None:
    mapped = mapping.config_fn(dict(valid))
    assert mapped["ops"]  # a valid request maps to its validate op's config
    bad = {**valid, typo: valid.get(nearest, "x")}
    with pytest.raises(dg.DagsterInvalidConfigError) as err:
        mapping.config_fn(bad)
    assert f"'{typo}' (did you mean '{nearest}'?)" in str(err.value)
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        config_cls(**bad)  # the model itself forbids unknown keys
    for switch in ("fail_at", "fail_at_phase"):
        assert switch not in config_cls.model_fields


def test_the_job_refuses_an_unknown_launchpad_key_before_any_op(tmp_path: Path) -> None:
    from restore_assets.jobs.schema_restore import schema_restore

    with pytest.raises(dg.DagsterInvalidConfigError, match="did you mean 'suffix'"):
        schema_restore.execute_in_process(
            run_config={"database": "tenant_a", "schemas": ["customer_a1"], "sufix": "x"},
            resources={"backend": RestoreBackend(root=str(tmp_path))},
        )
    assert not (tmp_path / "audit.sqlite").exists()


# ---------------------------------------------------------------------------- no fault switch
def test_the_package_has_no_fault_switch() -> None:
    """Fault injection lives in tests/faults.py: no config key, field or env seam in the package."""
    pattern = re.compile(r"fail_at|PAUSE_AT_PHASE|injected failure")
    hits = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


@pytest.mark.timeout(60)
def test_the_former_pause_variable_does_nothing(monkeypatch) -> None:
    monkeypatch.setenv("RESTORE_ASSETS_PAUSE_AT_PHASE", "copy")
    result = runner.run_phase(None, None, "copy", lambda: 42)
    assert result.ok and result.value == 42


def test_the_phase_hook_does_nothing_unless_a_test_installs_one() -> None:
    from tests import faults

    assert runner.phase_hook(None, "copy", "before") is None
    with faults.fail_at("copy:after"):
        before = runner.run_phase(None, None, "copy:s1", lambda: 1)
    assert not before.ok and "injected failure after step copy:s1" in before.error
    assert runner.run_phase(None, None, "copy:s1", lambda: 1).ok
