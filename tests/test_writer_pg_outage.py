"""The writer over PostgreSQL's shared spool: an outage of the database loses no point, polls keep
reaching InfluxDB straight while it lasts, and what waited in memory arrives exactly once."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from backend_fixture import migrated, pg_state
from followerwatch.clock import ManualClock
from followerwatch.demo.postgres import TempPostgres
from followerwatch.disk.full import MemoryBuffer
from followerwatch.models import Point
from followerwatch.state.pg.connect import connect
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.pg_spool import Conn, PgSpool
from followerwatch.store.writer import Writer
from pg_fixture import fresh_database

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def point(minute: int) -> Point:
    return Point(
        "followers",
        (("platform", "x"), ("account", "pg")),
        (("followers", 1000 + minute),),
        T0 + timedelta(minutes=minute),
    )


def points(first: int, n: int) -> list[Point]:
    return [point(m) for m in range(first, first + n)]


class Gateway:
    """A proxy in front of the real influxd: answers 503 while `down`, else forwards and counts
    the followers lines InfluxDB took (so a line sent twice counts twice)."""

    def __init__(self, httpserver: HTTPServer, upstream: str) -> None:
        self.down = False
        self.taken = 0
        self.url = httpserver.url_for("").rstrip("/")
        httpserver.expect_request("/write", method="POST").respond_with_handler(self._handle)
        self._upstream = upstream

    def _handle(self, request: Request) -> Response:
        if self.down:
            return Response('{"error": "down"}', status=503, content_type="application/json")
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        answer = httpx.post(f"{self._upstream}/write", params=dict(request.args), content=body)
        if answer.is_success:
            self.taken += sum(1 for ln in body.decode().splitlines() if ln.startswith("followers,"))
        return Response(answer.content, status=answer.status_code)


@pytest.fixture
def own_postgres() -> Iterator[TempPostgres]:
    """A PostgreSQL of this test's own, since these tests stop and start it."""
    with TempPostgres() as server:
        yield server


@pytest.fixture
async def influx(
    influx_db: tuple[str, str], httpserver: HTTPServer
) -> AsyncIterator[tuple[Gateway, InfluxV1Store]]:
    """The gateway to a fresh database, and a store that queries that database directly."""
    url, name = influx_db
    async with httpx.AsyncClient() as client:
        yield Gateway(httpserver, url), InfluxV1Store(client, url=url, database=name)


async def stored(direct: InfluxV1Store) -> int:
    series = await direct.query('SELECT count(*) FROM "followers"')
    return int(series[0]["values"][0][1]) if series else 0


class Connects:
    """The spool's injected `connect`, counting the connections it opens (or tries to)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.tries = 0

    def __call__(self) -> Conn:
        self.tries += 1
        return connect(self.dsn, autocommit=True)


def writer_over(
    dsn: str,
    influx: tuple[Gateway, InfluxV1Store],
    client: httpx.AsyncClient,
    clock: ManualClock,
    connects: Connects,
) -> tuple[Writer, PgSpool]:
    """A writer through the gateway, over the shared spool and state of `dsn`."""
    gateway, direct = influx
    store = InfluxV1Store(client, url=gateway.url, database=direct.database)
    spool = PgSpool(connects, replica="r1")
    # A health point every write: its state read fails in the outage too, and must not raise.
    writer = Writer(store, pg_state(dsn), spool, clock, health_every=0.0, backoff_max=5.0)
    return writer, spool


async def back(
    first: str,
    postgres: TempPostgres,
    gateway: Gateway,
    clock: ManualClock,
    writer: Writer,
    spool: PgSpool,
) -> None:
    """PostgreSQL and InfluxDB come back, `first` first, with a writer's pass after each."""
    if first == "postgresql":
        postgres.start()
        clock.advance(60)
        await writer.flush()  # the held points go to the spool: InfluxDB still refuses
        assert writer.spool_problem is None and spool.size() == 100
        gateway.down = False
    else:
        gateway.down = False
        clock.advance(60)
        await writer.flush()  # straight from memory to InfluxDB: the spool is still down
        assert writer.spool_problem is not None and gateway.taken == 110
        postgres.start()
    clock.advance(60)
    await writer.flush()


