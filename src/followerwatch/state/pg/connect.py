"""Connecting to the shared PostgreSQL database, and migrating it (state/migrations.py)."""

from __future__ import annotations

import psycopg

from followerwatch.state.migrations import ADVISORY_LOCK, POSTGRES

# Seconds; a replica must notice a dead database well inside a lease's lifetime.
CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT_MS = 10_000


def connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """A connection with explicit connect and statement timeouts."""
    return psycopg.connect(
        dsn,
        autocommit=autocommit,
        connect_timeout=CONNECT_TIMEOUT,
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
    )


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Apply the steps not yet applied, in order, each in its own transaction; return them."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS fw_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM fw_schema")}
        for step in POSTGRES:
            if step.version in done:
                continue
            with conn.transaction():
                conn.execute(step.sql.encode())
                conn.execute(
                    "INSERT INTO fw_schema (version, name) VALUES (%s, %s)",
                    (step.version, step.name),
                )
            applied.append(step.version)
    return applied


def schema_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The newest step applied (0 on an empty database)."""
    exists = conn.execute("SELECT to_regclass('fw_schema')").fetchone()
    if exists is None or exists[0] is None:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM fw_schema").fetchone()
    return int(str(row[0])) if row is not None else 0
