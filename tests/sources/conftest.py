"""Fixtures for the source tests; the fake platforms live in tests/fakes/."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import START, TOKEN, FakeX
from followerwatch.clock import ManualClock
from followerwatch.sources.x import XSource


@pytest.fixture
def clock() -> ManualClock:
    """Time frozen at 2026-01-01 UTC; sleeps are recorded and advance it."""
    return ManualClock(START)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The one shared client; proxies from the environment must not catch localhost."""
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as shared:
        yield shared


@pytest.fixture
def fake_x(httpserver: HTTPServer, clock: ManualClock) -> FakeX:
    """The fake X API, empty and with a full rate-limit window."""
    return FakeX(httpserver, clock)


@pytest.fixture
def make_x(fake_x: FakeX, client: httpx.AsyncClient, clock: ManualClock) -> Callable[..., XSource]:
    """Build an XSource pointed at the fake; keyword arguments override the defaults."""

    def make(**overrides: Any) -> XSource:
        kwargs: dict[str, Any] = {
            "bearer_token": TOKEN,
            "clock": clock,
            "base_url": fake_x.base_url,
        }
        kwargs.update(overrides)
        return XSource(client, **kwargs)

    return make