@pytest.mark.parametrize("back_first", ["postgresql", "influxdb"])
async def test_both_down_points_wait_in_memory_then_arrive_exactly_once(
    own_postgres: TempPostgres,
    influx: tuple[Gateway, InfluxV1Store],
    back_first: str,
) -> None:
    gateway, direct = influx
    dsn = migrated(fresh_database(own_postgres))
    clock = ManualClock(T0)
    async with httpx.AsyncClient() as client:
        writer, spool = writer_over(dsn, influx, client, clock, Connects(dsn))
        await writer.write(points(0, 10))
        assert await stored(direct) == 10 and writer.backlog == 0
        before = writer.counts()

        gateway.down = True
        own_postgres.stop()
        with capture_logs() as logs:
            for k in range(1, 11):  # polls go on; every pass retries InfluxDB and the spool
                clock.advance(60)
                await writer.write(points(10 * k, 10))
                await writer.flush()
        assert writer.held.waiting()[0] == 100 and writer.spool_problem is not None
        assert writer.backlog == 100 and gateway.taken == 10
        unavailable = [e for e in logs if str(e["event"]).startswith("spool unavailable")]
        assert len(unavailable) == 1  # once per outage, not once per pass

        with capture_logs() as logs:
            await back(back_first, own_postgres, gateway, clock, writer, spool)
        assert not [e for e in logs if str(e["event"]).startswith("spool unavailable")]
        assert await stored(direct) == 110 and gateway.taken == 110  # all of them, once each
        assert writer.held.waiting() == (0, 0) and writer.spool_problem is None
        counts = writer.counts()
        assert counts.balanced and counts.spooled == 0 and counts.dropped_disk_full == 0
        # Through the spool only if it was back before InfluxDB; straight to InfluxDB if not.
        assert counts.added - before.added == (100 if back_first == "postgresql" else 0)
        spool.close()


async def test_with_only_postgresql_down_polls_reach_influxdb_without_the_spool(
    own_postgres: TempPostgres, influx: tuple[Gateway, InfluxV1Store]
) -> None:
    gateway, direct = influx
    dsn = migrated(fresh_database(own_postgres))
    connects = Connects(dsn)
    clock = ManualClock(T0)
    async with httpx.AsyncClient() as client:
        writer, spool = writer_over(dsn, influx, client, clock, connects)
        await writer.write(points(0, 5))
        own_postgres.stop()
        await writer.write(points(5, 5))  # finds the spool down: these go straight to InfluxDB
        assert writer.spool_problem is not None and await stored(direct) == 10
        tries = connects.tries
        for k in range(2, 8):
            clock.advance(60)
            await writer.write(points(5 * k, 5))
            assert await stored(direct) == 5 * (k + 1)  # at once, each poll
        assert connects.tries == tries  # polls never tried the spool: only passes retry it
        assert writer.held.waiting() == (0, 0) and writer.healthy
        # A point InfluxDB rejects for good waits in memory for the dead-letter table.
        bad = Point("followers", point(0).tags, (("followers", 7.5),), T0 + timedelta(hours=1))
        await writer.write([bad])
        assert writer.held.waiting() == (0, 0) and await stored(direct) == 40
        await writer.flush()  # a pass retries the spool, and skips
        assert connects.tries == tries + 1 and writer.spool_problem is not None
        own_postgres.start()
        await writer.flush()
        assert writer.spool_problem is None
        clock.advance(60)
        await writer.write(points(40, 5))
        assert await stored(direct) == 45 and gateway.taken == 45
        counts = writer.counts()
        # Only the polls before and after the outage went through the spool (5 points and a
        # health point each), and the rejected point, to be dead-lettered.
        assert (counts.added, counts.written, counts.dead_lettered) == (13, 12, 1)
        assert counts.spooled == 0 and counts.balanced
        [(reason, line)] = spool.dead_letters()
        assert "7.5" in line and "conflict" in reason
        spool.close()


async def test_past_the_memory_bound_an_outage_drops_and_counts_the_newest(
    own_postgres: TempPostgres, influx: tuple[Gateway, InfluxV1Store]
) -> None:
    gateway, direct = influx
    dsn = migrated(fresh_database(own_postgres))
    clock = ManualClock(T0)
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=gateway.url, database=direct.database)
        spool = PgSpool(Connects(dsn), replica="r1")
        # Room for three writes: plain points carry no readings, so their writes are counted.
        buffer = MemoryBuffer(3)
        writer = Writer(store, pg_state(dsn), spool, clock, health_every=None, buffer=buffer)
        gateway.down = True
        own_postgres.stop()
        for k in range(5):
            clock.advance(60)
            await writer.write(points(10 * k, 10))
        assert writer.held.waiting()[0] == 30 and writer.counts().dropped_disk_full == 20
        own_postgres.start()
        gateway.down = False
        clock.advance(60)
        await writer.flush()
        # The oldest three writes arrived; the ledger in PostgreSQL now records the drop.
        assert await stored(direct) == 30 and gateway.taken == 30
        counts = spool.counts()
        assert (counts.added, counts.written, counts.dropped_disk_full) == (50, 30, 20)
        assert counts.balanced and writer.held.waiting() == (0, 0)
        spool.close()
