"""Every read has one deadline (connect, headers, body) and a size cap applied while streaming."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from fakes.hostile import Answer, RawServer
from followerwatch.clock import ManualClock
from followerwatch.errors import TransientError
from followerwatch.net.http import build_client
from followerwatch.sources.common import ReadLimits, Requester, Tally

CLIENTS: dict[str, Callable[[float], httpx.AsyncClient]] = {
    # The service's own client (httpx on aiohttp), and httpx's transport (used behind proxies).
    "shared": lambda timeout: build_client(timeout=timeout),
    "httpx": lambda timeout: httpx.AsyncClient(timeout=timeout, trust_env=False),
}
TRICKLE = Answer(body=b'{"followers_count": 12345678901234567890}', trickle=0.05)


def requester(client: httpx.AsyncClient, limits: ReadLimits) -> Requester:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    return Requester(client, clock, "Test", lambda h, now: None, 0.0, limits=limits)


async def timed_get(client: httpx.AsyncClient, limits: ReadLimits, url: str) -> float:
    """Seconds until the request ends; it must end in a TransientError."""
    started = time.monotonic()
    # The outer bound only keeps a failing run short; the limits under test must act first.
    async with asyncio.timeout(10):
        with pytest.raises(TransientError) as info:
            await requester(client, limits).send("GET", url + "/x", Tally())
    timed_get.message = str(info.value)  # type: ignore[attr-defined]
    return time.monotonic() - started


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_trickled_body_stops_at_the_deadline(kind: str) -> None:
    # 1 byte per 50 ms never trips a per-read timeout; 44 bytes would take 2.2 s.
    async with RawServer(TRICKLE) as server, CLIENTS[kind](5.0) as client:
        took = await timed_get(client, ReadLimits(deadline=0.4), server.url)
    assert 0.35 < took < 1.0
    assert "did not answer in full within 0.4 s" in timed_get.message  # type: ignore[attr-defined]
    assert server.sent < len(TRICKLE.body)


async def test_the_default_deadline_is_the_clients_connect_plus_read_timeout() -> None:
    async with RawServer(TRICKLE) as server, CLIENTS["httpx"](0.25) as client:
        took = await timed_get(client, ReadLimits(), server.url)
    assert ReadLimits().deadline_for(client) == pytest.approx(0.5)
    assert 0.45 < took < 1.2
    # The service's client: 5 s to connect plus 15 s per read.
    assert ReadLimits().deadline_for(build_client()) == 20.0


@pytest.mark.parametrize("kind", CLIENTS)
async def test_an_endless_body_stops_at_the_cap(kind: str) -> None:
    async with RawServer(Answer(endless=True)) as server, CLIENTS[kind](5.0) as client:
        took = await timed_get(client, ReadLimits(max_body=256 * 1024), server.url)
    assert "oversized body" in timed_get.message  # type: ignore[attr-defined]
    assert took < 2.0


async def test_a_body_at_the_cap_is_read_whole() -> None:
    body = b'{"n": ' + b" " * 1000 + b"1}"
    async with RawServer(Answer(body=body)) as server, CLIENTS["shared"](5.0) as client:
        response, _ = await requester(client, ReadLimits(max_body=len(body))).send(
            "GET", server.url + "/x", Tally()
        )
    assert response.json() == {"n": 1}
    assert response.headers["content-length"] == str(len(body))


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_header_value_that_is_not_ascii_is_kept(kind: str) -> None:
    # obs-text (bytes 0x80-0xFF) is legal in a header value; it must not crash the exchange.
    answer = Answer(
        body=b'{"a": 1}',
        headers=(("Content-Type", "application/json"), ("X-Note", "caf\xe9")),
    )
    async with RawServer(answer) as server, CLIENTS[kind](5.0) as client:
        response, _ = await requester(client, ReadLimits()).send("GET", server.url + "/x", Tally())
    assert response.json() == {"a": 1}
    assert response.headers["x-note"] == "caf\xe9"
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_compressed_body_is_decoded_once(kind: str) -> None:
    answer = Answer(
        body=gzip.compress(b'{"a": 1}'),
        headers=(("Content-Type", "application/json"), ("Content-Encoding", "gzip")),
    )
    async with RawServer(answer) as server, CLIENTS[kind](5.0) as client:
        response, _ = await requester(client, ReadLimits()).send("GET", server.url + "/x", Tally())
    assert response.json() == {"a": 1}
    assert "content-encoding" not in response.headers
