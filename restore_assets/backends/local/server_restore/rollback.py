"""The rollback of a local server restore: stop and remove the half-restored data directory this
run recorded (a final backup first when it had been promoted), put the WAL of the abandoned
timeline out of later restores' way, rename the original back and start it on the same port."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from restore_assets.backends.local import pg
from restore_assets.backends.local.pgbackrest import stop_restore
from restore_assets.backends.local.server_restore.base_backup import quarantine_timelines
from restore_assets.backends.local.server_restore.names import ASIDE_KIND, RESTORED_KIND
from restore_assets.backends.local.server_restore.pgbackrest_delta import (
    above_abandoned_timeline,
)
from restore_assets.backends.local.server_restore.recovery import archiving_held, control_state
from restore_assets.backends.local.server_restore.set_aside import final_backup
from restore_assets.core.errors import FleetError
from restore_assets.core.server_restore.model import Described

if TYPE_CHECKING:
    from restore_assets.backends.local.server_restore.backend import LocalInstanceBackend


def _remove_restored(
    backend: LocalInstanceBackend,
    source: Described,
    names: dict[str, Any],
    details: dict[str, Any],
    actions: list[str],
) -> bool:
    """Stop and remove the half-restored data directory (recorded by this run); True when its
    new timeline may have reached the pgBackRest repository (archiving had been released)."""
    fleet = backend.fleet
    port = int(source.config["port"])
    datadir = Path(names["datadir"])
    released = False
    if stop_restore(datadir):  # a pgbackrest restore a crashed run left writing
        actions.append("stopped the pgbackrest restore still writing into it")
    promoted = control_state(datadir) == "in production"
    pg.Cluster(datadir, port).stop(mode="fast" if promoted else "immediate")
    if source.config.get("pgbackrest_stanza"):
        # archived only once released: the new timeline may be in the repository
        released = promoted and not archiving_held(datadir)
    else:
        moved = quarantine_timelines(backend, details, names["suffix"])
        if moved:
            actions.append(f"moved {len(moved)} WAL file(s) of the abandoned timeline aside")
    if promoted and backend.final_backup and names.get("rollback_snapshot"):
        # it was production (promoted, on the same port): keep what it held
        meta = final_backup(backend, datadir, names["rollback_snapshot"], names)
        actions.append(f"final backup of the restored directory: {meta['path']}")
    fleet.manifest.remove(datadir)
    tablespaces = datadir.parent / f"tablespaces-{names['suffix']}"
    if fleet.manifest.owns(tablespaces):
        fleet.manifest.remove(tablespaces)
    pg.Cluster(datadir, port).logfile.unlink(missing_ok=True)
    actions.append("removed the half-restored data directory")
    return released


def rollback(
    backend: LocalInstanceBackend,
    source: Described,
    names: dict[str, Any],
    resources: list[dict[str, Any]],
) -> dict[str, Any]:
    """Stop and remove a half-restored directory, rename the original back, start it."""
    fleet = backend.fleet
    port = int(source.config["port"])
    datadir = Path(names["datadir"])
    aside = Path(names["renamed_dir"])
    released = False
    details = next((r["details"] for r in resources if r["kind"] == ASIDE_KIND), {})
    restored = any(
        r["kind"] == RESTORED_KIND and r["details"].get("datadir") == str(datadir)
        for r in resources
    )
    actions: list[str] = []
    if aside.exists():
        if datadir.exists():
            if not restored or not fleet.manifest.owns(datadir):
                return {
                    "rolled_back": False,
                    "reason": f"{datadir} was not created by this run's restore step (not"
                    f" recorded): left in place; the original is still {aside}",
                }
            released = _remove_restored(backend, source, names, details, actions)
        os.rename(aside, datadir)
        fleet.manifest.forget(aside)
        old_log = aside.parent / f"{aside.name}.log"
        if old_log.exists():
            os.rename(old_log, pg.Cluster(datadir, port).logfile)
        actions.append(f"renamed {aside.name} back to {datadir.name}")
    elif any(r["kind"] == RESTORED_KIND for r in resources) and datadir.exists():
        return {
            "rolled_back": False,
            "reason": f"{aside.name} was already removed: the restored production is kept",
        }
    elif not datadir.exists():
        raise FleetError(f"neither {datadir} nor {aside} exists: nothing to put back")
    cluster = pg.Cluster(datadir, port)
    was_running = details.get("was_running", source.details.get("running", True))
    if released and not cluster.is_running():
        timeline = above_abandoned_timeline(backend, cluster)
        actions.append(
            f"the abandoned timeline had reached the pgBackRest repository (the tool never"
            f" deletes from it): the original was moved onto timeline {timeline} above it,"
            " so later restores follow the original"
        )
        if backend.post_restore_snapshot:
            # the abandoned server's post-restore backup is the newest: later restores to a
            # time after the rollback must start from a backup of the original instead
            snap = fleet.snapshot()
            actions.append(f"pgbackrest backup {snap.id} of the original on its new timeline")
        if not was_running:
            cluster.stop(mode="fast")
    if was_running and not cluster.is_running():
        cluster.start(timeout=backend.start_timeout)
        actions.append(f"started the original on port {port}")
    if was_running:
        with psycopg.connect(cluster.dsn(), connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    return {"rolled_back": True, "actions": actions}
