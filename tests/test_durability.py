"""Durability: every point is spooled before InfluxDB and leaves only after a 2xx answer."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from followerwatch.clock import ManualClock
from followerwatch.config.settings import load_config
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.models import Event, EventKind, Point
from followerwatch.service.app import App
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.spool import Spool
from followerwatch.store.writer import AUTH_RECHECK, Writer

T0 = datetime(2026, 6, 1, tzinfo=UTC)
DB = "durability"


def point(account: str, minute: int, followers: int | float) -> Point:
    return Point(
        "followers",
        (("platform", "x"), ("account", account)),
        (("followers", followers),),
        T0 + timedelta(minutes=minute),
    )


async def count(url: str, measurement: str = "followers") -> int:
    async with httpx.AsyncClient() as client:
        series = await InfluxV1Store(client, url=url, database=DB).query(
            f'SELECT count(*) FROM "{measurement}"'
        )
    return int(series[0]["values"][0][1]) if series else 0


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[TempInfluxd]:
    """An influxd of this test's own, since these tests stop and start it."""
    with TempInfluxd(directory=tmp_path / "influxd") as server:
        server.query(f'CREATE DATABASE "{DB}"')
        yield server


async def test_outage_spools_everything_and_drains_oldest_first(
    tmp_path: Path, own_influxd: TempInfluxd
) -> None:
    replay = tmp_path / "replay.csv"
    rows = ["timestamp,platform,account,followers"]
    for i in range(30):
        for name in ("alice", "bob", "carol"):
            rows.append(f"{(T0 + timedelta(minutes=i)).isoformat()},x,{name},{1000 + i}")
    replay.write_text("\n".join(rows) + "\n")
    config = load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path / "data")},
            "influxdb": {"url": own_influxd.url, "database": DB},
            "platforms": {"x": {"replay": {"file": str(replay)}}},
            "watch": [{"platform": "x", "handle": h} for h in ("alice", "bob", "carol")],
        },
    )
    clock = ManualClock(T0)
    async with App(config, clock=clock) as app:
        for _ in range(10):
            await app.poll_once()
        assert await count(own_influxd.url) == 30 and app.writer.backlog == 0
        own_influxd.suspend()
        for _ in range(15):  # polling goes on while InfluxDB is down
            clock.advance(60)
            rows_polled = await app.poll_once()
            assert [r.followers for r in rows_polled] == [rows_polled[0].followers] * 3
        assert app.writer.backlog >= 45 and not app.writer.healthy
        own_influxd.resume()
        clock.advance(120)
        await app.writer.flush()
        counts = app.writer.counts()
        assert counts.spooled == 0 and counts.balanced and counts.dropped == 0
        for _ in range(5):
            await app.poll_once()
    assert await count(own_influxd.url) == 90
    assert await count(own_influxd.url, "followerwatch_polls") >= 1
    async with httpx.AsyncClient() as client:
        ledger = await InfluxV1Store(client, url=own_influxd.url, database=DB).query(
            "SELECT last(added), last(written), last(spooled) FROM followerwatch_spool"
        )
    added, written, spooled = ledger[0]["values"][0][1:]
    assert added >= 90 and written + spooled == added  # nothing dropped in this run


def gateway(httpserver: HTTPServer, upstream: str, rule: object) -> list[int]:
    """A proxy in front of the real influxd that answers `rule(lines)` or forwards."""
    statuses: list[int] = []

    def handler(request: Request) -> Response:
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = body.decode().splitlines()
        answer = rule(lines)  # type: ignore[operator]
        if answer is not None:
            statuses.append(answer[0])
            return Response(
                json.dumps({"error": "gateway says no"}),
                status=answer[0],
                headers=answer[1],
                content_type="application/json",
            )
        forwarded = httpx.post(f"{upstream}/write", params=dict(request.args), content=body)
        statuses.append(forwarded.status_code)
        return Response(forwarded.content, status=forwarded.status_code)

    httpserver.expect_request("/write", method="POST").respond_with_handler(handler)
    return statuses


def make_writer(
    tmp_path: Path,
    url: str,
    clock: ManualClock,
    cap: int = 100_000,
    make_spool: Callable[..., Any] | None = None,
) -> tuple[Writer, httpx.AsyncClient]:
    """A writer over SQLite's spool, or the one `make_spool` makes (either backend's)."""
    client = httpx.AsyncClient()
    store = InfluxV1Store(client, url=url, database=DB)
    state = StateDB(tmp_path / "state.sqlite3")
    raised: list[Event] = []
    writer = Writer(
        store,
        state,
        Spool(tmp_path / "spool.sqlite3", cap=cap) if make_spool is None else make_spool(cap=cap),
        clock,
        raise_event=raised.append,
        health_every=None,
    )
    writer.raised = raised  # type: ignore[attr-defined]
    return writer, client


