"""The launchpad forms are built from the core request models: one field list, one set of checks."""

from __future__ import annotations

import pytest

from restore_assets.core.errors import InvalidRequest
from restore_assets.core.request import RestoreRequest
from restore_assets.core.server_restore.model import InstanceRequest
from restore_assets.jobs.instance_restore import InstanceRestoreConfig, instance_restore
from restore_assets.jobs.schema_restore import RestoreRequestConfig, schema_restore
from restore_assets.jobs.snapshot import SnapshotConfig, snapshot

CASES = [
    (RestoreRequestConfig, RestoreRequest, {"compare", "detach_cleanup"}),
    (InstanceRestoreConfig, InstanceRequest, {"restore_id"}),
    (SnapshotConfig, InstanceRequest, {"restore_id"}),
]


@pytest.mark.parametrize(("config_cls", "model", "op_fields"), CASES)
def test_every_request_field_of_a_form_is_the_core_models(config_cls, model, op_fields) -> None:
    """Same names and descriptions; the only fields of its own are the op's (not the request's)."""
    form = config_cls.model_fields
    assert set(form) - set(model.model_fields) == op_fields
    for name in set(form) - op_fields:
        assert form[name].description == model.model_fields[name].description, name
        assert form[name].description
    assert config_cls.model_config["extra"] == "forbid"


def test_the_core_models_refuse_a_typo_naming_the_nearest_field() -> None:
    with pytest.raises(InvalidRequest, match="'keep_olds' \\(did you mean 'keep_old'\\?\\)"):
        InstanceRequest.parse({"snapshot_id": "snap-1", "keep_olds": True})
    with pytest.raises(InvalidRequest, match="did you mean 'snapshot_identifier'"):
        InstanceRequest.model_validate({"task": "create_snapshot", "snapshot_identifer": "n"})
    assert InstanceRequest.model_config["extra"] == "forbid"
    assert RestoreRequest.model_config["extra"] == "forbid"


def test_a_request_round_trips_through_its_dict() -> None:
    req = InstanceRequest.parse({"snapshot_id": "snap-1", "suffix": "x1", "keep_old": True})
    assert InstanceRequest.from_dict(req.to_dict()) == req
    assert req.to_dict()["keep_old"] is True


@pytest.mark.parametrize("job", [schema_restore, instance_restore, snapshot])
def test_the_default_launchpad_config_of_each_job_is_accepted(job) -> None:
    """The skeleton the launchpad opens with validates: no red before the user types."""
    import yaml
    from dagster._core.snap import JobSnap
    from dagster_graphql.schema.run_config import default_values_yaml_from_type_snap

    snap = JobSnap.from_job_def(job)
    schema = snap.config_schema_snapshot
    root = schema.get_config_snap(snap.mode_def_snaps[0].root_config_key)
    default = yaml.safe_load(default_values_yaml_from_type_snap(schema, root))
    # what the launchpad's editor checks: the config schema (a launch also runs the job's config
    # mapping, which refuses the empty skeleton of schema_restore before a run exists)
    from dagster._config import validate_config_from_snap

    assert validate_config_from_snap(schema, root.key, default).success
