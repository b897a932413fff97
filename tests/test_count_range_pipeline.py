"""A count past 2^53 - 1 never reaches SQLite or InfluxDB; the rest of the batch is stored."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import httpx
from pytest_httpserver import HTTPServer

from fakes.fake_x import START, TOKEN, FakeX, make_user
from followerwatch.clock import ManualClock
from followerwatch.models import Account, FetchResult, Observation
from followerwatch.poll.collector import Collector
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.threshold import Threshold
from followerwatch.sources.base import Source
from followerwatch.sources.x import XSource
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.spool import Spool
from followerwatch.store.writer import Writer

HUGE = 2**63


class Unchecked:
    """A source that forgot to check its counts: what a future platform module might do."""

    key: ClassVar[str] = "x"
    batch_max: ClassVar[int] = 100

    def __init__(self, clock: ManualClock, counts: dict[str, int]) -> None:
        self.clock, self.counts = clock, counts

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        now = self.clock.now()
        return FetchResult(
            observations=tuple(Observation(a, now, self.counts[a.handle]) for a in accounts),
            requests=1,
        )


async def poll_through_pipeline(
    tmp_path: Path,
    influx_db: tuple[str, str],
    clock: ManualClock,
    source: Source,
    accounts: list[Account],
) -> tuple[list[tuple[str, int]], dict[str, int | None], list[str | None]]:
    """One collector poll into the real StateDB and InfluxDB: stored points, state, failures."""
    async with httpx.AsyncClient(trust_env=False) as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        state = StateDB(tmp_path / "state.sqlite3")
        pipeline = Pipeline(
            state=state,
            writer=Writer(store, state, Spool(tmp_path / "spool.sqlite3"), clock),
            outbox=None,
            clock=clock,
            route=lambda e: [],
            rules={a.key: [Threshold("below", 100)] for a in accounts},
        )
        rows = await Collector("x", source, pipeline, clock).poll(accounts)
        series = await store.query('SELECT followers, account FROM "followers"')
        seen = {
            a.name: getattr(state.accounts.last_seen(*a.key), "followers", None) for a in accounts
        }
        state.close()
    points = sorted((v[2], v[1]) for v in series[0]["values"]) if series else []
    return points, seen, [r.failure for r in rows]


async def test_a_source_that_forgets_the_range_still_stores_the_rest(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    clock = ManualClock(START)
    accounts = [Account("x", h, h) for h in ("alice", "huge", "bob")]
    source = Unchecked(clock, {"alice": 1_000, "huge": HUGE, "bob": 2_000})

    points, seen, failures = await poll_through_pipeline(
        tmp_path, influx_db, clock, source, accounts
    )

    assert points == [("alice", 1_000), ("bob", 2_000)]
    assert seen == {"alice": 1_000, "huge": None, "bob": 2_000}
    assert any(f and f.startswith("malformed") for f in failures)


async def test_a_real_source_reporting_2_63_spoils_only_that_account(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    clock = ManualClock(START)
    fake = FakeX(httpserver, clock)
    users = [make_user(i) for i in range(3)]
    users[1]["public_metrics"]["followers_count"] = HUGE
    fake.add(*users)
    accounts = [Account("x", u["username"], u["username"]) for u in users]
    async with httpx.AsyncClient(trust_env=False) as client:
        source = XSource(client, bearer_token=TOKEN, clock=clock, base_url=fake.base_url)
        points, seen, failures = await poll_through_pipeline(
            tmp_path, influx_db, clock, source, accounts
        )

    assert points == [("user_000", 1_000), ("user_002", 1_014)]
    assert seen == {"user_000": 1_000, "user_001": None, "user_002": 1_014}
    assert any(f and f.startswith("malformed") for f in failures)
