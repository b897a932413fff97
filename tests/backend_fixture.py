"""The outbox's state and the spool on either backend, for tests parametrized over both (a plugin).

`make_state` / `make_spool` are fixtures over ["sqlite", "postgresql"]: each gives a factory,
so a test builds (and closes) its objects as it did with SQLite's alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from followerwatch.state.db import StateDB
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.pg.connect import connect, migrate
from followerwatch.state.pg.deliveries import PgDeliveries
from followerwatch.state.pg.events import PgEvents
from followerwatch.state.pg.link import Link
from followerwatch.store.pg_spool import PgSpool
from followerwatch.store.spool import Spool

BACKENDS = ["sqlite", "postgresql"]


@dataclass
class PgOutboxState:
    """What the Outbox takes of a state (events, deliveries, doorbell), on PostgreSQL."""

    events: PgEvents
    deliveries: PgDeliveries
    doorbell: Doorbell
    link: Link

    def close(self) -> None:
        self.link.close()


def migrated(dsn: str) -> str:
    with connect(dsn) as conn:
        migrate(conn)
    return dsn


def pg_state(dsn: str, replica: str = "r1", claim_ttl: float = 30.0) -> PgOutboxState:
    """One replica's outbox state over an already migrated database."""
    link = Link(dsn)
    doorbell = Doorbell()
    return PgOutboxState(
        PgEvents(link, doorbell, lambda ev: 0),
        PgDeliveries(link, replica, claim_ttl),
        doorbell,
        link,
    )


def pg_spool(dsn: str, replica: str = "r1", cap: int = 5_000_000, ttl: float = 30.0) -> PgSpool:
    """One replica's view of the shared spool."""
    return PgSpool(lambda: connect(dsn, autocommit=True), cap, replica=replica, claim_ttl=ttl)


@pytest.fixture(params=BACKENDS)
def make_state(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """A factory of the outbox's state on each backend (SQLite's StateDB, or PostgreSQL's)."""
    if request.param == "sqlite":
        return lambda: StateDB(tmp_path / "state.sqlite3")
    dsn = migrated(request.getfixturevalue("pg_dsn"))
    return lambda: pg_state(dsn)


@pytest.fixture(params=BACKENDS)
def make_spool(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """A factory of the spool on each backend: make_spool(cap=...)."""
    if request.param == "sqlite":
        return lambda cap=5_000_000: Spool(tmp_path / "spool.sqlite3", cap=cap)
    dsn = migrated(request.getfixturevalue("pg_dsn"))
    return lambda cap=5_000_000: pg_spool(dsn, cap=cap)
