"""Shared pytest fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from followerwatch.demo.influxd import InfluxdError, TempInfluxd
from followerwatch.store.influx_v1 import InfluxV1Store

# ---------------------------------------------------------------------------------------------
# InfluxDB: a real influxd per test session, a fresh database per test.
# CI installs influxd (Debian package `influxdb`); a missing binary is a failure, not a skip,
# so storage tests can never silently stop running.
# ---------------------------------------------------------------------------------------------


def start_influxd(directory: Path, *, auth_enabled: bool = False) -> TempInfluxd:
    """Start a TempInfluxd or fail the test run with the reason and an install hint."""
    server = TempInfluxd(directory, auth_enabled=auth_enabled)
    try:
        return server.start()
    except InfluxdError as exc:
        pytest.fail(
            f"cannot start influxd ({exc}); install it with `apt-get install -y influxdb`",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _followerwatch_environment() -> Iterator[None]:
    """No FOLLOWERWATCH_* variable leaks out of a test (an in-process `--shard` sets one)."""
    before = {k: v for k, v in os.environ.items() if k.startswith("FOLLOWERWATCH_")}
    yield
    for name in [k for k in os.environ if k.startswith("FOLLOWERWATCH_")]:
        if name not in before:
            del os.environ[name]
    os.environ.update(before)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TempInfluxd]:
    """A throwaway influxd without authentication, shared by the whole session."""
    server = start_influxd(tmp_path_factory.mktemp("influxd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def influx_admin() -> tuple[str, str]:
    """(username, password) of the admin user on `influxd_auth`."""
    return ("admin", "s3cret-Pa55")


@pytest.fixture(scope="session")
def influxd_auth(
    tmp_path_factory: pytest.TempPathFactory, influx_admin: tuple[str, str]
) -> Iterator[TempInfluxd]:
    """A second throwaway influxd with auth enabled and the `influx_admin` user."""
    server = start_influxd(tmp_path_factory.mktemp("influxd-auth"), auth_enabled=True)
    try:
        server.create_admin(*influx_admin)
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    """An httpx.AsyncClient with a 10 s timeout."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        yield client


@pytest.fixture
async def influx_db(
    influxd: TempInfluxd, http_client: httpx.AsyncClient
) -> AsyncIterator[tuple[str, str]]:
    """A fresh, uniquely named database on the session influxd: yields (url, dbname)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    store = InfluxV1Store(http_client, url=influxd.url, database=name)
    await store.create_database()
    yield influxd.url, name
    await store.query(f'DROP DATABASE "{name}"', epoch=None)


# ---------------------------------------------------------------------------------------------
# End of InfluxDB fixtures.
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Alertmanager: a real /usr/bin/prometheus-alertmanager per test (tests/alertmanager_fixture.py).
# ---------------------------------------------------------------------------------------------

# PostgreSQL: a real server per session, a fresh database per test (tests/pg_fixture.py).
pytest_plugins = ["alertmanager_fixture", "backend_fixture", "pg_fixture"]