async def test_413_splits_the_batch(
    tmp_path: Path,
    influxd: TempInfluxd,
    httpserver: HTTPServer,
    make_spool: Callable[..., Any],
) -> None:
    influxd.query(f'DROP DATABASE "{DB}"')  # run once per spool backend: from empty each time
    influxd.query(f'CREATE DATABASE "{DB}"')
    statuses = gateway(httpserver, influxd.url, lambda lines: (413, {}) if len(lines) > 8 else None)
    url = httpserver.url_for("").rstrip("/")
    writer, client = make_writer(tmp_path, url, ManualClock(T0), make_spool=make_spool)
    await writer.write([point("split", i, 100 + i) for i in range(30)])
    await client.aclose()
    assert 413 in statuses and statuses.count(204) >= 4
    assert writer.counts().written == 30 and writer.backlog == 0
    assert await count(influxd.url) == 30


async def test_partial_write_dead_letters_only_the_bad_points(
    tmp_path: Path, influxd: TempInfluxd
) -> None:
    influxd.query(f'CREATE DATABASE "{DB}"')
    writer, client = make_writer(tmp_path, influxd.url, ManualClock(T0))
    await writer.write([point("typed", 0, 5)])  # followers is an integer field from now on
    await writer.write([point("typed", 1, 6), point("typed", 2, 7.5), point("typed", 3, 8)])
    await client.aclose()
    counts = writer.counts()
    assert (counts.written, counts.dead_lettered, counts.spooled) == (3, 1, 0) and counts.balanced
    [dead] = [json.loads(line) for line in writer.spool.dead_letter_path.read_text().splitlines()]
    assert "7.5" in dead["line"] and "field type conflict" in dead["reason"]


async def test_bad_credentials_stop_writing_keep_spooling_and_resume(
    tmp_path: Path, influxd: TempInfluxd, httpserver: HTTPServer
) -> None:
    influxd.query(f'CREATE DATABASE "{DB}"')
    refused = {"on": True}
    statuses = gateway(httpserver, influxd.url, lambda lines: (401, {}) if refused["on"] else None)
    clock = ManualClock(T0)
    writer, client = make_writer(tmp_path, httpserver.url_for("").rstrip("/"), clock)
    await writer.write([point("auth", 0, 1)])
    assert writer.auth_failed and writer.backlog == 1
    await writer.write([point("auth", 1, 2)])  # no retry loop: nothing sent inside the pause
    assert statuses == [401] and writer.backlog == 2
    refused["on"] = False
    clock.advance(AUTH_RECHECK + 1)
    await writer.flush()
    await client.aclose()
    assert not writer.auth_failed and writer.backlog == 0 and statuses[-1] == 204
    kinds = [e.kind for e in writer.raised]  # type: ignore[attr-defined]
    assert kinds == [EventKind.INFLUXDB_AUTH, EventKind.INFLUXDB_OK]  # one each, not one per try


async def test_503_retry_after_is_honoured(
    tmp_path: Path,
    influxd: TempInfluxd,
    httpserver: HTTPServer,
    make_spool: Callable[..., Any],
) -> None:
    influxd.query(f'CREATE DATABASE "{DB}"')
    down = {"on": True}
    statuses = gateway(
        httpserver, influxd.url, lambda lines: (503, {"Retry-After": "30"}) if down["on"] else None
    )
    clock = ManualClock(T0)
    url = httpserver.url_for("").rstrip("/")
    writer, client = make_writer(tmp_path, url, clock, make_spool=make_spool)
    await writer.write([point("busy", 0, 1)])
    down["on"] = False
    clock.advance(20)
    await writer.flush()
    assert statuses == [503] and writer.backlog == 1  # too early: Retry-After said 30 s
    clock.advance(11)
    await writer.flush()
    await client.aclose()
    assert statuses == [503, 204] and writer.backlog == 0


async def test_cap_drops_the_oldest_and_counts_exactly(
    tmp_path: Path, make_spool: Callable[..., Any]
) -> None:
    from followerwatch.demo.influxd import free_port

    url = f"http://127.0.0.1:{free_port()}"
    writer, client = make_writer(tmp_path, url, ManualClock(T0), cap=100, make_spool=make_spool)
    await writer.write([point("cap", i, i) for i in range(80)])
    await writer.write([point("cap", 80 + i, i) for i in range(50)])
    await client.aclose()
    counts = writer.counts()
    assert (counts.added, counts.dropped, counts.spooled, counts.written) == (130, 30, 100, 0)
    assert counts.balanced
    [overflow] = writer.raised  # type: ignore[attr-defined]
    assert overflow.kind == EventKind.SPOOL_OVERFLOW and overflow.value == 30
    oldest = writer.spool.peek(1)[0][1]
    assert oldest.endswith(str(int((T0 + timedelta(minutes=30)).timestamp())))
