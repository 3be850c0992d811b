"""The demo tenant loader (custom resource, Lambda, SQL asset) and the app's settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cdk_helpers import CDK_DIR, fake_layer_dir, load_module, resources
from restore_assets_infra.config import ConfigError, Settings
from restore_assets_infra.demo_sql import demo_tenant_sql, stage_loader_asset

pytestmark = pytest.mark.cdk


def _loader_module() -> Any:
    return load_module(CDK_DIR / "assets" / "demo_loader" / "index.py", "demo_loader_index")


def test_demo_sql_has_the_four_tables_per_schema() -> None:
    text = demo_tenant_sql()
    for table in ("users", "products", "orders", "order_items"):
        assert f'CREATE TABLE "{{{{SCHEMA_NAME}}}}".{table} (' in text


def test_demo_sql_is_the_local_demo_schema() -> None:
    """The Lambda loads exactly what `restore-assets demo seed` creates locally."""
    from restore_assets.demo.schema import ddl_parts

    loader = _loader_module()
    rendered = loader.render_sql(demo_tenant_sql(), "customer_a1")
    pre, post = ddl_parts("customer_a1")
    assert pre.strip() in rendered and post.strip() in rendered
    assert "{{" not in rendered


def test_render_sql_substitutes_the_schema_in_one_transaction() -> None:
    loader = _loader_module()
    sql = loader.render_sql(demo_tenant_sql(), "customer_a1")
    assert "{{SCHEMA_NAME}}" not in sql
    assert 'CREATE SCHEMA "customer_a1";' in sql
    assert sql.startswith("BEGIN;\n") and sql.rstrip().endswith("COMMIT;")
    for bad in ("Customer", "a; DROP", "", "x" * 64, '"q"'):
        with pytest.raises(loader.LoaderError):
            loader.render_sql(demo_tenant_sql(), bad)


def test_staged_asset_holds_the_loader_and_the_sql() -> None:
    staged, digest = stage_loader_asset()
    assert (staged / "demo_loader" / "index.py").is_file()
    assert (staged / "demo_tenant.sql").read_text() == demo_tenant_sql()
    assert not (staged / "demo_loader" / "requirements.txt").exists()
    assert len(digest) == 64


def test_delete_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = _loader_module()
    monkeypatch.setattr(loader, "load", lambda *a: pytest.fail("delete must not load"))
    result = loader.handler({"RequestType": "Delete", "PhysicalResourceId": "demo-x"}, None)
    assert result == {"PhysicalResourceId": "demo-x"}


@pytest.mark.parametrize("variant", ["single_az", "aurora_serverless"])
def test_custom_resource_and_lambda(template_of: Any, variant: str) -> None:
    template = template_of(variant)
    (demo,) = resources(template, "Custom::DemoTenants").values()
    props = demo["Properties"]
    assert props["Database"] == "tenant_a"
    assert props["Schemas"] == ["customer_a1", "customer_a2"]
    assert len(props["SqlSha256"]) == 64
    functions = resources(template, "AWS::Lambda::Function")
    (loader,) = [
        f
        for f in functions.values()
        if f["Properties"].get("Handler", "").startswith("demo_loader")
    ]
    lprops = loader["Properties"]
    assert lprops["Runtime"].startswith("python3.")
    assert lprops["Handler"] == "demo_loader.index.handler"
    assert lprops["VpcConfig"]["SubnetIds"]
    assert len(lprops["Layers"]) == 1
    assert "SECRET_ARN" in lprops["Environment"]["Variables"]
    assert "LoggingConfig" in lprops  # its own log group, with retention
    # The loader runs after the database and after its network path exists.
    depends = " ".join(demo.get("DependsOn", []))
    assert "Database" in depends and "SecretsManager" in depends


def test_no_loader_when_demo_data_is_off(template_of: Any) -> None:
    assert not resources(template_of("multi_az"), "Custom::DemoTenants")


def test_missing_layer_is_a_clear_error(tmp_path: Path) -> None:
    import aws_cdk as cdk
    from restore_assets_infra.stack import build

    app = cdk.App(
        outdir=str(tmp_path),
        context={
            "selectedDatabase": "SingleAz",
            "imageUri": "example/image:1",
            "pg8000LayerDir": str(tmp_path / "nope"),
        },
    )
    with pytest.raises(ConfigError, match="build_layer.py"):
        build(app)


# -- settings ---------------------------------------------------------------------------------
def test_settings_defaults() -> None:
    settings = Settings.from_mapping({})
    assert settings.selected_database == "None"
    assert settings.create_dms_roles is True
    assert settings.deploy_dagster is False
    assert settings.artifact_retention_days == 30
    assert settings.deletion_protection is True


def test_settings_parse_cli_strings() -> None:
    settings = Settings.from_mapping(
        {
            "selectedDatabase": "auroraserverless",
            "createDmsRoles": "false",
            "artifactRetentionDays": "7",
            "dagsterRolePrincipals": "arn:aws:iam::1:role/a, arn:aws:iam::1:role/b",
            "pg8000LayerDir": str(fake_layer_dir()),
        }
    )
    assert settings.selected_database == "AuroraServerless"
    assert settings.create_dms_roles is False
    assert settings.artifact_retention_days == 7
    assert settings.dagster_role_principals == ["arn:aws:iam::1:role/a", "arn:aws:iam::1:role/b"]


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"selectedDatabase": "Oracle"}, "selectedDatabase"),
        ({"createDmsRoles": "maybe"}, "createDmsRoles"),
        ({"artifactRetentionDays": "0"}, "artifactRetentionDays"),
        ({"selectedDatabase": "SingleAz", "sourceIdentifier": "x"}, "sourceIdentifier"),
        ({"sourceSecretArn": "my-secret"}, "full ARN"),
        ({"artifactPrefix": "restores"}, "artifactPrefix"),
        ({"tempIdentifierPrefix": "Bad_Prefix"}, "tempIdentifierPrefix"),
    ],
)
def test_settings_reject_bad_values(context: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_mapping(context)


def test_app_context_arguments() -> None:
    app = load_module(CDK_DIR / "app.py", "restore_assets_cdk_app")
    assert app.parse_context_args(["-c", "a=1", "--context", "b=x=y", "--context=c=3"]) == {
        "a": "1",
        "b": "x=y",
        "c": "3",
    }
    with pytest.raises(ConfigError):
        app.parse_context_args(["--bogus"])
    assert app.main(["-c", "selectedDatabase=Oracle"]) == 2


def test_cdk_json_runs_the_app_with_the_project_venv() -> None:
    config = json.loads((CDK_DIR / "cdk.json").read_text())
    assert config["app"] == "../../.venv/bin/python app.py"


def test_missing_source_settings_are_warned_about() -> None:
    from aws_cdk.assertions import Annotations, Match
    from cdk_helpers import synth_stack

    annotations = Annotations.from_stack(synth_stack("default"))
    annotations.has_warning("/RestoreAssets/Database", Match.string_like_regexp("sourceIdentifier"))
    assert not Annotations.from_stack(synth_stack("existing")).find_warning("*", Match.any_value())
