"""The `unusual` rule on synthetic series (fixed seeds, stated in each test).

The series (tests/unusual_series.py): an account gaining about 1,000/h on average, with a trend
(+50 % a year), a daily cycle of ±50 % of the mean rate, and Student-t noise (3 degrees of
freedom) at 0.25 × the typical change over each poll. Waves run at −10× and −20× the typical
absolute rate for 3–12 hours, each starting at a random hour.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from followerwatch.models import Account, Event, EventKind, EventStatus, Observation
from followerwatch.rules.base import Reading
from followerwatch.rules.unusual import PACKED_SIZE, Sensitivity, Unusual, pack, unpack
from followerwatch.rules.unusual_state import unpack_values
from unusual_series import DAY, HOUR, START, Wave, generate, random_waves, rounded

ACCOUNT = Account("x", "aplusk", "aplusk")


def run(
    readings: Sequence[tuple[datetime, int]],
    rule: Unusual | None = None,
    resolution: int | None = None,
    state: str | None = None,
) -> tuple[str | None, list[Event]]:
    """Every reading through the rule in order; the last state and every event."""
    rule = rule or Unusual()
    events: list[Event] = []
    for when, count in readings:
        obs = Observation(ACCOUNT, when, count, resolution=resolution)
        state, fired = rule.evaluate(state, Reading(ACCOUNT, when, obs, None, None))
        events += fired
    return state, events


def firing(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if e.status == EventStatus.FIRING]


def in_wave(when: datetime, wave: Wave, every: float) -> bool:
    start = START + timedelta(seconds=wave.start)
    return start < when <= start + timedelta(hours=wave.hours, seconds=2 * every)


@pytest.mark.parametrize("every", [300, 900, 3600])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_wave_fires_once_within_two_polls_of_its_onset(every: int, seed: int) -> None:
    # 60 days, 8 waves from day 4 (so some before the daily cycle is learned at day 14).
    waves = random_waves(seed, 60, 8)
    series = generate(seed, days=60, every=every, waves=waves)
    _, events = run(series.readings)
    fired = firing(events)
    for wave in waves:
        onset = START + timedelta(seconds=wave.start)
        mine = [e for e in fired if in_wave(e.time, wave, every)]
        assert len(mine) == 1, (wave, [e.message for e in mine])
        polls = (mine[0].time - onset).total_seconds() / every
        assert 1 <= polls <= 2, (wave, polls)
        assert mine[0].kind == EventKind.UNUSUAL_DROP
        assert mine[0].value < -5 * 1000  # the observed rate per hour, as an integer
        assert mine[0].score is not None and mine[0].score < -15
    # Nothing else fired, and every wave's condition resolved once it was over.
    assert len(fired) == len(waves)
    resolved = [e for e in events if e.status == EventStatus.RESOLVED]
    assert len(resolved) == len(waves)
    assert all(e.kind == EventKind.UNUSUAL_CLEARED for e in resolved)


@pytest.mark.parametrize("every", [300, 900, 3600])
def test_a_year_without_waves_fires_nothing(every: int) -> None:
    # Seeds 100–104: 365 days each, a weekly cycle of ±30 % on top of the daily one, and 20
    # single-poll glitches (a reading 1–5 % off that the next poll undoes).
    fires = []
    for seed in range(100, 105):
        series = generate(seed, days=365, every=every, weekly=0.3, spikes=20)
        _, events = run(series.readings)
        fires += [e.message for e in firing(events)]
    assert fires == []


def test_the_message_says_why_in_words() -> None:
    series = generate(7, days=20, every=3600, waves=[Wave(16 * DAY, 6, 20.0)])
    _, events = run(series.readings)
    (event,) = firing(events)
    assert event.message.startswith("@aplusk on x is losing ")
    assert "/h; typical for this hour is +" in event.message
    assert "(score -" in event.message
    assert isinstance(event.value, int) and isinstance(event.threshold, int)
    assert event.value < 0 < event.threshold


def test_a_rounded_growing_channel_never_fires() -> None:
    # Seed 11: a channel near 1.2M gaining ~2,000/h, shown at 3 significant figures (steps of
    # 10,000), polled every 15 minutes for 60 days, with the shown count flapping at a step.
    series = generate(11, days=60, every=900, rate=2000, start_count=1_200_000)
    shown = [(t, rounded(c)[0]) for t, c in series.readings]
    # A flap: one poll shows a step less, the next is back (a count sitting on a boundary).
    i = len(shown) // 2
    shown[i] = (shown[i][0], shown[i][1] - 10_000)
    state, events = run(shown, resolution=10_000)
    assert firing(events) == []
    summary = unpack(state)
    assert summary is not None and summary.ready()


def test_a_drop_hidden_under_rounding_fires_once_it_exceeds_the_step() -> None:
    # Seed 12: the same channel; on day 20 it starts losing 20,000/h (−10×) for 6 hours.
    wave = Wave(20 * DAY, 6, 10.0)
    series = generate(12, days=22, every=900, rate=2000, start_count=1_200_000, waves=[wave])
    true_counts = dict(series.readings)
    shown = [(t, rounded(c)[0]) for t, c in series.readings]
    _, events = run(shown, resolution=10_000)
    (event,) = firing(events)
    onset = START + timedelta(seconds=wave.start)
    peak = max(c for t, c in series.readings if t <= onset)
    lost = peak - true_counts[event.time]
    # It fires only once the true loss is more than one rounding step, and soon after.
    assert lost > 10_000
    assert event.time - onset <= timedelta(hours=2)


def test_too_little_history_never_fires_and_says_so() -> None:
    rule = Unusual()
    # Two days of hourly readings, then a collapse: fewer than 3 days.
    series = generate(21, days=2, every=3600)
    readings = list(series.readings)
    last_t, last_c = readings[-1]
    readings += [(last_t + timedelta(hours=k), last_c - 50_000 * k) for k in range(1, 6)]
    state, events = run(readings, rule)
    assert events == []
    assert rule.status(state).startswith("too little history: 53 readings over 2.2 days")
    assert rule.score(state) is None
    # Four days, but polled every 6 hours: fewer than 24 readings.
    sparse = generate(22, days=4, every=6 * 3600)
    state, events = run(sparse.readings, rule)
    assert events == [] and rule.status(state).startswith("too little history: 16 readings")
    assert Unusual().status(None).startswith("too little history: 0 readings")


def test_the_state_fits_in_256_bytes() -> None:
    series = generate(31, days=20, every=3600)
    state, _ = run(series.readings)
    # 172 packed bytes, held as a latin-1 string: 245 bytes in memory, all of it.
    assert state is not None and len(state) == PACKED_SIZE == 172
    assert sys.getsizeof(state) <= 256
    summary = unpack(state)
    assert summary is not None and summary.seasonal()
    # The hour-of-day offsets learned the ±50 % daily cycle (amplitude ~600/h at this point).
    assert max(summary.offsets) - min(summary.offsets) > 600


def test_irregular_polling_and_gaps_are_rates_not_drops() -> None:
    # Seed 41: polls every 5–55 minutes at random, with a 9-hour outage on day 10 and a day
    # without polls on day 18: no fire; a −10× wave on day 25 still fires.
    rng = random.Random(41)
    base = generate(41, days=30, every=300, waves=[Wave(25 * DAY, 8, 10.0)])
    kept, t = [], START
    for when, count in base.readings:
        if when < t:
            continue
        if 10 * DAY <= (when - START).total_seconds() < 10 * DAY + 9 * HOUR:
            continue
        if 18 * DAY <= (when - START).total_seconds() < 19 * DAY:
            continue
        kept.append((when, count))
        t = when + timedelta(minutes=rng.randint(5, 55))
    _, events = run(kept)
    fired = firing(events)
    assert len(fired) == 1
    assert fired[0].time >= START + timedelta(seconds=25 * DAY)


def test_direction_and_sensitivity() -> None:
    rise = generate(51, days=20, every=3600, waves=[Wave(16 * DAY, 5, -20.0)])
    drop = generate(51, days=20, every=3600, waves=[Wave(16 * DAY, 5, 20.0)])
    assert firing(run(rise.readings)[1]) == []  # down by default
    (up,) = firing(run(rise.readings, Unusual(direction="up"))[1])
    assert up.kind == EventKind.UNUSUAL_RISE
    assert len(firing(run(rise.readings, Unusual(direction="both"))[1])) == 1
    assert len(firing(run(drop.readings, Unusual(direction="both"))[1])) == 1
    assert firing(run(drop.readings, Unusual(direction="up"))[1]) == []
    # A −3× wave: too small at the default sensitivity, enough at "high".
    mild = generate(52, days=20, every=3600, waves=[Wave(16 * DAY, 6, 3.0)])
    assert firing(run(mild.readings, Unusual(sensitivity="low"))[1]) == []
    assert len(firing(run(mild.readings, Unusual(sensitivity="high"))[1])) == 1


def test_min_change_keeps_a_small_account_quiet() -> None:
    # A 2,000-follower account gaining ~2/h: a −20× wave loses ~40/h, far outside its normal,
    # but under 100 followers in all: no alert by default; with min_change = 10 it fires.
    series = generate(
        61, days=20, every=3600, rate=2, start_count=2_000, waves=[Wave(16 * DAY, 2, 20.0)]
    )
    assert firing(run(series.readings)[1]) == []
    assert len(firing(run(series.readings, Unusual(min_change=10))[1])) == 1


def test_seeded_from_stored_counts_matches_learning_live() -> None:
    series = generate(71, days=10, every=3600)
    rule = Unusual()
    live, _ = run(series.readings, rule)
    seeded = rule.seeded(None, series.readings)
    a, b = unpack(live), unpack(seeded)
    assert a is not None and b is not None
    assert (a.readings, a.first, a.anchor_time) == (b.readings, b.first, b.anchor_time)
    assert a.level == pytest.approx(b.level) and a.spread == pytest.approx(b.spread)
    assert rule.status(seeded).startswith("typical +")
    # No stored counts: the state is left as it was.
    assert rule.seeded(live, []) == live


def stepped(rule: Unusual, state: str, when: datetime, count: int, resolution: int) -> str:
    """The straightforward path: unpack every value, `step`, pack (what `evaluate` shortcuts)."""
    v = unpack_values(state)
    assert v is not None
    changed = rule.step(v, int(when.timestamp()), count, resolution) is not None
    return pack(v) if changed else state


@pytest.mark.parametrize("sensitivity", ["high", "normal"])
def test_evaluate_leaves_the_states_step_leaves_bit_for_bit(sensitivity: Sensitivity) -> None:
    # `evaluate` scores and learns the usual reading without unpacking the whole summary. Seeds
    # 81–83, 30 days each: polls every 5 minutes jittered by up to ±4 (a few repeated or out of
    # order), with waves and glitches (runs, fires and clears); the same rounded to 3 figures;
    # and hourly from 1960 (times before the epoch). Every state must be the reference's, and a
    # second account read at the same moment (one time object, as in a poll) must get the same.
    rng = random.Random(81)
    waves = random_waves(81, 30, 4)
    jittered = [
        (t + timedelta(seconds=rng.randint(-240, 240)), c)
        for t, c in generate(81, days=30, every=300, waves=waves, spikes=10).readings
    ]
    drop = generate(82, days=30, every=900, waves=[Wave(20 * DAY, 6, 10.0)]).readings
    rounded_ = [(t, rounded(c)[0]) for t, c in drop]
    old = [
        (t - timedelta(days=365 * 10), c)
        for t, c in generate(83, days=30, every=3600, waves=random_waves(83, 30, 3)).readings
    ]
    rule = Unusual(sensitivity=sensitivity, direction="both")
    compared = 0
    for readings, resolution in ((jittered, 1), (rounded_, 10_000), (old, 1)):
        state: str | None = None
        twin: str | None = None
        expected: str | None = None
        for when, count in readings:
            obs = Observation(ACCOUNT, when, count, resolution=resolution)
            state, _ = rule.evaluate(state, Reading(ACCOUNT, when, obs, None, None))
            twin, _ = rule.evaluate(twin, Reading(ACCOUNT, when, obs, None, None))
            if expected is None:
                expected = rule.seeded(None, [(when, count)], resolution)
            else:
                expected = stepped(rule, expected, when, count, resolution)
            assert state == expected == twin, (when, count)
            compared += 1
    assert compared > 8_000


def test_a_state_from_elsewhere_is_a_fresh_start() -> None:
    rule = Unusual()
    for junk in ['{"armed": true}', '"not base64!"', '"AAAA"', ""]:
        when = START
        obs = Observation(ACCOUNT, when, 1_000)
        state, events = rule.evaluate(junk, Reading(ACCOUNT, when, obs, None, None))
        assert events == [] and unpack(state) is not None and not rule.active(state)


def test_hostile_counts_and_times_never_break_the_state() -> None:
    # Readings from 1960 (an import of old data), counts at the int64 edges, a jump from 0 to
    # the maximum in one second, and back: every state packs, reads back, and scores are finite
    # or absent.
    rule = Unusual(direction="both")
    top = 2**63 - 1
    start = datetime(1960, 1, 1, tzinfo=START.tzinfo)
    readings = [(start + timedelta(hours=h), 1_000 + h) for h in range(100)]
    last = readings[-1][0]
    readings += [
        (last + timedelta(seconds=1), top),
        (last + timedelta(seconds=2), 0),
        (last + timedelta(seconds=3), -top),
        (last + timedelta(seconds=4), top),
        (datetime(2200, 1, 1, tzinfo=START.tzinfo), 5),
    ]
    state, _ = run(readings, rule)
    summary = unpack(state)
    assert summary is not None
    assert summary.anchor_time == int(datetime(2200, 1, 1, tzinfo=START.tzinfo).timestamp())
    score = rule.score(state)
    assert score is None or abs(score) < float("inf")
