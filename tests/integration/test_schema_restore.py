"""The schema_restore job end to end on real local clusters: data, sequences, isolation, faults, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from restore_assets.core.schema_restore.services import PHASES
from restore_assets.jobs.launch import run_schema_restore
from tests import faults

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def schema_checksums(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    """md5 over every row's text, per ordinary or partition-leaf table of a schema."""
    tables = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1",
        (schema,),
    ).fetchall()
    out = {}
    for (t,) in tables:
        q = sql.SQL(
            "SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {}.{} x"
        ).format(sql.Identifier(schema), sql.Identifier(t))
        out[t] = conn.execute(q).fetchone()[0]
    return out


def sequence_state(conn: psycopg.Connection, schema: str) -> dict[str, tuple[int, bool]]:
    """(last_value, is_called) of every sequence of a schema."""
    seqs = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'S' ORDER BY 1",
        (schema,),
    ).fetchall()
    out = {}
    for (s,) in seqs:
        row = conn.execute(
            sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(s)
            )
        ).fetchone()
        out[s] = (row[0], row[1])
    return out


def schema_names(conn: psycopg.Connection) -> set[str]:
    """Every schema of a database."""
    return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}


def damage(conn: psycopg.Connection, schema: str) -> None:
    """Deletes and updates after the restore point."""
    s = sql.Identifier(schema)
    conn.execute(sql.SQL("DELETE FROM {}.order_items WHERE id % 3 = 0").format(s))
    conn.execute(sql.SQL("UPDATE {}.products SET price = price + 1").format(s))
    conn.execute(
        sql.SQL("INSERT INTO {}.users (email, name) VALUES ('late@example.com', 'Late')").format(s)
    )


def test_pitr_restore_of_two_schemas_equals_the_source_at_the_restore_point(demo_fleet):
    dsn = demo_fleet.production_dsn("tenant_a")
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = {s: schema_checksums(conn, s) for s in ("customer_a1", "customer_a2")}
        seqs = {s: sequence_state(conn, s) for s in ("customer_a1", "customer_a2")}
        time.sleep(0.2)
        point = datetime.now(UTC)
        time.sleep(0.2)
        damage(conn, "customer_a1")
        damage(conn, "customer_a2")
        live_after = {s: schema_checksums(conn, s) for s in ("customer_a1", "customer_a2")}
    with psycopg.connect(demo_fleet.production_dsn("tenant_b")) as conn:
        other_tenant = {s: schema_checksums(conn, s) for s in ("customer_b1", "customer_b2")}

    out = run_schema_restore(
        {
            "database": "tenant_a",
            "schemas": ["customer_a1", "customer_a2"],
            "restore_time": point.isoformat(),
            "suffix": "pitr",
        },
        {"root": str(demo_fleet.root)},
        compare=False,
    )
    assert out["status"] == "succeeded", out
    assert out["restored"] == {"customer_a1": "customer_a1_pitr", "customer_a2": "customer_a2_pitr"}
    assert set(out["artifacts"]) == {"pre.sql", "post.sql", "full.sql"}
    with psycopg.connect(dsn) as conn:
        for s in ("customer_a1", "customer_a2"):
            assert schema_checksums(conn, f"{s}_pitr") == before[s]
            assert sequence_state(conn, f"{s}_pitr") == seqs[s]
            assert schema_checksums(conn, s) == live_after[s]  # the live schema is untouched
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(f"{s}_pitr")))
    with psycopg.connect(demo_fleet.production_dsn("tenant_b")) as conn:
        assert {
            s: schema_checksums(conn, s) for s in ("customer_b1", "customer_b2")
        } == other_tenant
    assert demo_fleet.temp_instances() == []


def test_snapshot_restore_of_two_schemas_returns_the_snapshot_state(demo_fleet):
    dsn = demo_fleet.production_dsn("tenant_b")
    schemas = ("customer_b1", "customer_b2")
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = {s: schema_checksums(conn, s) for s in schemas}
        seqs = {s: sequence_state(conn, s) for s in schemas}
        snap = demo_fleet.snapshot()
        damage(conn, "customer_b1")
    out = run_schema_restore(
        {
            "database": "tenant_b",
            "schemas": list(schemas),
            "snapshot_id": snap.id,
            "suffix": "snap",
        },
        {"root": str(demo_fleet.root)},
        compare=True,
    )
    assert out["status"] == "succeeded", out
    with psycopg.connect(dsn, autocommit=True) as conn:
        for s in schemas:
            assert schema_checksums(conn, f"{s}_snap") == before[s]
            assert sequence_state(conn, f"{s}_snap") == seqs[s]
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(f"{s}_snap")))
    reports = out["report"]["reports"]
    assert reports["customer_b1"]["headline"]["rows_changed"] > 0
    assert reports["customer_b2"]["headline"]["tables_with_differences"] == 0
    assert os.path.exists(reports["customer_b1"]["html"])


