"""The throwaway PostgreSQL server the state backend's tests run on."""

from __future__ import annotations

import psycopg

from followerwatch.demo.postgres import TempPostgres
from pg_fixture import fresh_database


def test_each_test_gets_its_own_empty_database(postgres: TempPostgres, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (7)")
        conn.commit()
    other = fresh_database(postgres)
    with psycopg.connect(other) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_a_restart_keeps_the_data_and_the_port(tmp_path: object) -> None:
    with TempPostgres() as server:
        port = server.port
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        server.restart()
        assert server.port == port
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
        base = server.base
    assert not base.exists()
