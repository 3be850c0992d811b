"""Restore ids are owned (issue 11, items 1 and 10), on a real local fleet.

Ids are validated at every entry; a reused id never touches the finished restore; cleanup acts
only for an owner that has ended; `drop-restored` is explicit, owned, audited and refused while
something outside depends on the schema; two restores of one target: one wins; a Dagster
re-execution is refused and never touches its parent's restore.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from restore_assets.backends.factory import build_services
from restore_assets.cli.main import main
from restore_assets.core.audit import NotOwner, process_owner, process_start
from restore_assets.core.errors import InvalidRequest
from restore_assets.core.schema_restore.cleanup import cleanup_restore
from restore_assets.core.schema_restore.services import SCHEMA_RESOURCE
from restore_assets.jobs.launch import run_schema_restore
from tests import faults
from tests.owners import dead_owner

pytestmark = pytest.mark.integration


def schema_oid(dsn: str, schema: str) -> int | None:
    """The oid of a schema, None when it does not exist."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT oid::int FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return row[0] if row else None


def checksum(dsn: str, schema: str) -> str:
    """md5 of the users table's rows of a schema."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            sql.SQL(
                "SELECT coalesce(md5(string_agg(u::text, '|' ORDER BY u::text)), '') FROM {}.users u"
            ).format(sql.Identifier(schema))
        ).fetchone()[0]


def failure_messages(result) -> list[str]:
    """The messages of a Dagster run's step failures (the dg.Failure descriptions)."""
    out = []
    for e in result.all_events:
        if e.is_step_failure:
            data = e.step_failure_data
            out.append(data.error.message if data.error else "")
            if data.user_failure_data is not None:
                out.append(data.user_failure_data.description or "")
    return out


def drop_schema(dsn: str, schema: str) -> None:
    """Test teardown: drop a schema if it exists."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def restore_args(root: Path, rid: str, suffix: str, point: datetime) -> list[str]:
    """CLI arguments of a restore of tenant_a.customer_a1 that waits for its own cleanup."""
    return [
        "restore", "--root", str(root), "--database", "tenant_a", "--schema", "customer_a1",
        "--restore-time", point.isoformat(), "--suffix", suffix, "--restore-id", rid,
        "--no-compare", "--wait-cleanup",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["restore", "--database", "tenant_a", "--schema", "customer_a1", "--restore-time",
         "2026-01-01T00:00:00Z", "--restore-id", "."],
        ["cleanup", "--restore-id", "a/b"],
        ["cleanup", "--restore-id", ".."],
        ["history", "--restore-id", "../x"],
        ["drop-restored", "--restore-id", "/tmp", "--yes-drop-restored"],
        ["restore-instance", "--recover", "a b"],
        ["restore-instance", "--snapshot-id", "s", "--restore-id", "x" * 65],
    ],
)  # fmt: skip
def test_path_like_restore_ids_are_refused_at_the_cli_creating_nothing(tmp_path, capsys, argv):
    root = tmp_path / "root"
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--root", str(root)])
    assert exit_.value.code == 2
    assert "is not valid: use 1 to 64 characters" in capsys.readouterr().err
    assert not root.exists()


def test_path_like_ids_are_refused_by_the_core_job_and_sensor(demo_fleet):
    import dagster as dg

    from restore_assets.jobs.resources import RestoreBackend
    from restore_assets.jobs.schema_restore import cleanup, cleanup_after_failure, schema_restore

    before = build_services({"root": str(demo_fleet.root)}).audit.history(1000)
    with pytest.raises(InvalidRequest, match="is not valid"):  # notebooks and runbooks call this
        run_schema_restore(
            {"database": "tenant_a", "schemas": ["customer_a1"], "restore_time": "2026-01-01Z"},
            {"root": str(demo_fleet.root)},
            restore_id=".",
        )
    with pytest.raises(InvalidRequest, match="is not valid"):
        cleanup_restore(build_services({"root": str(demo_fleet.root)}), "a/b")
    backend = RestoreBackend(root=str(demo_fleet.root))
    instance = dg.DagsterInstance.ephemeral()
    run = schema_restore.execute_in_process(  # the launchpad's restore id (a run tag)
        run_config={
            "database": "tenant_a",
            "schemas": ["customer_a1"],
            "restore_time": datetime.now(UTC).isoformat(),
        },
        resources={"backend": backend},
        instance=instance,
        raise_on_error=False,
        tags={"restore-assets/restore-id": ".."},
    )
    assert not run.success
    # refused in the first op: the run is marked failed with the refusal, no step fails
    [failure] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "is not valid" in failure.dagster_event.message, failure.dagster_event.message
    done = cleanup.execute_in_process(
        run_config={"ops": {"cleanup_restore": {"config": {"restore_id": "."}}}},
        resources={"backend": backend},
        raise_on_error=False,
    )
    assert not done.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="cleanup_after_failure",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run.run_id),
    )
    request = cleanup_after_failure(ctx.for_run_failure())
    assert isinstance(request, dg.SkipReason)
    assert build_services({"root": str(demo_fleet.root)}).audit.history(1000) == before
    assert demo_fleet.temp_instances() == []


def test_reusing_an_id_never_touches_the_finished_restore(demo_fleet, capsys):
    """The issue's repro: restore, the same command again, then cleanup: the restore stays."""
    dsn = demo_fleet.production_dsn("tenant_a")
    point = datetime.now(UTC)
    time.sleep(0.2)
    root = demo_fleet.root
    try:
        assert main(restore_args(root, "reuse1", "one", point)) == 0
        audit = build_services({"root": str(root)}).audit
        first = audit.get("reuse1")
        oid, rows = schema_oid(dsn, "customer_a1_one"), checksum(dsn, "customer_a1_one")
        capsys.readouterr()
        assert main(restore_args(root, "reuse1", "one", point)) == 2
        assert main(restore_args(root, "reuse1", "two", point)) == 2
        assert "reuse1 already exists" in capsys.readouterr().err
        assert schema_oid(dsn, "customer_a1_two") is None  # nothing was created
        again = audit.get("reuse1")
        assert (again["status"], again["finished_at"]) == ("succeeded", first["finished_at"])
        assert main(["cleanup", "--root", str(root), "--restore-id", "reuse1"]) == 0
        assert schema_oid(dsn, "customer_a1_one") == oid  # a succeeded restore belongs to the user
        assert checksum(dsn, "customer_a1_one") == rows
        assert audit.get("reuse1")["status"] == "succeeded"
        assert demo_fleet.temp_instances() == []
    finally:
        drop_schema(dsn, "customer_a1_one")
        drop_schema(dsn, "customer_a1_two")


