"""What a restore on AWS would create, and an estimate of its time and cost (read-only)."""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any

import psycopg

from restore_assets.backends.aws.config import temp_secret_name

PLACEHOLDER = "<restore-id>"

_SIZE_SQL = """
SELECT n.nspname, coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::bigint
  FROM pg_catalog.pg_namespace n
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm', 'p')
 WHERE n.nspname = ANY(%s)
 GROUP BY n.nspname
"""


@cache
def price_table() -> dict[str, Any]:
    """The price table shipped with the package (restore_assets/backends/aws/pricing.json)."""
    text = resources.files("restore_assets.backends.aws").joinpath("pricing.json").read_text()
    return json.loads(text)


def hourly(table: str, instance_class: str, region: str | None) -> float | None:
    """On-demand hourly price of one class in a region (None when the table does not list it)."""
    prices = price_table()
    base = prices.get(table, {}).get(instance_class)
    if base is None:
        return None
    return round(base * prices["region_multiplier"].get(region or "us-east-1", 1.15), 4)


def _billed_hours(minutes: float) -> float:
    return max(minutes, price_table()["minimum_billed_minutes"]) / 60


def schema_sizes(dsn: str, schemas: list[str]) -> dict[str, int]:
    """Current on-disk size of each schema in production (a read-only query)."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return {s: int(b) for s, b in conn.execute(_SIZE_SQL, (list(schemas),)).fetchall()}


def plan_resources(fleet: Any, plan: Any) -> list[dict[str, Any]]:
    """Every resource the restore would create, then one `estimate` entry; no mutating API call."""
    cfg = fleet.cfg
    prices = price_table()
    durations = prices["durations_minutes"]
    region = fleet.rds.meta.region_name
    src = fleet._describe_source()
    rid = PLACEHOLDER
    req = plan.request
    sizes = schema_sizes(fleet.production_dsn(req.database), list(req.schemas))
    total_mb = sum(sizes.values()) / 1e6
    out: list[dict[str, Any]] = []
    action_suffix = "from_snapshot" if req.snapshot_id else "to_point_in_time"

    if src["topology"] == "aurora-cluster":
        cluster = src["cluster"]
        scaling = cluster.get("ServerlessV2ScalingConfiguration")
        writer_class = "db.serverless" if scaling else cfg.temp_instance_class
        provision_min = durations["aurora_cluster_restore"] + durations["aurora_writer_create"]
        out.append(
            {
                "kind": "rds-cluster",
                "identifier": cfg.temp_identifier(rid, "cluster"),
                "action": f"restore_db_cluster_{action_suffix}",
                "subnet_group": cfg.restore_subnet_group,
                "security_groups": list(cfg.restore_security_group_ids),
                "parameter_group": cfg.cluster_parameter_group,
                "serverless_v2_scaling": scaling,
            }
        )
        if scaling:
            acu = float(scaling.get("MinCapacity", 0.5) + scaling.get("MaxCapacity", 1)) / 2
            price = round(acu * prices["aurora_serverless_v2_acu_hour"], 4)
        else:
            price = hourly("aurora_postgres", writer_class, region)
        temp = {
            "kind": "rds-instance",
            "identifier": cfg.temp_identifier(rid, "writer"),
            "action": "create_db_instance (cluster writer)",
            "class": writer_class,
            "hourly_usd": price,
        }
    else:
        provision_min = durations["rds_instance_restore"]
        temp = {
            "kind": "rds-instance",
            "identifier": cfg.temp_identifier(rid, "db"),
            "action": f"restore_db_instance_{action_suffix}",
            "class": cfg.temp_instance_class,
            "subnet_group": cfg.restore_subnet_group,
            "security_groups": list(cfg.restore_security_group_ids),
            "parameter_group": cfg.parameter_group,
            "publicly_accessible": False,
            "hourly_usd": hourly("rds_postgres", cfg.temp_instance_class, region),
        }
    out.append(temp)
    out.append(
        {"kind": "aws-secret", "identifier": temp_secret_name(rid), "action": "create_secret"}
    )
    mover = cfg.mover
    throughput = prices["throughput_mb_per_s"][mover]
    copy_min = total_mb / throughput / 60
    task_start = durations["ecs_task_start"]
    ecs_runs = 3 + (len(req.schemas) if mover == "copy" else 0)
    dms_price = None
    if mover == "dms":
        dms_price = hourly("dms", cfg.dms_instance_class, region)
        out.append(
            {
                "kind": "dms-replication-instance",
                "identifier": cfg.temp_identifier(rid, "dms"),
                "class": cfg.dms_instance_class,
                "subnet_group": cfg.dms_subnet_group,
                "security_groups": list(cfg.dms_security_group_ids),
                "hourly_usd": dms_price,
            }
        )
        for role in ("src", "tgt"):
            out.append({"kind": "dms-endpoint", "identifier": cfg.temp_identifier(rid, role)})
        for schema in req.schemas:
            out.append(
                {
                    "kind": "dms-task",
                    "schema": schema,
                    "target_schema": plan.targets[schema],
                    "size_bytes": sizes.get(schema, 0),
                    "migration_type": "full-load",
                }
            )
    out.append(
        {
            "kind": "ecs-task",
            "runs": ecs_runs,
            "cluster": cfg.ecs_cluster,
            "task_definition": cfg.ecs_task_definition,
            "subnets": list(cfg.ecs_subnets),
            "assign_public_ip": "DISABLED",
        }
    )
    out.append(
        {
            "kind": "artifacts",
            "location": f"s3://{cfg.artifact_bucket}/{cfg.artifact_prefix}{rid}/",
            "retention": cfg.artifact_retention,
        }
    )
    ddl_min = durations["ddl_extract"] + 3 * task_start
    post_min = copy_min * prices["post_ddl_fraction_of_copy"]
    if mover == "copy":
        copy_min += task_start
    else:
        provision_min = max(provision_min, durations["dms_instance_create"])
    temp_minutes = provision_min + ddl_min + copy_min + post_min + durations["cleanup"]
    total_minutes = provision_min + ddl_min + copy_min + post_min
    temp_cost = (temp["hourly_usd"] or 0) * _billed_hours(temp_minutes)
    dms_cost = (dms_price or 0) * _billed_hours(temp_minutes) if mover == "dms" else 0.0
    task_cost = prices["fargate_task_hour"] * ecs_runs * max(task_start, 3) / 60
    if mover == "copy":
        task_cost += prices["fargate_task_hour"] * copy_min / 60
    unknown = [
        name
        for name, p in (("temporary instance", temp["hourly_usd"]), ("DMS", dms_price))
        if p is None and (name != "DMS" or mover == "dms")
    ]
    out.append(
        {
            "kind": "estimate",
            "minutes": math.ceil(total_minutes),
            "temporary_instance_hours": round(_billed_hours(temp_minutes), 2),
            "replication_instance_hours": round(_billed_hours(temp_minutes), 2)
            if mover == "dms"
            else 0,
            "cost_usd": round(temp_cost + dms_cost + task_cost, 2),
            "data_bytes": sum(sizes.values()),
            "currency": prices["currency"],
            "prices_as_of": prices["as_of"],
            "unpriced": unknown,
            "assumptions": (
                f"{throughput} MB/s with mover={mover}; RDS restore times from typical runs;"
                " on-demand prices from restore_assets/backends/aws/pricing.json"
            ),
        }
    )
    return out
