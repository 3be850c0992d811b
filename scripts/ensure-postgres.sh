#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, pg_dump) are installed,
# and pgcopydb (the restore benchmark's baseline). Looks where restore_assets looks
# (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH); installs Debian's `postgresql` and
# `pgcopydb` packages with apt when they are missing, and pgBackRest (`pgbackrest`: the
# pgBackRest-stanza fleet and its tests).
set -euo pipefail

have_server_bins() {
  local dirs=()
  if command -v pg_config >/dev/null 2>&1; then dirs+=("$(pg_config --bindir)"); fi
  for d in /usr/lib/postgresql/*/bin; do [ -d "$d" ] && dirs+=("$d"); done
  for d in "${dirs[@]}"; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pg_basebackup" ] && [ -x "$d/pg_dump" ]; then
      echo "PostgreSQL server binaries: $d"
      return 0
    fi
  done
  return 1
}

have_pgcopydb() { command -v pgcopydb >/dev/null 2>&1; }
have_pgbackrest() { command -v pgbackrest >/dev/null 2>&1; }

if have_server_bins && have_pgcopydb && have_pgbackrest; then exit 0; fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
if ! have_pgcopydb; then
  echo "pgcopydb not found: installing the pgcopydb package with apt (bench/restore_bench.py's baseline)"
  $SUDO apt-get install -y -qq pgcopydb >/dev/null
fi
if ! have_pgbackrest; then
  echo "pgbackrest not found: installing the pgbackrest package with apt"
  $SUDO apt-get install -y -qq pgbackrest >/dev/null
fi
if have_server_bins; then exit 0; fi

echo "PostgreSQL server binaries not found: installing the postgresql package with apt"
$SUDO apt-get install -y -qq postgresql postgresql-contrib >/dev/null
# Debian starts a default cluster on install; the tool manages its own clusters, so stop it.
$SUDO service postgresql stop >/dev/null 2>&1 || true
have_server_bins