def test_table_level_restore_brings_named_tables_and_their_references(demo_fleet):
    point = datetime.now(UTC)
    time.sleep(0.2)
    out = run_schema_restore(
        {
            "database": "tenant_a",
            "schemas": ["customer_a2"],
            "restore_time": point.isoformat(),
            "tables": ["orders"],
            "suffix": "tbl",
        },
        {"root": str(demo_fleet.root)},
        compare=False,
    )
    assert out["status"] == "succeeded", out
    out2 = run_schema_restore(
        {
            "database": "tenant_a",
            "schemas": ["customer_a2"],
            "restore_time": point.isoformat(),
            "tables": ["order_items"],
            "include_dependencies": False,
            "suffix": "nodeps",
        },
        {"root": str(demo_fleet.root)},
        compare=False,
    )
    assert out2["status"] == "succeeded", out2
    with psycopg.connect(demo_fleet.production_dsn("tenant_a"), autocommit=True) as conn:
        tables = lambda s: {  # noqa: E731
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
                (s,),
            )
        }
        assert tables("customer_a2_tbl") == {"orders", "users"}
        assert tables("customer_a2_nodeps") == {"order_items"}
        fks = conn.execute(
            "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname = 'customer_a2_nodeps' AND c.contype = 'f'"
        ).fetchone()[0]
        assert fks == 0
        for s in ("customer_a2_tbl", "customer_a2_nodeps"):
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(s)))


@pytest.mark.parametrize("phase", [p for p in PHASES if p not in ("validate", "compare", "finish")])
def test_failure_in_each_phase_leaves_nothing_behind(demo_fleet, phase):
    point = datetime.now(UTC)
    time.sleep(0.1)
    with psycopg.connect(demo_fleet.production_dsn("tenant_a")) as conn:
        schemas_before = schema_names(conn)
    with faults.fail_at(phase):
        out = run_schema_restore(
            {
                "database": "tenant_a",
                "schemas": ["customer_a1", "customer_a2"],
                "restore_time": point.isoformat(),
                "suffix": f"f{phase}",
            },
            {"root": str(demo_fleet.root)},
        )
    assert out["status"] == "failed", out
    assert f"injected failure in phase {phase}" in out["cause"]
    assert demo_fleet.temp_instances() == []
    with psycopg.connect(demo_fleet.production_dsn("tenant_a")) as conn:
        assert schema_names(conn) == schemas_before
    from restore_assets.backends.factory import build_services

    rec = build_services({"root": str(demo_fleet.root)}).audit.get(out["restore_id"])
    assert rec["status"] == "failed" and phase in rec["cause"]


def test_failure_of_one_schema_copy_among_several(demo_fleet):
    point = datetime.now(UTC)
    time.sleep(0.1)
    with faults.fail_at("copy:customer_a2"):
        out = run_schema_restore(
            {
                "database": "tenant_a",
                "schemas": ["customer_a1", "customer_a2"],
                "restore_time": point.isoformat(),
                "suffix": "onecopy",
            },
            {"root": str(demo_fleet.root)},
        )
    assert out["status"] == "failed"
    with psycopg.connect(demo_fleet.production_dsn("tenant_a")) as conn:
        assert not {"customer_a1_onecopy", "customer_a2_onecopy"} & schema_names(conn)
    assert demo_fleet.temp_instances() == []


def test_bad_requests_are_rejected_before_anything_is_created(demo_fleet):
    cases = [
        (
            {"database": "nope", "schemas": ["s"], "restore_time": datetime.now(UTC).isoformat()},
            "unknown database 'nope'",
        ),
        (
            {
                "database": "tenant_a",
                "schemas": ["nope"],
                "restore_time": datetime.now(UTC).isoformat(),
            },
            "unknown schema(s)",
        ),
        (
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "restore_time": "2000-01-01T00:00:00Z",
            },
            "before the earliest snapshot",
        ),
        (
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "restore_time": "2999-01-01T00:00:00Z",
            },
            "in the future",
        ),
        (
            {"database": "tenant_a", "schemas": ["customer_a1"], "snapshot_id": "snap-nope"},
            "unknown snapshot id",
        ),
        (
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "snapshot_id": "x",
                "restore_time": "2026-01-01T00:00:00Z",
            },
            "exactly one",
        ),
        (
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "restore_time": datetime.now(UTC).isoformat(),
                "suffix": "z" * 60,
            },
            "63",
        ),
        (
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "restore_time": datetime.now(UTC).isoformat(),
                "tables": ["nope"],
            },
            "unknown table(s)",
        ),
    ]
    with psycopg.connect(demo_fleet.production_dsn("tenant_a"), autocommit=True) as conn:
        before = schema_names(conn)
        conn.execute("CREATE SCHEMA customer_a1_taken")
    cases.append(
        (
            {
                "database": "tenant_a",
                "schemas": ["customer_a1"],
                "restore_time": datetime.now(UTC).isoformat(),
                "suffix": "taken",
            },
            "already exist",
        )
    )
    try:
        for request, message in cases:
            out = run_schema_restore(request, {"root": str(demo_fleet.root)})
            assert out["status"] == "rejected", (request, out)
            assert message in out["cause"], (message, out["cause"])
            assert demo_fleet.temp_instances() == []
    finally:
        with psycopg.connect(demo_fleet.production_dsn("tenant_a"), autocommit=True) as conn:
            conn.execute("DROP SCHEMA customer_a1_taken")
            assert schema_names(conn) == before


