"""Helpers of the CDK tests: synthesis of each app variant (once per session), and walkers
over the synthesized template (IAM statements, security group rules). Imported by the test
modules as `cdk_helpers` (a unique name: the repository has other tests/ directories).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CDK_DIR = Path(__file__).resolve().parent.parent
if str(CDK_DIR) not in sys.path:
    sys.path.insert(0, str(CDK_DIR))
# jsii prints a banner on every start under Node 20; the tests do not need to see it.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

PUBLIC_IMAGE = "public.ecr.aws/docker/library/postgres:15"
ECR_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/restore-tools:1.0"

_WORK = Path(tempfile.mkdtemp(prefix="restore-assets-cdk-tests-"))
atexit.register(shutil.rmtree, _WORK, ignore_errors=True)


def load_module(path: Path, name: str) -> Any:
    """Import a file as a module under a unique name (app.py, backend_config.py, the loader)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_layer_dir() -> Path:
    """A stand-in for the built pg8000 layer (synthesis only checks that it exists)."""
    layer = _WORK / "pg8000-layer"
    package = layer / "python" / "pg8000"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("# test stand-in for pg8000\n")
    return layer


def small_docker_context() -> Path:
    """A tiny image build context, so asset-image variants do not depend on docker/Dockerfile."""
    context = _WORK / "docker-context"
    (context / "docker").mkdir(parents=True, exist_ok=True)
    (context / "docker" / "Dockerfile").write_text("FROM scratch\n")
    return context


# Every app variant the tests look at: name -> context. Each is synthesized at most once.
VARIANTS: dict[str, dict[str, Any]] = {
    # No context at all except where the image is built from: what `make cdk-synth` does.
    "default": {"dockerContext": "@docker"},
    "existing": {
        "sourceIdentifier": "prod-db",
        "sourceSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-AbCdEf",
        "sourceSecurityGroupId": "sg-0123456789abcdef0",
        "imageUri": ECR_IMAGE,
        "createDmsRoles": "false",
    },
    "single_az": {"selectedDatabase": "SingleAz", "imageUri": PUBLIC_IMAGE},
    "multi_az": {
        "selectedDatabase": "MultiAz",
        "imageUri": PUBLIC_IMAGE,
        "deletionProtection": "false",
        "loadDemoData": "false",
    },
    "aurora_provisioned": {"selectedDatabase": "AuroraProvisioned", "imageUri": PUBLIC_IMAGE},
    "aurora_serverless": {"selectedDatabase": "AuroraServerless", "imageUri": PUBLIC_IMAGE},
    "dagster": {
        "selectedDatabase": "SingleAz",
        "imageUri": ECR_IMAGE,
        "deployDagster": "true",
        "enableInstanceRestore": "true",
    },
}
DATABASE_VARIANTS = ["single_az", "multi_az", "aurora_provisioned", "aurora_serverless"]

_CACHE: dict[str, Any] = {}
_JSON: dict[int, tuple[Any, dict[str, Any]]] = {}


def tjson(template: Any) -> dict[str, Any]:
    """template.to_json(), computed once per template (each call is a round trip to node)."""
    key = id(template)
    if key not in _JSON:
        _JSON[key] = (template, template.to_json())
    return _JSON[key][1]


def context_for(variant: str) -> dict[str, Any]:
    """The CDK context of `variant`, with the test stand-ins filled in."""
    context = {"pg8000LayerDir": str(fake_layer_dir())}
    for key, value in VARIANTS[variant].items():
        context[key] = str(small_docker_context()) if value == "@docker" else value
    return context


def synth(variant: str) -> Any:
    """The synthesized stack of `variant` (cached for the session): an assertions.Template."""
    if variant not in _CACHE:
        import aws_cdk as cdk
        from aws_cdk.assertions import Template
        from restore_assets_infra.stack import build

        outdir = tempfile.mkdtemp(prefix=f"cdk-{variant}-", dir=_WORK)
        app = cdk.App(outdir=outdir, context=context_for(variant))
        stack = build(app)
        _CACHE[variant] = (Template.from_stack(stack), stack)
    return _CACHE[variant][0]


def synth_stack(variant: str) -> Any:
    """The RestoreAssetsStack object of `variant` (synthesized once, like synth())."""
    synth(variant)
    return _CACHE[variant][1]


# -- template walkers -------------------------------------------------------------------------
def resources(template: Any, type_name: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource of one type."""
    return {
        lid: res for lid, res in tjson(template)["Resources"].items() if res["Type"] == type_name
    }


def as_list(value: Any) -> list[Any]:
    """A policy element that may be a scalar or a list, as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def iam_statements(template: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement of the template: policies, managed policies, inline role policies,
    and resource policies of buckets and secrets. Yields (logical id, statement)."""
    for lid, res in tjson(template)["Resources"].items():
        props = res.get("Properties", {})
        docs = []
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append(props["PolicyDocument"])
        elif res["Type"] in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
        elif res["Type"] in ("AWS::S3::BucketPolicy", "AWS::SecretsManager::ResourcePolicy"):
            docs.append(props.get("PolicyDocument") or props.get("ResourcePolicy"))
        for doc in docs:
            for statement in as_list(doc.get("Statement")):
                yield lid, statement


def identity_statement_problems(template: Any, allowed_on_any: set[str]) -> list[str]:
    """Problems of the identity policies: `*` actions, NotAction/NotResource, and Allow
    statements on Resource "*" with any action outside `allowed_on_any`."""
    problems = []
    for lid, statement in iam_statements(template):
        res_type = tjson(template)["Resources"][lid]["Type"]
        if res_type in ("AWS::S3::BucketPolicy", "AWS::SecretsManager::ResourcePolicy"):
            continue  # resource policies: checked separately (they are Deny statements)
        actions = as_list(statement.get("Action"))
        sid = statement.get("Sid", "?")
        for action in actions:
            if action == "*" or (isinstance(action, str) and action.endswith(":*")):
                problems.append(f"{lid}/{sid}: wildcard action {action}")
        for key in ("NotAction", "NotResource", "NotPrincipal"):
            if key in statement:
                problems.append(f"{lid}/{sid}: uses {key}")
        if statement.get("Effect") == "Allow" and "*" in as_list(statement.get("Resource")):
            extra = sorted(set(actions) - allowed_on_any)
            if extra:
                problems.append(f"{lid}/{sid}: {extra} on Resource '*'")
    return problems


def ingress_rules(template: Any) -> list[dict[str, Any]]:
    """Every ingress rule: inline ones (with GroupId set to the owning group) and standalone."""
    rules = []
    for lid, res in resources(template, "AWS::EC2::SecurityGroup").items():
        for rule in res["Properties"].get("SecurityGroupIngress", []):
            rules.append({**rule, "GroupId": {"Fn::GetAtt": [lid, "GroupId"]}})
    for res in resources(template, "AWS::EC2::SecurityGroupIngress").values():
        rules.append(dict(res["Properties"]))
    return rules


def group_ref(logical_id: str) -> dict[str, Any]:
    """How the template refers to a security group's id."""
    return {"Fn::GetAtt": [logical_id, "GroupId"]}


def logical_id(template: Any, type_name: str, contains: str) -> str:
    """The single logical id of `type_name` whose id contains `contains`."""
    found = [lid for lid in resources(template, type_name) if contains in lid]
    assert len(found) == 1, f"{type_name} *{contains}*: {found}"
    return found[0]
