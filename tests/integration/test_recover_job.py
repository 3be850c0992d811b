"""The recover_rows Dagster job: the plan step records metadata; only `apply: true` writes."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

from restore_assets.jobs.recover_rows import recover_rows
from restore_assets.jobs.resources import RestoreBackend
from tests.integration.recover_helpers import (
    checksum,
    copy_as_restored,
    drop_database,
    fresh_database,
    record_restore,
    services_for,
)

pytestmark = pytest.mark.integration

DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.users (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE {s}.orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES {s}.users (id));
"""


def test_recover_rows_job_plans_then_applies_only_when_asked(demo_fleet):
    name = "rec_job"
    dsn = fresh_database(demo_fleet, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL(DDL).format(s=psycopg.sql.Identifier("app")))
            conn.execute("INSERT INTO app.users VALUES (1, 'a@x'), (2, 'b@x')")
            conn.execute("INSERT INTO app.orders VALUES (10, 1), (20, 2)")
        copy_as_restored(dsn, DDL, "app", "app_r", ["users", "orders"])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM app.orders WHERE id = 10")
            conn.execute("DELETE FROM app.users WHERE id = 1")
        rid = record_restore(services_for(demo_fleet), dsn, name, {"app": "app_r"})
        resources = {"backend": RestoreBackend(root=str(demo_fleet.root))}
        before = checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")

        config = {"restore_id": rid, "tables": ["orders"], "deleted": True}
        result = recover_rows.execute_in_process(run_config=config, resources=resources)
        assert result.success
        meta = result.output_for_node("plan_recovery")["summary"]["tables"]
        assert meta["app.orders"]["inserts"] == 1 and meta["app.users"]["inserts"] == 1
        plan_event = next(
            e
            for e in result.all_node_events
            if e.node_name == "plan_recovery" and e.event_type_value == "STEP_OUTPUT"
        )
        recorded = plan_event.event_specific_data.metadata
        assert recorded["totals"].data["inserts"] == 2 and "INSERT INTO" in recorded["sql"].value
        assert result.output_for_node("apply_recovery")["applied"] is False
        assert (checksum(dsn, "app", "users"), checksum(dsn, "app", "orders")) == before

        with pytest.raises(dg.DagsterInvalidConfigError):  # refused in the launchpad's config
            recover_rows.execute_in_process(
                run_config={**config, "on_conflict": "maybe"}, resources=resources
            )
        bad = recover_rows.execute_in_process(
            run_config={**config, "restore_id": "r-unknown"},
            resources=resources,
            raise_on_error=False,
        )
        failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
        assert "unknown restore id 'r-unknown'" in failure.event_specific_data.error.message
        result = recover_rows.execute_in_process(
            run_config={**config, "apply": True}, resources=resources
        )
        assert result.success
        out = result.output_for_node("apply_recovery")
        assert out["applied"] and out["tables"]["app.users"]["inserted"] == 1
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM app.orders").fetchone()[0] == 2
    finally:
        drop_database(demo_fleet, name)
