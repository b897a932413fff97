"""A cycle starts every batch group at once; `poll_concurrency` bounds what is in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.config.settings import load_config
from followerwatch.service.app import App

ACCOUNTS = 1_200  # 12 batch groups of 100


class InFlight(httpx.AsyncBaseTransport):
    """The real transport, with 20 ms of network latency and a count of requests in flight."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.now = 0
        self.peak = 0
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.sent += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.02)
            return await self.inner.handle_async_request(request)
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("limit", [1, 3, 64])
async def test_poll_once_keeps_at_most_poll_concurrency_batches_in_flight(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer, limit: int
) -> None:
    fake = FakeX(httpserver, SystemClock())
    fake.limit = fake.remaining = 10**9
    users = [make_user(i) for i in range(ACCOUNTS)]
    fake.add(*users)
    config = load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path / "data"), "poll_concurrency": limit},
            "influxdb": {"url": influx_db[0], "database": influx_db[1]},
            "platforms": {"x": {"bearer_token": TOKEN, "base_url": fake.base_url}},
            "watch": [{"platform": "x", "handle": u["username"]} for u in users],
        },
    )
    transport = InFlight()
    async with App(config, transport=transport) as app:
        rows = await app.poll_once()
    assert transport.sent >= ACCOUNTS // 100
    # 64 is more than there are groups: then every group is in flight at once.
    assert transport.peak == min(limit, ACCOUNTS // 100)
    assert sorted(r.account for r in rows if r.followers is not None) == sorted(
        u["username"] for u in users
    )


def test_poll_concurrency_is_validated(tmp_path: Path) -> None:
    from followerwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="poll_concurrency"):
        load_config(None, {"service": {"poll_concurrency": 0}})
