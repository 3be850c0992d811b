"""`restore-assets aws ...`: read-only checks of an AWS deployment and a finder for leftovers.

    restore-assets aws check --config backend.yaml       is everything the backend needs there?
    restore-assets aws leftovers --config backend.yaml   temporary objects still present, by restore id

Restores themselves use the common commands with `--backend aws --config backend.yaml`
(`restore ... --plan` prints what would be created and an estimate of time and cost;
`cleanup --restore-id` removes what a restore left).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from restore_assets.backends.factory import check_backend_keys
from restore_assets.cli.common import restore_id_arg
from restore_assets.core.errors import RestoreError


def load_config(path: str) -> dict[str, Any]:
    """The backend mapping from a YAML file (`backend: aws` + `aws:`)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise RestoreError(f"cannot read {path}: {exc.strerror}") from None
    check_backend_keys(data)  # a typo is refused, naming the nearest valid key
    data.setdefault("backend", "aws")
    return data


def _check(name: str, fn: Callable[[], str]) -> dict[str, Any]:
    try:
        return {"check": name, "ok": True, "detail": fn()}
    except Exception as exc:  # noqa: BLE001 - every check reports its own failure
        from restore_assets.backends.aws.secrets import redact

        return {"check": name, "ok": False, "detail": redact(f"{type(exc).__name__}: {exc}")}


def check(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Read-only checks: source, secret, subnet groups, ECS task definition, bucket, audit table."""
    from restore_assets.backends import aws

    services = aws.services(config)
    fleet = services.fleet
    cfg, clients = fleet.cfg, fleet.clients
    results = []

    def source() -> str:
        src = fleet.describe()
        w = src.window
        return (
            f"{src.identifier}: {src.topology} {src.engine_version}, window"
            f" {w.earliest.isoformat() if w.earliest else '-'} .. "
            f"{w.latest.isoformat() if w.latest else '-'}, {len(src.snapshots)} snapshot(s)"
        )

    def secret() -> str:
        creds = fleet.secrets.current(cfg.secret_arn)
        missing = [k for k in ("host", "port") if not getattr(creds, k)]
        return f"user {creds.username}" + (
            f" (no {', '.join(missing)}: the source endpoint is used)" if missing else ""
        )

    def subnet_group() -> str:
        g = clients.rds.describe_db_subnet_groups(DBSubnetGroupName=cfg.restore_subnet_group)
        return f"{len(g['DBSubnetGroups'][0]['Subnets'])} subnet(s)"

    def dms_subnet_group() -> str:
        if cfg.mover != "dms":
            return "not needed (mover: copy)"
        g = clients.dms.describe_replication_subnet_groups(
            Filters=[{"Name": "replication-subnet-group-id", "Values": [cfg.dms_subnet_group]}]
        )["ReplicationSubnetGroups"]
        if not g:
            raise RestoreError(f"replication subnet group {cfg.dms_subnet_group} not found")
        return g[0].get("SubnetGroupStatus", "present")

    def task_definition() -> str:
        td = clients.ecs.describe_task_definition(taskDefinition=cfg.ecs_task_definition)[
            "taskDefinition"
        ]
        names = [c["name"] for c in td["containerDefinitions"]]
        if cfg.ecs_container_name not in names:
            raise RestoreError(
                f"no container {cfg.ecs_container_name!r} in the task definition ({names})"
            )
        cluster = clients.ecs.describe_clusters(clusters=[cfg.ecs_cluster])["clusters"]
        if not cluster or cluster[0].get("status") != "ACTIVE":
            raise RestoreError(f"ECS cluster {cfg.ecs_cluster} is not active")
        return f"{td['family']}:{td['revision']} in {cluster[0]['clusterName']}"

    def bucket() -> str:
        clients.s3.head_bucket(Bucket=cfg.artifact_bucket)
        return f"s3://{cfg.artifact_bucket}/{cfg.artifact_prefix}"

    def audit_table() -> str:
        t = clients.dynamodb.describe_table(TableName=cfg.audit_table)["Table"]
        keys = [k["AttributeName"] for k in t["KeySchema"]]
        if keys != ["restore_id"]:
            raise RestoreError(f"the audit table's key is {keys}, expected ['restore_id']")
        return t.get("TableStatus", "present")

    for name, fn in (
        ("source", source),
        ("production secret", secret),
        ("restore subnet group", subnet_group),
        ("DMS subnet group", dms_subnet_group),
        ("ECS task definition", task_definition),
        ("artifact bucket", bucket),
        ("audit table", audit_table),
    ):
        results.append(_check(name, fn))
    return results


def leftovers(
    config: dict[str, Any], restore_id: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Temporary objects of restore-assets still present (RDS, DMS, secrets, ECS), by restore id."""
    from restore_assets.backends import aws
    from restore_assets.backends.aws.config import RESTORE_ID_TAG, TEMP_SECRET_PREFIX

    services = aws.services(config)
    cfg, clients = services.fleet.cfg, services.fleet.clients
    found: dict[str, list[dict[str, Any]]] = {}

    def add(rid: str | None, kind: str, ident: str, status: str | None = None) -> None:
        rid = rid or "?"
        if restore_id is None or rid == restore_id:
            found.setdefault(rid, []).append({"kind": kind, "identifier": ident, "status": status})

    def tag(tags: list[dict[str, str]] | None) -> str | None:
        return {t.get("Key"): t.get("Value") for t in tags or []}.get(RESTORE_ID_TAG)

    for page in clients.rds.get_paginator("describe_db_clusters").paginate():
        for c in page["DBClusters"]:
            if c["DBClusterIdentifier"].startswith(cfg.temp_identifier_prefix) or tag(
                c.get("TagList")
            ):
                add(tag(c.get("TagList")), "rds-cluster", c["DBClusterIdentifier"], c.get("Status"))
    for page in clients.rds.get_paginator("describe_db_instances").paginate():
        for i in page["DBInstances"]:
            if i["DBInstanceIdentifier"].startswith(cfg.temp_identifier_prefix) or tag(
                i.get("TagList")
            ):
                add(
                    tag(i.get("TagList")),
                    "rds-instance",
                    i["DBInstanceIdentifier"],
                    i.get("DBInstanceStatus"),
                )
    dms = clients.dms
    for op, key, ident_key, kind, status_key in (
        (
            "describe_replication_tasks",
            "ReplicationTasks",
            "ReplicationTaskIdentifier",
            "dms-task",
            "Status",
        ),
        ("describe_endpoints", "Endpoints", "EndpointIdentifier", "dms-endpoint", "Status"),
        (
            "describe_replication_instances",
            "ReplicationInstances",
            "ReplicationInstanceIdentifier",
            "dms-replication-instance",
            "ReplicationInstanceStatus",
        ),
    ):
        for item in _dms_all(dms, op, key):
            ident = item[ident_key]
            if not ident.startswith(cfg.temp_identifier_prefix):
                continue
            arn = next(
                v for k, v in item.items() if k.endswith("Arn") and k.startswith(kind_arn(kind))
            )
            tags = dms.list_tags_for_resource(ResourceArn=arn).get("TagList", [])
            add(tag(tags), kind, ident, item.get(status_key))
    pages = clients.secretsmanager.get_paginator("list_secrets").paginate(
        Filters=[{"Key": "name", "Values": [TEMP_SECRET_PREFIX]}]
    )
    for s in (s for page in pages for s in page.get("SecretList", [])):
        rid = tag(s.get("Tags")) or s["Name"][len(TEMP_SECRET_PREFIX) :].split("/")[0]
        add(rid, "aws-secret", s["Name"])
    return found


def kind_arn(kind: str) -> str:
    """The prefix of the ARN key of a DMS object in its description."""
    return {
        "dms-task": "ReplicationTask",
        "dms-endpoint": "Endpoint",
        "dms-replication-instance": "ReplicationInstance",
    }[kind]


def _dms_all(dms: Any, op: str, key: str) -> list[dict[str, Any]]:
    from restore_assets.backends.aws.clients import is_not_found

    try:
        return [item for page in dms.get_paginator(op).paginate() for item in page.get(key, [])]
    except Exception as exc:
        if is_not_found(exc):  # DMS answers "not found" when there is nothing to list
            return []
        raise


def cmd_aws_check(args: argparse.Namespace) -> int:
    """Print the read-only checks; exit 1 if any failed."""
    results = check(load_config(args.config))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['check']}: {r['detail']}")
    return 0 if all(r["ok"] for r in results) else 1


