"""Issue 18, fewer points: a count is one point; its threshold lines are written only at start-up,
when they change and every LINE_REFRESH, and the distance to the nearest line rides on the count.

The real Collector, Pipeline, StateDB, Spool and Writer write into a real influxd; only the
platform is a stand-in (counts that drift each poll) and the clock is a ManualClock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from followerwatch.clock import ManualClock
from followerwatch.models import Account, FetchResult, Observation
from followerwatch.poll.collector import Collector
from followerwatch.poll.pipeline import Pipeline
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.spool import Spool
from followerwatch.store.thresholds import (
    LINE_REFRESH,
    Lines,
    LineSchedule,
    nearest_distance,
)
from followerwatch.store.writer import Writer

T0 = datetime(2026, 5, 1, tzinfo=UTC)
EVERY = 300.0  # the default poll interval
PER_REFRESH = int(LINE_REFRESH // EVERY)  # polls from one line refresh to the next: 48
ACCOUNTS = [Account("x", f"u{i}", f"u{i}") for i in range(100)]


def count_of(account: Account, poll: int) -> int:
    """A count that moves across its lines: 1,000 ± 60 around a per-account offset."""
    i = int(account.name[1:])
    return 1_000 + (i * 7 + poll * 13) % 121 - 60


class Drifting:
    """The platform: every account answers with `count_of` at the clock's time."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.poll = 0

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        now = self.clock.now()
        return FetchResult(
            tuple(Observation(a, now, count_of(a, self.poll)) for a in accounts), requests=1
        )


def watch_lines() -> dict[tuple[str, str], tuple[tuple[str, int], ...]]:
    """u0..u59 one line, u60..u79 two (100 lines), u80..u99 none."""
    lines: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {}
    for account in ACCOUNTS[:60]:
        lines[account.key] = (("below", 1_000),)
    for account in ACCOUNTS[60:80]:
        lines[account.key] = (("below", 980), ("above", 1_020))
    return lines


async def measurement_times(store: InfluxV1Store, measurement: str, field: str) -> Counter[int]:
    """How many points of the measurement (with the field) each timestamp has."""
    series = await store.query(f'SELECT "{field}" FROM "{measurement}"')
    return Counter(row[0] for s in series for row in s["values"] if row[1] is not None)


def at(poll: int) -> int:
    return int((T0 + timedelta(seconds=EVERY * poll)).timestamp())


