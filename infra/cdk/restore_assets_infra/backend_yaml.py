"""The backend configuration YAML the restore-assets AWS backend reads (`backend: aws`).

One renderer for both places it is produced: the `BackendConfigYaml` stack output (values are
CDK tokens, resolved by CloudFormation) and backend_config.py (values read from
`cdk deploy --outputs-file`). The keys and their order are the backend's contract. No aws_cdk import: the script runs
without node.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

# Keys of the `aws:` section, in order; list-valued keys are rendered as flow sequences.
AWS_KEYS: tuple[str, ...] = (
    "region_name",
    "source_identifier",
    "secret_arn",
    "restore_subnet_group",
    "restore_security_group_ids",
    "temp_instance_class",
    "parameter_group",
    "dms_subnet_group",
    "dms_security_group_ids",
    "dms_instance_class",
    "dms_secrets_role_arn",
    "ecs_cluster",
    "ecs_task_definition",
    "ecs_container_name",
    "ecs_subnets",
    "ecs_security_group_ids",
    "artifact_bucket",
    "artifact_prefix",
    "audit_table",
    "mover",
)
LIST_KEYS = frozenset(
    {
        "restore_security_group_ids",
        "dms_security_group_ids",
        "ecs_subnets",
        "ecs_security_group_ids",
    }
)
# Stack output key -> YAML key: the outputs backend_config.py turns back into the YAML.
OUTPUT_KEYS: dict[str, str] = {
    "RegionName": "region_name",
    "SourceIdentifier": "source_identifier",
    "SecretArn": "secret_arn",
    "RestoreSubnetGroup": "restore_subnet_group",
    "RestoreSecurityGroupIds": "restore_security_group_ids",
    "TempInstanceClass": "temp_instance_class",
    "DmsSubnetGroup": "dms_subnet_group",
    "DmsSecurityGroupIds": "dms_security_group_ids",
    "DmsInstanceClass": "dms_instance_class",
    "DmsSecretsAccessRoleArn": "dms_secrets_role_arn",
    "EcsCluster": "ecs_cluster",
    "EcsTaskDefinition": "ecs_task_definition",
    "EcsContainerName": "ecs_container_name",
    "EcsSubnets": "ecs_subnets",
    "EcsSecurityGroupIds": "ecs_security_group_ids",
    "ArtifactBucket": "artifact_bucket",
    "ArtifactPrefix": "artifact_prefix",
    "AuditTable": "audit_table",
    "Mover": "mover",
}
BACKEND_YAML_OUTPUT = "BackendConfigYaml"
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]*")
# How an unresolved CDK string token looks; kept literal here so that backend_config.py does not
# need aws_cdk (and node) just to write a YAML file.
_TOKEN = re.compile(r"\$\{Token\[")
_YAML_WORDS = frozenset({"null", "true", "false", "yes", "no", "on", "off", "~"})


def scalar(value: Any) -> str:
    """One YAML scalar: plain when unambiguous, JSON-quoted otherwise; tokens left as they are."""
    if value is None:
        return "null"
    text = str(value)
    if _TOKEN.search(text):
        return text
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        try:
            float(text)
        except ValueError:
            return text
    return json.dumps(text)


def render_backend_yaml(values: Mapping[str, Any]) -> str:
    """The full YAML document for `values` (a mapping with every key of AWS_KEYS)."""
    missing = [key for key in AWS_KEYS if key not in values]
    if missing:
        raise KeyError(f"backend configuration is missing {', '.join(missing)}")
    lines = ["backend: aws", "aws:"]
    for key in AWS_KEYS:
        value = values[key]
        if key in LIST_KEYS:
            items: Sequence[Any] = value if isinstance(value, list | tuple) else [value]
            lines.append(f"  {key}: [{', '.join(scalar(v) for v in items)}]")
        else:
            lines.append(f"  {key}: {scalar(value)}")
    return "\n".join(lines) + "\n"