def cmd_aws_leftovers(args: argparse.Namespace) -> int:
    """Print temporary objects still present; exit 1 if there are any."""
    found = leftovers(load_config(args.config), args.restore_id)
    if args.json:
        print(json.dumps(found, indent=2))
    elif not found:
        print("no temporary objects of restore-assets found")
    else:
        for rid, items in sorted(found.items()):
            print(
                f"{rid}: (remove with `restore-assets cleanup --backend aws --config {args.config} --restore-id {rid}`)"
            )
            for item in items:
                print(f"  {item['kind']:<26} {item['identifier']}  {item['status'] or ''}")
    return 1 if found else 0


def register(sub: Any) -> None:
    """Add the `aws` command group to the `restore-assets` parser's subcommands."""
    group = sub.add_parser("aws", help="AWS backend: checks and leftovers").add_subparsers(
        dest="aws_cmd", required=True
    )
    p = group.add_parser("check", help="read-only checks of the AWS configuration and resources")
    p.add_argument("--config", required=True, help="backend configuration YAML")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_aws_check)
    p = group.add_parser("leftovers", help="temporary objects still present, by restore id")
    p.add_argument("--config", required=True, help="backend configuration YAML")
    p.add_argument("--restore-id", type=restore_id_arg, help="only this restore")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_aws_leftovers)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m restore_assets.cli.aws check --config backend.yaml`)."""
    parser = argparse.ArgumentParser(prog="restore-assets", description=__doc__.split("\n")[0])
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["aws", *(argv if argv is not None else sys.argv[1:])])
    try:
        return int(args.fn(args) or 0)
    except RestoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
