"""Projections in alert messages: read from the real influxd, stored once with the event."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from followerwatch.alerts.enrich import ProjectionEnricher, trend_query
from followerwatch.alerts.outbox import Outbox
from followerwatch.clock import ManualClock
from followerwatch.demo.influxd import free_port
from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.notify.webhook import WebhookConfig, WebhookNotifier
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store

T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # the crossing
START = T - timedelta(hours=24)
LINES = {
    ("x", "falling"): (("below", 1_000_000), ("below", 950_000), ("above", 1_100_000)),
    ("x", "flat"): (("below", 1_000_000), ("below", 950_000)),
    ("x", "noisy"): (("below", 1_000_000), ("below", 950_000)),
    ("x", "o'neil/x"): (("below", 1_000_000), ("below", 950_000)),
}


def falling(at: datetime) -> int:
    """1,000 followers an hour down, from 1,023,000 at START to 999,000 at T."""
    return round(1_023_000 - 1000 * (at - START).total_seconds() / 3600)


def readings(account: str) -> list[tuple[datetime, int]]:
    """Every 10 minutes over the 24 h before T."""
    out = []
    noise = random.Random(7)
    for k in range(144):
        at = START + timedelta(minutes=10 * k)
        if account in ("falling", "o'neil/x"):
            value = falling(at)
        elif account == "flat":
            value = 1_000_500
        else:  # noisy: jumps of thousands around a level, no direction
            value = 1_010_000 + noise.randint(-8, 8) * 1000
        out.append((at, value))
    return out


async def store_readings(store: InfluxV1Store, accounts: list[str]) -> None:
    lines = [
        f"followers,platform=x,account={a} followers={v}i {int(t.timestamp())}"
        for a in accounts
        for t, v in readings(a)
    ]
    await store.write_lines(lines)


def crossing(account: str, kind: EventKind = EventKind.DROPPED_BELOW, **kw: Any) -> Event:
    firing = kind is not EventKind.BACK_ABOVE
    return Event(
        id=f"{account}-{kind}",
        time=kw.get("time", T),
        platform="x",
        account=account,
        rule="below:1000000",
        kind=kind,
        value=kw.get("value", 999_000),
        threshold=1_000_000,
        message=f"@{account} on x dropped below 1,000,000 followers: now 999,000",
        severity=Severity.WARNING,
        status=EventStatus.FIRING if firing else EventStatus.RESOLVED,
    )


class Counting:
    """The real store, counting the queries made through it."""

    def __init__(self, store: InfluxV1Store) -> None:
        self.store = store
        self.queries: list[str] = []

    async def query(self, influxql: str, *, epoch: str | None = "s") -> list[dict[str, Any]]:
        self.queries.append(influxql)
        return await self.store.query(influxql, epoch=epoch)


@pytest.fixture
async def store(influx_db: tuple[str, str]) -> AsyncIterator[InfluxV1Store]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield InfluxV1Store(client, url=influx_db[0], database=influx_db[1])


@pytest.fixture
def hook(httpserver: HTTPServer) -> Iterator[list[dict[str, Any]]]:
    bodies: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        bodies.append(json.loads(request.get_data()))
        return Response("", status=204)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    yield bodies


def outbox(
    state: StateDB, client: httpx.AsyncClient, url: str, enricher: ProjectionEnricher
) -> Outbox:
    config = WebhookConfig.model_validate({"type": "webhook", "name": "hook", "url": url})
    return Outbox(state, [WebhookNotifier(config, client)], ManualClock(T), enricher=enricher)


async def test_a_falling_trend_projects_the_next_line(
    tmp_path: Path, store: InfluxV1Store, httpserver: HTTPServer, hook: list[dict[str, Any]]
) -> None:
    await store_readings(store, ["falling", "flat", "noisy", "o'neil/x"])
    reader = Counting(store)
    enricher = ProjectionEnricher(reader, lambda: LINES)
    state = StateDB(tmp_path / "state.sqlite3")
    events = [
        crossing("falling"),
        crossing("flat"),
        crossing("noisy"),
        crossing("o'neil/x"),  # quotes and slashes survive the query's regex
        crossing("falling", EventKind.BACK_ABOVE, value=1_000_200),  # resolutions: never
    ]
    state.events.add_events(events, lambda e: ["hook"])
    async with httpx.AsyncClient() as client:
        assert await outbox(state, client, httpserver.url_for("/hook"), enricher).drain(10)
    assert len(reader.queries) == 1  # one query for every account of the pass
    by_id = {b["event"]["id"]: b for b in hook}
    eta = (999_000 - 950_000) / 1000 * 3600  # 49 h
    for account in ("falling", "o'neil/x"):
        body = by_id[f"{account}-dropped_below"]
        assert body["event"]["message"] == (
            f"@{account} on x dropped below 1,000,000 followers: now 999,000"
            "; at the current rate it drops below 950,000 in about 2 d 1 h"
        )
        projection = body["projection"]
        assert projection["line"] == 950_000 and projection["direction"] == "below"
        assert abs(projection["eta_seconds"] - eta) <= 60
        assert projection["per_day"] == -24_000
        at = datetime.fromisoformat(projection["at"])
        assert abs(at - (T + timedelta(seconds=projection["eta_seconds"]))) <= timedelta(seconds=1)
    for event_id in ("flat-dropped_below", "noisy-dropped_below", "falling-back_above"):
        assert by_id[event_id]["projection"] is None
        assert "at the current rate" not in by_id[event_id]["event"]["message"]
    state.close()


async def test_influxdb_unreachable_delivers_at_once_without_projection(
    tmp_path: Path, httpserver: HTTPServer, hook: list[dict[str, Any]]
) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    state.events.add_events([crossing("falling")], lambda e: ["hook"])
    async with httpx.AsyncClient(timeout=30) as client:
        down = InfluxV1Store(client, url=f"http://127.0.0.1:{free_port()}", database="db")
        enricher = ProjectionEnricher(down, lambda: LINES)
        assert await outbox(state, client, httpserver.url_for("/hook"), enricher).drain(10)
    [body] = hook
    assert body["projection"] is None
    assert body["event"]["message"].endswith("now 999,000")
    state.close()


async def test_a_hanging_influxdb_costs_only_the_timeout(
    tmp_path: Path, httpserver: HTTPServer, hook: list[dict[str, Any]]
) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state = StateDB(tmp_path / "state.sqlite3")
    state.events.add_events([crossing("falling")], lambda e: ["hook"])
    async with httpx.AsyncClient(timeout=30) as client:  # the client alone would wait 30 s
        hanging = InfluxV1Store(client, url=f"http://127.0.0.1:{port}", database="db")
        enricher = ProjectionEnricher(hanging, lambda: LINES, timeout=0.3)
        started = time.monotonic()
        assert await outbox(state, client, httpserver.url_for("/hook"), enricher).drain(10)
        waited = time.monotonic() - started
    server.close()
    [body] = hook
    assert body["projection"] is None
    assert waited < 10  # bounded by the enricher's timeout, not the client's 30 s
    state.close()


async def test_local_history_stands_in_when_influxdb_is_down(
    tmp_path: Path, httpserver: HTTPServer, hook: list[dict[str, Any]]
) -> None:
    local = {("x", "falling"): readings("falling")}

    def history(platform: str, account: str, since: datetime) -> list[tuple[datetime, int]]:
        return [(t, v) for t, v in local.get((platform, account), []) if t >= since]

    state = StateDB(tmp_path / "state.sqlite3")
    state.events.add_events([crossing("falling")], lambda e: ["hook"])
    async with httpx.AsyncClient(timeout=30) as client:
        down = InfluxV1Store(client, url=f"http://127.0.0.1:{free_port()}", database="db")
        enricher = ProjectionEnricher(down, lambda: LINES, local=history)
        assert await outbox(state, client, httpserver.url_for("/hook"), enricher).drain(10)
    [body] = hook
    assert body["projection"]["line"] == 950_000
    assert abs(body["projection"]["eta_seconds"] - 49 * 3600) <= 60
    state.close()


async def test_enriched_once_retries_carry_the_same_text(
    tmp_path: Path, store: InfluxV1Store, httpserver: HTTPServer
) -> None:
    answers = iter([503, 204])
    bodies: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        bodies.append(json.loads(request.get_data()))
        return Response("", status=next(answers))

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    await store_readings(store, ["falling"])
    reader = Counting(store)
    state = StateDB(tmp_path / "state.sqlite3")
    state.events.add_events([crossing("falling")], lambda e: ["hook"])
    async with httpx.AsyncClient() as client:
        enricher = ProjectionEnricher(reader, lambda: LINES)
        box = outbox(state, client, httpserver.url_for("/hook"), enricher)
        await box.deliver_due()
        # The trend turns before the retry: the alert already announced must not change.
        await store.query("DROP MEASUREMENT followers", epoch=None)
        assert await box.drain(3600)
    assert len(reader.queries) == 1
    first, retry = bodies
    assert first == retry
    assert "drops below 950,000" in retry["event"]["message"]
    [(_, status)] = state.events.recent()
    assert status == {"hook": "delivered"}
    state.close()


def test_the_query_names_each_account_once() -> None:
    query = trend_query([("x", "a.b"), ("x", "a.b"), ("bluesky", "c/d")], START, T)
    assert query.count("a\\.b") == 1
    assert "c\\/d" in query
    assert "GROUP BY time(1h), platform, account" in query
