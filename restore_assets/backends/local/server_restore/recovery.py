"""Recovery of a restored (or put back) production data directory: its configuration files, the
marked recovery block of restore_assets.conf, promotion, and the hold on WAL archiving."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from restore_assets.backends.local import pg

CONFIG_FILES = (
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
    "restore_assets.conf",
)
RECOVERY_MARK = "# restore-assets: instance restore recovery settings (removed after promotion)\n"
HOLD_MARK = "# restore-assets: WAL archiving held until the restored server is verified\n"


def parse_conf(text: str) -> dict[str, str]:
    """`name = value` lines of a PostgreSQL configuration file (comments and blanks ignored)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def mask_settings(settings: dict[str, str]) -> dict[str, str]:
    """The settings with the values of password-like names replaced by ***."""
    return {
        k: ("***" if any(s in k for s in ("password", "passphrase", "conninfo")) else v)
        for k, v in settings.items()
    }


def copy_config_files(aside: Path, datadir: Path) -> None:
    """Put production's configuration files (from the set-aside directory) into datadir."""
    for name in CONFIG_FILES:
        if (aside / name).exists():
            pg.run_server_cmd(["cp", "-p", str(aside / name), str(datadir / name)])


def reload(cluster: pg.Cluster) -> None:
    """pg_reload_conf() on a running cluster."""
    with psycopg.connect(cluster.dsn(), autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_catalog.pg_reload_conf()")


def wait_promoted(cluster: pg.Cluster, timeout: float) -> int:
    """Wait until the cluster left recovery; return its new timeline."""
    cluster.wait_promoted(timeout, what="restored cluster")
    with psycopg.connect(cluster.dsn(), connect_timeout=10) as conn:
        wal = conn.execute(
            "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())"
        ).fetchone()[0]
    return int(wal[:8], 16)


def recover_and_promote(
    cluster: pg.Cluster, recovery: dict[str, str], timeout: float, keep: str = ""
) -> int:
    """Start a stopped data directory in archive recovery with these settings (a marked block
    of restore_assets.conf), wait for its promotion; return the new timeline. Afterwards
    restore_assets.conf is what it was, plus `keep` (settings that stay for a while)."""
    conf = cluster.datadir / "restore_assets.conf"
    original_conf = conf.read_text() if conf.exists() else ""
    block = RECOVERY_MARK + "".join(f"{k} = {v}\n" for k, v in recovery.items())
    cluster.write_file("restore_assets.conf", original_conf + "\n" + block + keep)
    cluster.write_file("recovery.signal", "")
    cluster.start(timeout=timeout)
    timeline = wait_promoted(cluster, timeout)
    cluster.write_file("restore_assets.conf", original_conf + ("\n" + keep if keep else ""))
    reload(cluster)
    return timeline


def archiving_held(datadir: Path) -> bool:
    """Whether the data directory's WAL archiving is still held (not yet verified)."""
    conf = datadir / "restore_assets.conf"
    return HOLD_MARK in (conf.read_text(errors="replace") if conf.exists() else "")


def release_archiving(cluster: pg.Cluster) -> bool:
    """Drop the archiving hold of a verified restored server; True when there was one."""
    conf = cluster.datadir / "restore_assets.conf"
    text = conf.read_text() if conf.exists() else ""
    if HOLD_MARK not in text:
        return False
    cluster.write_file("restore_assets.conf", text.split(HOLD_MARK, 1)[0].rstrip("\n") + "\n")
    reload(cluster)
    return True


def control_state(datadir: Path) -> str | None:
    """pg_controldata's "Database cluster state" of a data directory (None if unreadable)."""
    if not (datadir / "global" / "pg_control").exists():
        return None
    proc = pg.run_server_cmd([pg.pg_bin("pg_controldata"), "-D", str(datadir)], check=False)
    found = re.search(r"Database cluster state:\s+(.+)", proc.stdout or "")
    return found.group(1).strip() if found else None
