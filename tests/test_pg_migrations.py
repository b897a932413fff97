"""PostgreSQL migrations (state/migrations.py): each step once, in order, however many replicas."""

from __future__ import annotations

import threading

from followerwatch.state.migrations import POSTGRES
from followerwatch.state.pg.connect import connect, migrate, schema_version


def test_an_empty_database_gets_every_step_once(pg_dsn: str) -> None:
    with connect(pg_dsn) as conn:
        assert schema_version(conn) == 0
        assert migrate(conn) == [step.version for step in POSTGRES]
        assert schema_version(conn) == POSTGRES[-1].version
        assert migrate(conn) == []
        tables = {
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert {"fw_schema", "replicas", "leases"} <= tables


def test_replicas_starting_together_migrate_once(pg_dsn: str) -> None:
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with connect(pg_dsn) as conn:
                applied.append(migrate(conn))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(applied, key=len) == [[], [], [], [step.version for step in POSTGRES]]


def test_version_numbers_grow_by_one() -> None:
    assert [step.version for step in POSTGRES] == list(range(1, len(POSTGRES) + 1))