def _open_running(audit, rid: str, dsn: str, schema: str, owner: dict) -> int:
    """A running record owned by owner that created one schema (recorded with its oid)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        oid = conn.execute(
            "SELECT oid::int FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()[0]
    audit.open("schema_restore", {"database": "tenant_a"}, rid, owner=owner)
    audit.resource(
        rid,
        SCHEMA_RESOURCE,
        f"tenant_a.{schema}",
        {"database": "tenant_a", "schema": schema, "oid": oid},
    )
    return oid


def test_cleanup_acts_only_for_an_owner_that_has_ended(demo_fleet, capsys):
    services = build_services({"root": str(demo_fleet.root)})
    dsn = demo_fleet.production_dsn("tenant_a")
    try:
        oid = _open_running(services.audit, "own-live", dsn, "customer_a1_live", process_owner())
        with pytest.raises(NotOwner, match=r"belongs to process \d+ on host .* still running"):
            cleanup_restore(services, "own-live")
        assert main(["cleanup", "--root", str(demo_fleet.root), "--restore-id", "own-live"]) == 2
        assert "cleanup refused" in capsys.readouterr().err
        assert schema_oid(dsn, "customer_a1_live") == oid
        assert services.audit.get("own-live")["status"] == "running"

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        dead = {**process_owner(), "pid": child.pid, "started": process_start(child.pid)}
        _open_running(services.audit, "own-dead", dsn, "customer_a1_dead", dead)
        with pytest.raises(NotOwner):
            cleanup_restore(services, "own-dead")  # still alive
        child.kill()
        child.wait()
        out = cleanup_restore(services, "own-dead")
        assert out["removed"] == ["tenant_a.customer_a1_dead"]
        assert schema_oid(dsn, "customer_a1_dead") is None
        assert services.audit.get("own-dead")["status"] == "failed"
    finally:
        drop_schema(dsn, "customer_a1_live")
        drop_schema(dsn, "customer_a1_dead")


def test_drop_restored_is_explicit_owned_audited_and_refused_while_needed(demo_fleet, capsys):
    dsn = demo_fleet.production_dsn("tenant_a")
    root = str(demo_fleet.root)
    point = datetime.now(UTC)
    time.sleep(0.2)
    try:
        assert main(restore_args(demo_fleet.root, "dropme", "drop", point)) == 0
        audit = build_services({"root": root}).audit
        drop = ["drop-restored", "--root", root, "--restore-id", "dropme"]
        capsys.readouterr()
        assert main(drop) == 2  # no confirmation
        assert "--yes-drop-restored" in capsys.readouterr().err
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA reporting")
            conn.execute("CREATE VIEW reporting.old_users AS SELECT * FROM customer_a1_drop.users")
        assert main([*drop, "--yes-drop-restored"]) == 2
        err = capsys.readouterr().err
        assert "objects outside depend on them" in err and "reporting.old_users" in err
        assert schema_oid(dsn, "customer_a1_drop") is not None
        drop_schema(dsn, "reporting")
        assert main([*drop, "--yes-drop-restored"]) == 0
        assert schema_oid(dsn, "customer_a1_drop") is None
        rec = audit.get("dropme")
        phases = [
            (p["phase"], p["outcome"]) for p in rec["phases"] if p["phase"] == "drop_restored"
        ]
        assert phases == [("drop_restored", "refused"), ("drop_restored", "succeeded")]
        assert rec["status"] == "succeeded"
        # a schema of the same name that this restore did not create is never dropped
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA customer_a1_drop")
        audit.resource(
            "dropme", SCHEMA_RESOURCE, "tenant_a.customer_a1_drop",
            {"database": "tenant_a", "schema": "customer_a1_drop", "oid": 1},
        )  # fmt: skip
        assert main([*drop, "--yes-drop-restored"]) == 2
        assert "is not the one restore dropme created" in capsys.readouterr().err
        assert schema_oid(dsn, "customer_a1_drop") is not None
    finally:
        drop_schema(dsn, "reporting")
        drop_schema(dsn, "customer_a1_drop")


def test_two_restores_of_one_target_at_once_one_wins_the_other_is_refused(demo_fleet):
    """Two threads restore the same target concurrently; the first to claim it is held mid-run
    until the other has answered, so the other always arrives while the winner runs."""
    dsn = demo_fleet.production_dsn("tenant_a")
    live = checksum(dsn, "customer_a1")
    point = datetime.now(UTC)
    time.sleep(0.2)
    results: dict[str, dict] = {}
    answered = threading.Event()
    first = threading.Lock()

    def hold_the_first(restore_id, phase, when):
        if phase == "topology" and when == "before" and first.acquire(blocking=False):
            answered.wait(timeout=300)

    def restore(rid: str) -> None:
        try:
            results[rid] = run_schema_restore(
                {
                    "database": "tenant_a",
                    "schemas": ["customer_a1"],
                    "restore_time": point.isoformat(),
                    "suffix": "race",
                },
                {"root": str(demo_fleet.root)},
                compare=False,
                restore_id=rid,
            )
        finally:
            # the other restore has answered (or crashed): the held one may go on, at once
            answered.set()

    try:
        with faults.installed(hold_the_first):
            threads = [threading.Thread(target=restore, args=(r,)) for r in ("race-a", "race-b")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=600)
        statuses = sorted((out["status"], rid) for rid, out in results.items())
        assert [s for s, _ in statuses] == ["rejected", "succeeded"], results
        loser, winner = statuses[0][1], statuses[1][1]
        assert f"being restored by restore {winner}" in results[loser]["cause"]
        audit = build_services({"root": str(demo_fleet.root)}).audit
        rec = audit.get(winner)
        assert rec["status"] == "succeeded"
        recorded = [r for r in rec["resources"] if r["kind"] == SCHEMA_RESOURCE]
        assert recorded[0]["details"]["oid"] == schema_oid(dsn, "customer_a1_race")
        assert checksum(dsn, "customer_a1_race") == live
        lost = audit.get(loser)
        assert lost["status"] == "rejected" and lost["resources"] == []
        assert demo_fleet.temp_instances() == []
    finally:
        drop_schema(dsn, "customer_a1_race")


def reexec_job(root: str, io_dir: str):
    """schema_restore with its backend and a filesystem IO manager (re-execution reads outputs)."""
    import dagster as dg

    from restore_assets.jobs.resources import RestoreBackend
    from restore_assets.jobs.schema_restore import schema_restore

    return dg.Definitions(
        jobs=[schema_restore],
        executor=dg.in_process_executor,  # the tests' fault hook lives in this process
        resources={
            "backend": RestoreBackend(root=root),
            "io_manager": dg.FilesystemIOManager(base_dir=io_dir),
        },
    ).get_job_def("schema_restore")


def test_a_reexecution_is_refused_and_never_touches_its_parents_restore(demo_fleet, tmp_path):
    import dagster as dg

    from restore_assets.jobs.runs import restore_id_of

    dsn = demo_fleet.production_dsn("tenant_a")
    job = dg.build_reconstructable_job(
        "tests.integration.test_safety_ids",
        "reexec_job",
        reconstructable_args=(str(demo_fleet.root), str(tmp_path / "io")),
    )
    config = {
        "database": "tenant_a",
        "schemas": ["customer_a1"],
        "restore_time": datetime.now(UTC).isoformat(),
        "suffix": "reexec",
        "compare": False,
    }
    time.sleep(0.2)
    with dg.DagsterInstance.ephemeral() as instance:
        with faults.fail_at("copy"):
            parent = dg.execute_job(job, instance, run_config=config, raise_on_error=False)
        assert not parent.success
        rid = f"dg-{parent.run_id}"
        audit = build_services({"root": str(demo_fleet.root)}).audit
        before = audit.get(rid)
        assert before["status"] == "failed"
        for options in (
            dg.ReexecutionOptions.from_failure(parent.run_id, instance),
            dg.ReexecutionOptions(
                parent_run_id=parent.run_id, step_selection=["validate_request*"]
            ),
        ):
            child = dg.execute_job(
                job, instance, run_config=config, raise_on_error=False, reexecution_options=options
            )
            assert not child.success
            failures = failure_messages(child)
            assert any(f"re-executes run {parent.run_id}" in m for m in failures), failures
            assert any("Launch a new run" in m for m in failures)
            assert restore_id_of(child.dagster_run) == rid  # the sensors name the parent's restore
            after = audit.get(rid)
            assert (after["status"], after["finished_at"]) == ("failed", before["finished_at"])
            assert len(after["phases"]) == len(before["phases"])
            with pytest.raises(KeyError):
                audit.get(f"dg-{child.run_id}")
    assert schema_oid(dsn, "customer_a1_reexec") is None
    assert demo_fleet.temp_instances() == []


def reexec_instance_job(root: str, io_dir: str):
    """instance_restore with its backend and a filesystem IO manager (re-execution reads outputs)."""
    import dagster as dg

    from restore_assets.jobs.instance_restore import instance_restore
    from restore_assets.jobs.resources import RestoreBackend

    return dg.Definitions(
        jobs=[instance_restore],
        executor=dg.in_process_executor,
        resources={
            "backend": RestoreBackend(root=root),
            "io_manager": dg.FilesystemIOManager(base_dir=io_dir),
        },
    ).get_job_def("instance_restore")


def test_an_instance_restore_reexecution_is_refused_before_validation(demo_fleet, tmp_path):
    import dagster as dg

    job = dg.build_reconstructable_job(
        "tests.integration.test_safety_ids",
        "reexec_instance_job",
        reconstructable_args=(str(demo_fleet.root), str(tmp_path / "io")),
    )
    config = {"snapshot_id": "snap-nope"}
    audit = build_services({"root": str(demo_fleet.root)}).audit
    with dg.DagsterInstance.ephemeral() as instance:
        parent = dg.execute_job(job, instance, run_config=config, raise_on_error=False)
        assert not parent.success
        before = audit.get(f"dg-{parent.run_id}")
        assert before["status"] == "rejected"
        child = dg.execute_job(
            job,
            instance,
            run_config=config,
            raise_on_error=False,
            reexecution_options=dg.ReexecutionOptions.from_failure(parent.run_id, instance),
        )
        assert not child.success
        failures = failure_messages(child)
        assert any(f"re-executes run {parent.run_id}" in m for m in failures), failures
        assert audit.get(f"dg-{parent.run_id}") == before
        with pytest.raises(KeyError):
            audit.get(f"dg-{child.run_id}")


def test_the_cleanup_job_waits_for_the_owners_dagster_run_to_end(demo_fleet):
    """The owner's run status comes from the instance: a run still STARTED owns its restore even
    when its process looks gone; once the run has failed, the cleanup job removes its leftovers."""
    import dagster as dg
    from dagster._core.utils import make_new_run_id

    from restore_assets.jobs.resources import RestoreBackend
    from restore_assets.jobs.schema_restore import cleanup

    services = build_services({"root": str(demo_fleet.root)})
    dsn = demo_fleet.production_dsn("tenant_a")
    with dg.DagsterInstance.ephemeral() as instance:
        run = dg.DagsterRun(
            job_name="schema_restore", run_id=make_new_run_id(), status=dg.DagsterRunStatus.STARTED
        )
        instance.add_run(run)
        _open_running(services.audit, "own-run", dsn, "customer_a1_ownrun", dead_owner(run.run_id))
        job = {
            "run_config": {"ops": {"cleanup_restore": {"config": {"restore_id": "own-run"}}}},
            "resources": {"backend": RestoreBackend(root=str(demo_fleet.root))},
            "instance": instance,
            "raise_on_error": False,
        }
        try:
            refused = cleanup.execute_in_process(**job)
            assert not refused.success
            assert any(
                f"belongs to Dagster run {run.run_id}" in m and "is STARTED" in m
                for m in failure_messages(refused)
            ), failure_messages(refused)
            assert schema_oid(dsn, "customer_a1_ownrun") is not None
            assert services.audit.get("own-run")["status"] == "running"
            instance.report_run_failed(instance.get_run_by_id(run.run_id))
            done = cleanup.execute_in_process(**job)
            assert done.success
            assert schema_oid(dsn, "customer_a1_ownrun") is None
            assert services.audit.get("own-run")["status"] == "failed"
        finally:
            drop_schema(dsn, "customer_a1_ownrun")
