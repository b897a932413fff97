"""The pipeline on its own: suspect zeros, repeated readings, and what reaches InfluxDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from followerwatch.clock import ManualClock
from followerwatch.models import Account, FetchResult, Observation
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.threshold import Threshold
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.spool import Spool
from followerwatch.store.writer import Writer

T0 = datetime(2026, 5, 1, tzinfo=UTC)
ALICE = Account("x", "alice", "alice")


def obs(minute: int, followers: int) -> FetchResult:
    reading = Observation(ALICE, T0 + timedelta(minutes=minute), followers)
    return FetchResult(observations=(reading,))


async def test_a_fall_to_zero_is_held_until_it_has_lasted_the_window(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        state = StateDB(tmp_path / "state.sqlite3")
        pipeline = Pipeline(
            state=state,
            writer=Writer(store, state, Spool(tmp_path / "spool.sqlite3"), ManualClock(T0)),
            outbox=None,
            clock=ManualClock(T0),
            route=lambda e: [],
            rules={ALICE.key: [Threshold("below", 1000)]},
            zero_confirm={"x": 120},
        )
        await pipeline.process(obs(0, 5000))
        held = await pipeline.process(obs(1, 0))
        assert held[0].suspect and held[0].failure is None
        assert state.accounts.last_seen(*ALICE.key).followers == 5000  # type: ignore[union-attr]
        await pipeline.process(obs(2, 5001))  # the zero was an artefact: discarded
        await pipeline.process(obs(3, 0))
        # A second poll alone does not confirm: the fall has lasted 1 minute of 2.
        assert [r.suspect for r in await pipeline.process(obs(4, 0))] == [True]
        rows = await pipeline.process(obs(5, 0))  # lasted 2 minutes: all three zeros count
        assert [r.followers for r in rows] == [0, 0, 0]
        assert [len(r.events) for r in rows] == [1, 0, 0]
        series = await store.query("SELECT followers FROM followers")
        state.close()
    assert [v[1] for v in series[0]["values"]] == [5000, 5001, 0, 0, 0]


async def test_an_older_or_repeated_reading_is_stored_but_never_alerts_again(
    tmp_path: Path,
) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    pipeline = Pipeline(
        state=state,
        writer=None,
        outbox=None,
        clock=ManualClock(T0),
        route=lambda e: [],
        rules={ALICE.key: [Threshold("below", 1000)]},
    )
    await pipeline.process(obs(0, 1500))
    first = await pipeline.process(obs(1, 900))
    again = await pipeline.process(obs(1, 900))
    older = await pipeline.process(obs(0, 800))
    assert [len(r.events) for r in (*first, *again, *older)] == [1, 0, 0]
    assert state.accounts.last_seen(*ALICE.key).followers == 900  # type: ignore[union-attr]
    state.close()