async def test_lines_at_start_on_change_and_refresh_and_one_point_per_count(
    influx_db: tuple[str, str], http_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url, database = influx_db
    store = InfluxV1Store(http_client, url=url, database=database)
    clock = ManualClock(T0)
    state = StateDB(tmp_path / "state.sqlite3")
    spool = Spool(tmp_path / "spool.sqlite3")
    writer = Writer(store, state, spool, clock, health_every=None)
    lines: Lines = watch_lines()
    pipeline = Pipeline(
        state=state,
        writer=writer,
        outbox=None,
        rules={},
        clock=clock,
        route=lambda e: [],
        thresholds=lines,
    )
    source = Drifting(clock)
    collector = Collector("x", source, pipeline, clock)
    changed_at = PER_REFRESH + 3
    polls = PER_REFRESH + 6
    for poll in range(polls):
        if poll == changed_at:
            # A reload: u0 gets another line, u60 loses its lines, u61 keeps them unchanged
            # (in a new tuple), u80 gains a line; everyone else's are the same.
            reloaded = dict(lines)
            reloaded[ACCOUNTS[0].key] = (("below", 1_000), ("above", 1_050))
            del reloaded[ACCOUNTS[60].key]
            reloaded[ACCOUNTS[61].key] = tuple(lines[ACCOUNTS[61].key])
            reloaded[ACCOUNTS[80].key] = (("below", 900),)
            pipeline.configure({}, {}, reloaded)
            lines = reloaded
        source.poll = poll
        await collector.poll(ACCOUNTS)
        clock.advance(EVERY)
    await writer.flush()
    assert spool.counts().spooled == 0  # everything is in InfluxDB

    thresholds = await measurement_times(store, "followerwatch_thresholds", "value")
    counts = await measurement_times(store, "followers", "followers")
    distances = await measurement_times(store, "followers", "distance")
    polled = await measurement_times(store, "followerwatch_polls", "observations")
    assert counts == {at(p): 100 for p in range(polls)}
    assert polled == {at(p): 1 for p in range(polls)}
    # The lines: all 100 at start-up; all again LINE_REFRESH later; then, after the reload,
    # only those of the accounts whose lines changed and still have some (u0: 2, u80: 1).
    assert thresholds == {at(0): 100, at(PER_REFRESH): 100, at(changed_at): 3}
    # Every count of an account with lines carries the distance (u60's stop after the reload).
    assert distances == {at(p): 80 for p in range(polls)}

    # Steady state: a whole refresh period after start-up (one refresh in it), every point.
    steady = range(1, PER_REFRESH + 1)
    points = sum(counts[at(p)] + thresholds[at(p)] + polled[at(p)] for p in steady)
    per_observation = points / sum(counts[at(p)] for p in steady)
    print(f"points per observation, steady state: {per_observation:.3f}")
    assert per_observation <= 1.05
    # The start-up poll (and a one-shot `followerwatch poll`) writes each account's lines.
    first = counts[at(0)] + thresholds[at(0)] + polled[at(0)]
    assert first / counts[at(0)] == 2.01

    # The distances are the signed distance to the nearest line, as the source's counts say.
    series = await store.query('SELECT "followers", "distance" FROM "followers" GROUP BY "account"')
    checked = 0
    for s in series:
        key = ("x", s["tags"]["account"])
        account = next(a for a in ACCOUNTS if a.key == key)
        for when, followers, distance in s["values"]:
            poll = round((when - at(0)) / EVERY)
            own = (lines if poll >= changed_at else watch_lines()).get(key, ())
            assert followers == count_of(account, poll)
            assert distance == nearest_distance(followers, own)
            checked += distance is not None
    assert checked == sum(distances.values())
    # The counts cross their lines: distances of both signs and exactly on a line occur.
    signs = {(d > 0) - (d < 0) for s in series for _, _, d in s["values"] if d is not None}
    assert signs == {-1, 0, 1}
    state.close()
    spool.close()


def obs(name: str, seconds: float, followers: int = 10) -> Observation:
    return Observation(Account("x", name, name), T0 + timedelta(seconds=seconds), followers)


def names(due: Sequence[Observation]) -> list[str]:
    return [o.account.name for o in due]


def test_line_schedule_start_refresh_change_and_given_up_batches() -> None:
    lines: Lines = {("x", "a"): (("below", 5),), ("x", "b"): (("above", 9),)}
    schedule = LineSchedule(refresh=100.0)
    # Start-up: every account with lines, once (a second reading in the same batch: no).
    assert names(schedule.due(lines, [obs("a", 0), obs("b", 0), obs("c", 0), obs("a", 1)])) == [
        "a",
        "b",
    ]
    assert schedule.due(lines, [obs("a", 99.9), obs("b", 50)]) == []
    # The refresh counts from each account's own last write, in the observations' time.
    assert names(schedule.due(lines, [obs("a", 100), obs("b", 99)])) == ["a"]
    assert names(schedule.due(lines, [obs("b", 100)])) == ["b"]
    # A reading far behind the last write (a source that started over) writes them again.
    assert names(schedule.due(lines, [obs("a", -1)])) == ["a"]
    assert schedule.due(lines, [obs("a", 50)]) == []
    # A reload: only the accounts whose lines differ are due (equal lines in a new tuple: not).
    reloaded: Lines = {("x", "a"): (("below", 5),), ("x", "b"): (("above", 10),)}
    schedule.changed(lines, reloaded)
    assert names(schedule.due(reloaded, [obs("a", 60), obs("b", 110)])) == ["b"]
    # A batch given up (not stored): its lines are due with the next reading.
    given_up = schedule.due(reloaded, [obs("a", 200)])
    schedule.forget(given_up)
    assert names(schedule.due(reloaded, [obs("a", 201)])) == ["a"]
