"""Coalesced InfluxDB writes: concurrent callers share few batches of at most 5,000 lines.

Each caller is acknowledged once its points are spooled; the real influxd (directly, or behind a
gateway that can fail) gets them within a second, none lost, a rejected line spoiling only itself.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from followerwatch.clock import ManualClock
from followerwatch.models import Point
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.pollpoints import encode_lines
from followerwatch.store.spool import Spool
from followerwatch.store.writer import BATCH_LINES, LINGER, Writer

T0 = datetime(2026, 8, 1, tzinfo=UTC)


@dataclass
class CountingStore:
    """The real InfluxV1Store, with each write_lines call's lines recorded (and whether it took)."""

    inner: InfluxV1Store
    calls: list[int] = field(default_factory=list)
    stored: set[str] = field(default_factory=set)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: a write is held

    def __post_init__(self) -> None:
        self.gate.set()

    @property
    def precision(self) -> str:
        return self.inner.precision

    async def write(self, points: Sequence[Point]) -> None:
        await self.inner.write(points)

    async def write_lines(self, lines: Sequence[str]) -> None:
        self.calls.append(len(lines))
        await self.gate.wait()
        await self.inner.write_lines(lines)
        self.stored.update(lines)

    async def check(self) -> None:
        await self.inner.check()

    async def close(self) -> None:
        await self.inner.close()


