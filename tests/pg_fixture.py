"""PostgreSQL fixtures: a real server per test session, a fresh database per test.

CI installs the binaries (Debian package `postgresql`); a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from followerwatch.demo.postgres import PostgresError, TempPostgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    """One throwaway PostgreSQL server for the session."""
    server = TempPostgres()
    try:
        server.start()
    except PostgresError as exc:
        server.close()
        pytest.fail(
            f"cannot start postgres ({exc}); install it with `apt-get install -y postgresql`",
            pytrace=False,
        )
    yield server
    server.close()


def fresh_database(server: TempPostgres) -> str:
    """Create an empty database on `server`; return its DSN."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.dsn_of(name)


@pytest.fixture
def pg_dsn(postgres: TempPostgres) -> str:
    """The DSN of a new, empty database on the session's server."""
    return fresh_database(postgres)
