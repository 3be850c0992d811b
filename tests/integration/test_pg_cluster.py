"""The single-cluster primitives run real PostgreSQL as an unprivileged user."""

import psycopg

from restore_assets.backends.local.pg import server_user


def test_session_cluster_accepts_connections_on_loopback(pg):
    with psycopg.connect(pg.dsn()) as conn:
        row = conn.execute(
            "SELECT current_setting('listen_addresses'), current_setting('port')"
        ).fetchone()
    assert row == ("127.0.0.1", str(pg.port))
    assert server_user().uid != 0


def test_fresh_db_is_empty(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        n = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    assert n == 0
