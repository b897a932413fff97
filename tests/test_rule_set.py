"""The full rule set through the real pipeline and state database, on an injected clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from followerwatch.clock import ManualClock
from followerwatch.config.base import RuleDefaults
from followerwatch.models import (
    Account,
    Event,
    EventKind,
    EventStatus,
    Failure,
    FailureKind,
    FetchResult,
    Observation,
)
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules import build_rules
from followerwatch.state.db import StateDB

T0 = datetime(2009, 4, 17, tzinfo=UTC)
ACC = Account("x", "aplusk", "aplusk")


class Harness:
    """A pipeline with no store and no notifiers; `step` polls once, `events` collects."""

    def __init__(self, tmp_path: Path, account: Account = ACC, **rules: Any) -> None:
        self.path = tmp_path / "state.sqlite3"
        self.clock = ManualClock(T0)
        self.account = account
        self.cfg = RuleDefaults.model_validate(rules)
        self.events: list[Event] = []
        self._open()

    def _open(self) -> None:
        self.state = StateDB(self.path)
        repeat = {self.account.key: self.cfg.repeat} if self.cfg.repeat else {}
        self.pipeline = Pipeline(
            state=self.state,
            writer=None,
            outbox=None,
            clock=self.clock,
            route=lambda e: [],
            rules={self.account.key: build_rules(self.cfg)},
            repeat=repeat,
        )

    def restart(self) -> None:
        self.state.close()
        self._open()

    async def step(
        self,
        count: int | None,
        every: float = 60.0,
        failure: FailureKind | None = None,
        resolution: int | None = None,
        handle: str | None = None,
    ) -> list[Event]:
        self.clock.advance(every)
        if count is None:
            failures = (Failure(self.account, self.clock.now(), failure),) if failure else ()
            result = FetchResult(failures=failures)
        else:
            obs = Observation(
                self.account,
                self.clock.now(),
                count,
                resolution=resolution,
                handle=handle or self.account.handle,
            )
            result = FetchResult(observations=(obs,))
        rows = await self.pipeline.process(result, polled=[self.account])
        before = len(self.events)
        stored = [e for e, _ in self.state.events.recent(10_000)]
        self.events = stored
        del rows
        return stored[before:]

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]


async def run(h: Harness, counts: Sequence[int | None], every: float = 60.0) -> list[EventKind]:
    for count in counts:
        await h.step(count, every)
    return h.kinds()


async def test_oscillating_count_with_hysteresis_and_for_fires_exactly_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, below=1_000_000, hysteresis=10_000, **{"for": 3})
    counts = []
    for minute in range(60):  # a simulated hour, one poll a minute
        drift = 1_008_000 - minute * 300  # slides from +0.8 % to -1 % over the hour
        counts.append(drift + (5_000 if minute % 2 else -5_000))  # ±0.5 % every poll
    assert await run(h, counts) == [EventKind.DROPPED_BELOW]
    plain = Harness(tmp_path / "plain", below=1_000_000)
    (tmp_path / "plain").mkdir(exist_ok=True)
    assert len(await run(plain, counts)) > 3  # what the same data does without them


async def test_for_needs_consecutive_polls_and_resolved_closes(tmp_path: Path) -> None:
    h = Harness(tmp_path, below=1000, hysteresis=20, resolved=True, **{"for": 2})
    kinds = await run(h, [1010, 990, 1005, 990, 985, 1010, 1025])
    assert kinds == [EventKind.DROPPED_BELOW, EventKind.BACK_ABOVE]
    assert [e.status for e in h.events] == [EventStatus.FIRING, EventStatus.RESOLVED]
    assert h.events[0].value == 985


async def test_milestones_skipped_in_one_poll_give_one_event_naming_the_highest(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, milestones={"every": 100_000, "down": True}, hysteresis=1_000)
    await run(h, [980_000, 1_210_000])
    assert [(e.kind, e.threshold) for e in h.events] == [(EventKind.MILESTONE, 1_200_000)]
    assert "3 milestones in one poll" in h.events[0].message
    await run(h, [1_199_500, 1_200_100])  # within hysteresis: no re-arm, nothing new
    assert len(h.events) == 1
    await run(h, [1_198_000, 1_200_000])  # fell back past it, then rose again
    assert [(e.kind, e.threshold) for e in h.events[1:]] == [
        (EventKind.MILESTONE_DOWN, 1_200_000),
        (EventKind.MILESTONE, 1_200_000),
    ]


async def test_milestone_list(tmp_path: Path) -> None:
    h = Harness(tmp_path, milestones=[1_000, 5_000])
    await run(h, [900, 1_200, 4_000, 6_000])
    assert [e.threshold for e in h.events] == [1_000, 5_000]


async def test_window_drop_uses_local_history(tmp_path: Path) -> None:
    h = Harness(tmp_path, changes=[{"drop": 10_000, "window": "1h"}])
    counts = [1_000_000] * 6 + [996_000, 992_000, 989_000, 989_500, 995_000, 1_001_000]
    await run(h, counts, every=600)  # a poll every 10 min
    assert [(e.kind, e.value) for e in h.events] == [
        (EventKind.WINDOW_DROP, 989_000),
        (EventKind.WINDOW_CLEARED, 995_000),
    ]
    assert "lost 11,000 followers (-1.1%) within 1h" in h.events[0].message


async def test_window_percentage_rise(tmp_path: Path) -> None:
    h = Harness(tmp_path, changes=[{"rise_pct": 5, "window": "24h"}])
    await run(h, [100_000, 102_000, 104_000, 105_100], every=3600)
    assert [(e.kind, e.value) for e in h.events] == [(EventKind.WINDOW_RISE, 105_100)]


async def test_frozen_count_while_polls_succeed(tmp_path: Path) -> None:
    h = Harness(tmp_path, frozen="6h")
    await run(h, [1_000_000] * 7, every=3600)  # six hours of the same count
    assert h.kinds() == [EventKind.FROZEN]
    await run(h, [1_000_000, 999_000], every=3600)
    assert h.kinds() == [EventKind.FROZEN, EventKind.UNFROZEN]


async def test_stale_and_recovery(tmp_path: Path) -> None:
    h = Harness(tmp_path, stale="30m")
    await run(h, [500, None, None], every=600)
    assert h.kinds() == []
    await run(h, [None], every=600)  # 30 min without a count
    assert h.kinds() == [EventKind.STALE]
    await run(h, [None, 510], every=600)
    assert h.kinds() == [EventKind.STALE, EventKind.STALE_RECOVERED]


async def test_lifecycle_events_fire_once_per_change(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.step(500)
    await h.step(None, failure=FailureKind.SUSPENDED)
    await h.step(None, failure=FailureKind.SUSPENDED)
    await h.step(
        None, failure=FailureKind.NOT_RETURNED
    )  # a missing answer is not a lifecycle change
    await h.step(510)
    await h.step(520, handle="ashton")
    assert h.kinds() == [EventKind.SUSPENDED, EventKind.REAPPEARED, EventKind.RENAMED]
    assert h.events[-1].message == "aplusk on x was renamed: @aplusk → @ashton"


async def test_rounded_count_fires_on_first_value_below_and_says_so(tmp_path: Path) -> None:
    h = Harness(tmp_path, Account("youtube", "@chan", "chan"), below=1_000_000)
    await h.step(1_000_000, resolution=10_000)
    [event] = await h.step(999_000, resolution=1_000)
    assert event.kind == EventKind.DROPPED_BELOW
    assert event.message.endswith("now 999,000 (the platform rounds this count down to 1,000s)")


async def test_repeat_interval_survives_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path, below=1000, repeat="1h")
    await run(h, [1500, 900], every=60)
    await run(h, [890] * 30, every=60)  # 30 min: too early to repeat
    assert h.kinds() == [EventKind.DROPPED_BELOW]
    h.restart()
    await run(h, [880] * 31, every=60)
    assert h.kinds() == [EventKind.DROPPED_BELOW] * 2
    assert h.events[1].message.startswith("still: ")
    await run(h, [1200], every=60)  # no longer past the line: no more repeats
    await run(h, [1200] * 70, every=60)
    assert len(h.events) == 2


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"milestones": {"every": 10, "levels": [1]}}, "exactly one of every or levels"),
        ({"changes": [{"window": "1h"}]}, "exactly one of drop"),
        ({"for": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_rule_config_is_rejected(bad: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        RuleDefaults.model_validate(bad)


async def test_approaching_fires_once_when_the_trend_nears_the_line(tmp_path: Path) -> None:
    h = Harness(tmp_path, below=1_000_000, approaching="6h")
    # Losing 1,000 an hour from 1,020,000: the line is 20 h away, then inside 6 h after 14 h.
    for hour in range(20):
        await h.step(1_020_000 - 1_000 * hour, every=3600)
    approaching = [e for e in h.events if e.kind == EventKind.APPROACHING]
    assert len(approaching) == 1
    assert approaching[0].value == 1_020_000 - 1_000 * 14
    assert "drops below 1,000,000 in about 6 h" in approaching[0].message
    # It crossed afterwards as usual.
    await h.step(999_000, every=3600)
    assert h.kinds()[-1] == EventKind.DROPPED_BELOW


async def test_projection_points_are_written_for_approaching_accounts(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    import httpx

    from followerwatch.store.influx_v1 import InfluxV1Store
    from followerwatch.store.spool import Spool
    from followerwatch.store.writer import Writer

    h = Harness(tmp_path, below=1_000_000, approaching="6h")
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        h.pipeline.writer = Writer(store, h.state, Spool(tmp_path / "spool.sqlite3"), h.clock)
        for hour in range(8):
            await h.step(1_020_000 - 1_000 * hour, every=3600)
        series = await store.query(
            "SELECT line, eta_s, per_day FROM followerwatch_projections GROUP BY direction"
        )
    [rows] = [s["values"] for s in series if s["tags"]["direction"] == "below"]
    # From the 5th reading on (the fit needs 5): 1,016,000 is 16 h away at -24,000/day.
    assert rows[0][1:] == [1_000_000, 16 * 3600, -24_000]
    assert [r[2] for r in rows] == [(16 - i) * 3600 for i in range(len(rows))]
