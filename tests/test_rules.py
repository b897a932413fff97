"""Threshold rules are pure functions: (state, observation) → (state, event)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from followerwatch.models import Account, EventKind, Observation
from followerwatch.rules.base import Reading, dump_state, load_state
from followerwatch.rules.threshold import Threshold, ThresholdState

ACCOUNT = Account("x", "aplusk", "aplusk")
T0 = datetime(2009, 4, 17, tzinfo=UTC)


def reading(minute: int, count: int) -> Reading:
    obs = Observation(ACCOUNT, T0 + timedelta(minutes=minute), count)
    return Reading(ACCOUNT, obs.time, obs, None, None)


def fire_indices(rule: Threshold, counts: list[int]) -> list[int]:
    state: str | None = None
    fired = []
    for i, count in enumerate(counts):
        state, events = rule.evaluate(state, reading(i, count))
        fired += [i for e in events if e.status == "firing"]
    return fired


def run(rule: Threshold, counts: list[int]) -> list[tuple[int, EventKind]]:
    kind = EventKind.DROPPED_BELOW if rule.direction == "below" else EventKind.CROSSED_ABOVE
    return [(counts[i], kind) for i in fire_indices(rule, counts)]


SEQUENCE = [1_000_100, 1_000_010, 999_990, 999_995, 1_000_020, 999_980]


def test_below_without_hysteresis_fires_on_each_crossing() -> None:
    assert run(Threshold("below", 1_000_000), SEQUENCE) == [
        (999_990, EventKind.DROPPED_BELOW),
        (999_980, EventKind.DROPPED_BELOW),
    ]


def test_below_with_hysteresis_fires_once() -> None:
    assert run(Threshold("below", 1_000_000, 50), SEQUENCE) == [(999_990, EventKind.DROPPED_BELOW)]


def test_first_observation_only_sets_state() -> None:
    assert run(Threshold("below", 1_000_000), [999_000, 998_000]) == []
    assert run(Threshold("above", 1_000_000), [1_000_001, 1_000_002]) == []


def test_above_fires_when_reaching_the_line() -> None:
    assert run(Threshold("above", 1_000_000), [999_999, 1_000_000, 999_999, 1_000_001]) == [
        (1_000_000, EventKind.CROSSED_ABOVE),
        (1_000_001, EventKind.CROSSED_ABOVE),
    ]


def test_event_message_and_id_are_deterministic() -> None:
    rule = Threshold("below", 1_000_000)
    armed = dump_state(ThresholdState(armed=True))
    _, [first] = rule.evaluate(armed, reading(0, 999_990))
    _, [again] = rule.evaluate(armed, reading(0, 999_990))
    assert first.id == again.id
    assert first.message == "@aplusk on x dropped below 1,000,000 followers: now 999,990"
    assert (first.rule, first.threshold) == ("below:1000000", 1_000_000)


def test_state_round_trips_and_garbage_is_unknown() -> None:
    state = ThresholdState(armed=False, streak=2, active=True)
    assert load_state(ThresholdState, dump_state(state)) == state
    assert load_state(ThresholdState, "not json") is None
    assert load_state(ThresholdState, '{"x": 1}') is None


@given(st.lists(st.integers(min_value=990, max_value=1010), min_size=1, max_size=60))
def test_without_hysteresis_events_equal_downward_crossings(counts: list[int]) -> None:
    line = 1000
    expected = sum(1 for a, b in itertools.pairwise(counts) if a >= line > b)
    assert len(run(Threshold("below", line), counts)) == expected


@given(
    st.lists(st.integers(min_value=900, max_value=1100), min_size=1, max_size=60),
    st.integers(min_value=0, max_value=80),
)
def test_hysteresis_never_fires_more_than_without(counts: list[int], hyst: int) -> None:
    plain = fire_indices(Threshold("below", 1000), counts)
    damped = fire_indices(Threshold("below", 1000, hyst), counts)
    assert set(damped) <= set(plain)
    # Between two events the count must have climbed back to line + hysteresis.
    for i, j in itertools.pairwise(damped):
        assert max(counts[i:j]) >= 1000 + hyst


def test_a_handle_that_starts_with_at_is_not_prefixed_again() -> None:
    # YouTube handles carry their own "@"; the message must not read "@@hidechan".
    account = Account("youtube", "@hidechan", "@hidechan")
    rule = Threshold("below", 100_000)
    state = None
    events = []
    for minute, count in enumerate((100_500, 99_000)):
        obs = Observation(account, T0 + timedelta(minutes=minute), count, handle="@hidechan")
        state, fired = rule.evaluate(state, Reading(account, obs.time, obs, None, None))
        events += fired
    assert [e.message.split(" dropped")[0] for e in events] == ["@hidechan on youtube"]
    assert "@@" not in events[0].message
