"""Issue 20: the `unusual` rule's score on the `followers` point and on `followerwatch_events`.

The real Pipeline, StateDB, Spool and Writer write into a real influxd; the rule sets are built by
hand and the clock is a ManualClock. One account has the rule (it learns for 3 days, is scored
from then on, and a drop at the end fires), one has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from followerwatch.clock import ManualClock
from followerwatch.models import Account, ByConfig, EventKind, FetchResult, Observation
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.base import Rule
from followerwatch.rules.unusual import Unusual
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.spool import Spool
from followerwatch.store.writer import Writer

T0 = datetime(2026, 5, 1, tzinfo=UTC)
EVERY = 3 * 3600.0  # 8 readings a day: 24 readings take 3 days
POLLS = 44
DROP_FROM = 40  # the last polls lose 3,000 each
MIN_LEARNING = 24  # fewer readings are learning whatever the days: never a score
ON = Account("x", "on", "on")
OFF = Account("x", "off", "off")


def count_of(poll: int) -> int:
    """+100 a poll with a little deterministic wobble, then a steep drop."""
    steady = 100_000 + 100 * min(poll, DROP_FROM) + (0, 30, -20, 10)[poll % 4]
    return steady - 3_000 * max(0, poll - DROP_FROM + 1)


def at(poll: int) -> int:
    return int((T0 + timedelta(seconds=EVERY * poll)).timestamp())


# The rule sets as tests build them (a dict) and as the config shares them (one per config).
@pytest.mark.parametrize("shared", [False, True], ids=["dict", "by_config"])
async def test_the_score_rides_on_the_count_and_the_event(
    influx_db: tuple[str, str], http_client: httpx.AsyncClient, tmp_path: Path, shared: bool
) -> None:
    url, database = influx_db
    store = InfluxV1Store(http_client, url=url, database=database)
    clock = ManualClock(T0)
    state = StateDB(tmp_path / "state.sqlite3")
    spool = Spool(tmp_path / "spool.sqlite3")
    writer = Writer(store, state, spool, clock, health_every=None)
    rule = Unusual()
    rules: Mapping[tuple[str, str], tuple[Rule, ...]] = {ON.key: (rule,)}
    if shared:
        with_rule, without = object(), object()
        configs = {ON.key: with_rule, OFF.key: without}
        rules = ByConfig(configs, {id(with_rule): (rule,), id(without): ()})
    pipeline = Pipeline(
        state=state,
        writer=writer,
        outbox=None,
        rules=rules,
        clock=clock,
        route=lambda e: [],
    )
    scores: dict[int, float | None] = {}
    fired = []
    for poll in range(POLLS):
        now = clock.now()
        result = FetchResult(
            (Observation(ON, now, count_of(poll)), Observation(OFF, now, 5_000 + poll)),
            requests=1,
        )
        rows = await pipeline.process(result)
        fired += [e for row in rows for e in row.events]
        stored = state.rules.rule_states_many([ON.key])[ON.key]["unusual"]
        scores[at(poll)] = rule.score(stored)
        clock.advance(EVERY)
    await writer.flush()
    assert spool.counts().spooled == 0  # everything is in InfluxDB

    series = await store.query('SELECT "followers", "unusual" FROM "followers" GROUP BY "account"')
    by_account = {s["tags"]["account"]: s["values"] for s in series}
    # The account without the rule never carries the field; every count is there.
    assert len(by_account["off"]) == POLLS
    assert all(unusual is None for _, _, unusual in by_account["off"])
    # The account with the rule: the field is the score its state gives, absent while learning.
    on = {when: unusual for when, _, unusual in by_account["on"]}
    assert len(on) == POLLS
    assert on == scores
    learning = [when for when, score in scores.items() if score is None]
    assert learning[:MIN_LEARNING] == [at(p) for p in range(MIN_LEARNING)]
    assert all(on[at(p)] is not None for p in range(30, POLLS))
    # A float field, even where a score is a whole number.
    keys = await store.query('SHOW FIELD KEYS FROM "followers"')
    assert ["unusual", "float"] in keys[0]["values"]

    # The drop fired once, with a score, and followerwatch_events has it as a float field.
    [event] = [e for e in fired if e.kind is EventKind.UNUSUAL_DROP]
    assert event.score is not None and event.score < 0
    events = await store.query('SELECT "id", "score", "value" FROM "followerwatch_events"')
    [(_, event_id, score, value)] = events[0]["values"]
    assert (event_id, score, value) == (event.id, event.score, event.value)
    keys = await store.query('SHOW FIELD KEYS FROM "followerwatch_events"')
    assert ["score", "float"] in keys[0]["values"]
    state.close()
    spool.close()
