"""One connection to the shared database, reopened after an outage, used by one caller at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from followerwatch.state.pg.connect import connect

Conn = psycopg.Connection[tuple[object, ...]]


class Link:
    """A lazily opened autocommit connection; a dropped one is replaced on the next use."""

    def __init__(self, dsn: str) -> None:
        """Connect to `dsn` when first used (so a replica starts while PostgreSQL is down)."""
        self.dsn = dsn
        self._conn: Conn | None = None
        # Loop and worker threads share objects built on one link: one transaction at a time.
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """The connection inside a transaction; psycopg.OperationalError means the link dropped."""
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                conn = self._conn = connect(self.dsn, autocommit=True)
            try:
                with conn.transaction():
                    yield conn
            except psycopg.OperationalError:
                # The next use reconnects instead of failing on a dead socket forever.
                self._conn = None
                conn.close()
                raise

    def close(self) -> None:
        """Close the connection (a later use opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