def test_killed_during_copy_then_cleanup_removes_everything(demo_fleet, tmp_path):
    point = datetime.now(UTC)
    time.sleep(0.1)
    rid = f"r-kill-{os.getpid()}"
    paused = tmp_path / "paused"
    cmd = [
        sys.executable, "-m", "tests.run_paused", "copy", str(paused),
        "restore", "--root", str(demo_fleet.root), "--database", "tenant_a",
        "--schema", "customer_a1", "--restore-time", point.isoformat(), "--suffix", "killed", "--restore-id", rid, "--json",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "err", "w"),
        start_new_session=True,
    )  # noqa: SIM115
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if paused.exists():
                break
            assert proc.poll() is None, (tmp_path / "err").read_text()[-2000:]
            time.sleep(0.3)
        else:
            raise AssertionError("restore never reached the copy phase")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert demo_fleet.temp_instances()  # the crash left the temporary cluster behind
    with psycopg.connect(demo_fleet.production_dsn("tenant_a")) as conn:
        assert "customer_a1_killed" in schema_names(conn)  # and the partial schema
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "restore_assets.cli.main",
            "cleanup",
            "--root",
            str(demo_fleet.root),
            "--restore-id",
            rid,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert rid in json.loads(res.stdout)["restore_id"]
    assert demo_fleet.temp_instances() == []
    with psycopg.connect(demo_fleet.production_dsn("tenant_a")) as conn:
        assert "customer_a1_killed" not in schema_names(conn)
    from restore_assets.backends.factory import build_services

    assert build_services({"root": str(demo_fleet.root)}).audit.get(rid)["status"] == "failed"


def test_job_refuses_bad_input_in_its_validate_op(demo_fleet):
    from restore_assets.backends.factory import build_services
    from restore_assets.jobs.resources import RestoreBackend
    from restore_assets.jobs.schema_restore import schema_restore

    result = schema_restore.execute_in_process(
        run_config={
            "database": "tenant_a",
            "schemas": ["customer_a1"],
            "snapshot_id": "snap-nope",
        },
        resources={"backend": RestoreBackend(root=str(demo_fleet.root))},
        raise_on_error=False,
        tags={"restore-assets/restore-id": "r-bad-op"},
    )
    assert not result.success
    rec = build_services({"root": str(demo_fleet.root)}).audit.get("r-bad-op")
    assert rec["status"] == "rejected" and "unknown snapshot id 'snap-nope'" in rec["cause"]
    assert demo_fleet.temp_instances() == []


def test_a_failed_run_launches_the_cleanup_job_which_removes_its_leftovers(demo_fleet):
    """The run failure sensor asks for `cleanup` keyed by the restore id; that job removes what is left."""
    import dagster as dg

    from restore_assets.backends.factory import build_services
    from restore_assets.jobs.resources import RestoreBackend
    from restore_assets.jobs.schema_restore import cleanup, cleanup_after_failure, schema_restore

    backend = RestoreBackend(root=str(demo_fleet.root))
    instance = dg.DagsterInstance.ephemeral()
    point = datetime.now(UTC)
    time.sleep(0.1)
    result = schema_restore.execute_in_process(
        run_config={
            "database": "tenant_a",
            "schemas": ["customer_a1"],
            "restore_time": point.isoformat(),
            "suffix": "sensor",
        },
        resources={"backend": backend},
        instance=instance,
        raise_on_error=False,
        op_selection=["validate_request", "detect_topology", "provision_temp_database"],
    )  # a run that stops after provisioning, as a crash would: the temporary cluster is left behind
    assert demo_fleet.temp_instances()
    ctx = dg.build_run_status_sensor_context(
        sensor_name="cleanup_after_failure",
        dagster_event=result.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    )
    request = cleanup_after_failure(ctx.for_run_failure())
    rid = f"dg-{result.run_id}"
    assert request.run_key == f"cleanup-{rid}"
    # the cleanup run is on the instance that knows the owner's run (ended): ownership is proven
    done = cleanup.execute_in_process(
        run_config=request.run_config, resources={"backend": backend}, instance=instance
    )
    assert done.success
    assert demo_fleet.temp_instances() == []
    assert build_services({"root": str(demo_fleet.root)}).audit.get(rid)["status"] == "failed"