def point(account: str, n: int, followers: int | float | None = None) -> Point:
    value = 1000 + n if followers is None else followers
    return Point(
        "followers",
        (("platform", "x"), ("account", account)),
        (("followers", value),),
        T0 + timedelta(minutes=n),
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as c:
        yield c


def make_writer(
    tmp_path: Path, client: httpx.AsyncClient, url: str, db: str
) -> tuple[Writer, CountingStore]:
    store = CountingStore(InfluxV1Store(client, url=url, database=db))
    writer = Writer(
        store,
        StateDB(tmp_path / "state.sqlite3"),
        Spool(tmp_path / "spool.sqlite3"),
        ManualClock(T0),
        health_every=None,
    )
    OPEN.append(writer)
    return writer, store


OPEN: list[Writer] = []


@pytest.fixture(autouse=True)
async def close_writers() -> AsyncIterator[None]:
    """Each test's writer settles (its drainer stops) and its spool closes at the end."""
    yield
    while OPEN:
        writer = OPEN.pop()
        await writer.settle()
        writer.spool.close()


async def counts_by_account(store: CountingStore) -> dict[str, int]:
    series = await store.inner.query('SELECT count(followers) FROM "followers" GROUP BY account')
    return {s["tags"]["account"]: int(s["values"][0][1]) for s in series}


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait (on the loop's clock) until `check()`; fail past `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def spooled_lines(path: Path) -> set[str]:
    """What the spool file holds right now, read through a connection of our own."""
    with sqlite3.connect(path) as db:
        # A row per add: its lines joined by newlines.
        return {
            ln for (lines,) in db.execute("SELECT lines FROM chunks") for ln in lines.split("\n")
        }


async def test_concurrent_callers_share_few_writes_and_return_only_once_durable(
    tmp_path: Path, influx_db: tuple[str, str], client: httpx.AsyncClient
) -> None:
    writer, store = make_writer(tmp_path, client, *influx_db)
    durable_on_return: list[bool] = []

    async def caller(task: int) -> None:
        points = [point(f"t{task}", n) for n in range(10)]
        await writer.write(points)
        mine = set(encode_lines(points, store.precision)[0])
        durable_on_return.append(mine <= spooled_lines(writer.spool.path) | store.stored)

    await asyncio.gather(*(caller(t) for t in range(200)))
    await until(lambda: writer.backlog == 0, timeout=1.0 + 5 * LINGER)
    by_account = await counts_by_account(store)
    assert all(durable_on_return) and len(durable_on_return) == 200
    assert by_account == {f"t{t}": 10 for t in range(200)}
    counts = writer.counts()
    assert (counts.added, counts.written, counts.spooled) == (2000, 2000, 0) and counts.balanced
    # One write per caller if none coalesced; now a handful (the first caller's goes alone).
    assert sum(store.calls) == 2000 and len(store.calls) <= 10, store.calls


async def test_batches_never_exceed_the_limit_and_full_ones_go_at_once(
    tmp_path: Path, influx_db: tuple[str, str], client: httpx.AsyncClient
) -> None:
    writer, store = make_writer(tmp_path, client, *influx_db)
    total = 3 * BATCH_LINES + 1_234
    per = 250
    await asyncio.gather(
        *(writer.write([point(f"b{t}", n) for n in range(per)]) for t in range(total // per)),
        writer.write([point("rest", n) for n in range(total % per)]),
    )
    await until(lambda: writer.backlog == 0, timeout=1.0 + 5 * LINGER)
    by_account = await counts_by_account(store)
    assert max(store.calls) <= BATCH_LINES and sum(store.calls) == total
    assert store.calls.count(BATCH_LINES) >= 2, store.calls
    assert sum(by_account.values()) == total and writer.counts().written == total


async def test_a_lone_write_goes_out_at_once(
    tmp_path: Path, influx_db: tuple[str, str], client: httpx.AsyncClient
) -> None:
    writer, store = make_writer(tmp_path, client, *influx_db)
    for n in range(3):  # one after another: each finds the writer idle
        await writer.write([point("lone", n)])
        assert (await counts_by_account(store)).get("lone") == n + 1  # no waiting at all
    assert store.calls == [1, 1, 1]


def gateway(
    httpserver: HTTPServer, upstream: str, answer: Callable[[list[str]], int | None]
) -> list[tuple[int, int]]:
    """A proxy in front of the real influxd: (status, lines) per /write, `answer` or forwarded."""
    seen: list[tuple[int, int]] = []

    def handler(request: Request) -> Response:
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = body.decode().splitlines()
        status = answer(lines)
        if status is not None:
            seen.append((status, len(lines)))
            return Response(json.dumps({"error": "gateway says no"}), status=status)
        forwarded = httpx.post(f"{upstream}/write", params=dict(request.args), content=body)
        seen.append((forwarded.status_code, len(lines)))
        return Response(forwarded.content, status=forwarded.status_code)

    httpserver.expect_request("/write", method="POST").respond_with_handler(handler)
    return seen


async def test_an_outage_under_a_coalesced_batch_keeps_every_callers_points(
    tmp_path: Path,
    influx_db: tuple[str, str],
    client: httpx.AsyncClient,
    httpserver: HTTPServer,
) -> None:
    url, db = influx_db
    up = {"on": False}
    # The first write goes through; then influxd "goes away" (until `up`).
    seen = gateway(httpserver, url, lambda lines: 503 if seen and not up["on"] else None)
    writer, store = make_writer(tmp_path, client, httpserver.url_for("").rstrip("/"), db)
    store.gate.clear()
    first = asyncio.create_task(writer.write([point("first", 0)]))
    await until(lambda: bool(store.calls))  # the idle writer's own write is under way (held)
    await asyncio.gather(*(writer.write([point(f"o{t}", 0)]) for t in range(40)))
    assert writer.backlog == 41  # every caller acknowledged: its points are spooled
    store.gate.set()
    await first
    await until(lambda: len(seen) == 2)
    await until(lambda: writer.last_error is not None)
    assert seen == [(204, 1), (503, 40)]  # one coalesced batch of all forty callers, refused
    assert writer.backlog == 40 and writer.counts().balanced
    up["on"] = True
    writer.clock.advance(300)  # type: ignore[attr-defined]  # past the backoff
    await writer.flush()
    by_account = await counts_by_account(CountingStore(InfluxV1Store(client, url=url, database=db)))
    assert by_account == {"first": 1, **{f"o{t}": 1 for t in range(40)}}
    counts = writer.counts()
    assert (counts.written, counts.spooled, counts.dead_lettered) == (41, 0, 0)


async def test_a_rejected_line_in_a_coalesced_batch_spoils_only_itself(
    tmp_path: Path, influx_db: tuple[str, str], client: httpx.AsyncClient
) -> None:
    writer, store = make_writer(tmp_path, client, *influx_db)
    await writer.write([point("typed", 0, 5)])  # followers is an integer field from now on
    callers = [[point(f"c{t}", n) for n in range(5)] for t in range(30)]
    callers[17][3] = point("c17", 3, 7.5)  # a field type conflict: influxd answers 400
    await asyncio.gather(*(writer.write(points) for points in callers))
    await until(lambda: writer.backlog == 0, timeout=1.0 + 5 * LINGER)
    by_account = await counts_by_account(store)
    assert by_account == {"typed": 1, **{f"c{t}": 4 if t == 17 else 5 for t in range(30)}}
    counts = writer.counts()
    assert (counts.written, counts.dead_lettered, counts.spooled) == (150, 1, 0)
    assert counts.balanced and writer.dead_lettered == 1
    [dead] = [json.loads(ln) for ln in writer.spool.dead_letter_path.read_text().splitlines()]
    assert "account=c17" in dead["line"] and "7.5" in dead["line"]


async def test_shutdown_writes_the_lines_waiting_for_a_batch(
    tmp_path: Path, influx_db: tuple[str, str], client: httpx.AsyncClient
) -> None:
    writer, store = make_writer(tmp_path, client, *influx_db)
    store.gate.clear()
    first = asyncio.create_task(writer.write([point("s", 0)]))
    await until(lambda: bool(store.calls))  # its write is under way: the others join a batch
    await asyncio.gather(*(writer.write([point(f"s{t}", 0)]) for t in range(19)))
    store.gate.set()
    await first
    assert writer.backlog == 19  # spooled (acknowledged), waiting for their coalesced write
    assert await writer.settle() == 0
    assert writer.backlog == 0 and store.calls == [1, 19]
    assert sum((await counts_by_account(store)).values()) == 20
