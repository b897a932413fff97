"""The per-observation fast paths give exactly what the general paths they replace gave."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from followerwatch.clock import ManualClock
from followerwatch.config.settings import load_config
from followerwatch.models import Account, FailureKind, FetchResult, Observation
from followerwatch.poll.known import Known
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.approaching import ApproachingState
from followerwatch.rules.base import Reading, dump_state, load_state
from followerwatch.rules.health import FrozenState, StaleState
from followerwatch.rules.lifecycle import Lifecycle, LifecycleState
from followerwatch.rules.milestone import Milestones, MilestoneState
from followerwatch.rules.threshold import Threshold, ThresholdState
from followerwatch.rules.window import WindowChange, WindowState
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.lineprotocol import encode, escape_key, tag_value
from followerwatch.store.pollpoints import PollPoints
from followerwatch.store.schema import observation_line, observation_point
from followerwatch.store.spool import Spool
from followerwatch.store.thresholds import (
    nearest_distance,
    observation_threshold_lines,
    observation_threshold_points,
    threshold_lines,
)
from followerwatch.store.writer import Writer

T0 = datetime(2026, 5, 1, tzinfo=UTC)

STATES = st.one_of(
    st.builds(ThresholdState, st.booleans(), st.integers(0, 10**6), st.booleans()),
    st.builds(MilestoneState, st.none() | st.integers(-(10**12), 10**12)),
    st.builds(WindowState, st.booleans()),
    st.builds(StaleState, st.booleans()),
    st.builds(
        FrozenState,
        st.integers(0, 10**12),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
    ),
    st.builds(LifecycleState, st.text()),
    st.builds(ApproachingState, st.booleans()),
)


@given(state=STATES)
def test_dump_state_is_the_json_of_asdict_and_loads_back(state: object) -> None:
    text = dump_state(state)
    # The stored format is unchanged, so databases written before the fast path still load.
    assert text == json.dumps(dataclasses.asdict(state), sort_keys=True)  # type: ignore[call-overload]
    assert load_state(type(state), text) == state


@given(value=st.text(max_size=30))
def test_tag_value_escapes_and_rejects_exactly_like_escape_key(value: str) -> None:
    try:
        expected: str | None = escape_key("tag value", value)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            tag_value(value)
    else:
        assert tag_value(value) == expected


NAMES = st.text(max_size=12) | st.sampled_from(["alice", "a b", "c,d", "e=f", "g\\h", "time"])
INTS = st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**64), 2**64)


@given(
    platform=NAMES,
    name=NAMES | st.text(min_size=999, max_size=1001),
    labels=st.lists(st.tuples(NAMES, NAMES), max_size=2).map(tuple),
    followers=INTS,
    extra=st.lists(st.none() | INTS, min_size=3, max_size=3),
    lines=st.lists(st.tuples(st.sampled_from(["below", "above", "x y"]), INTS), max_size=3),
    micros=st.integers(0, 10**12),
    score=st.none() | st.floats(),
)
def test_direct_lines_equal_the_encoded_points_or_fail_alike(
    platform: str,
    name: str,
    labels: tuple[tuple[str, str], ...],
    followers: int,
    extra: list[int | None],
    lines: list[tuple[str, int]],
    micros: int,
    score: float | None,
) -> None:
    account = Account(platform, name, name, labels=labels)
    when = T0 + timedelta(microseconds=micros)
    obs = Observation(account, when, followers, extra[0], extra[1], resolution=extra[2])
    thresholds = {account.key: tuple(lines)}
    for precision in ("s", "ns"):
        # With and without lines: with them, the count carries its `distance` field.
        for own in ((), tuple(lines)):
            try:
                expected: str | None = encode(observation_point(obs, own, score), precision)
            except ValueError:
                expected = None
            if expected is None:
                with pytest.raises(ValueError):
                    observation_line(obs, precision, own, score)
            else:
                assert observation_line(obs, precision, own, score) == expected
                if own:
                    distance = nearest_distance(followers, own)
                    assert f"distance={distance}i" in expected.split(" ")[-2].split(",")
        try:
            points = observation_threshold_points(thresholds, [obs])
            wanted: list[str] | None = [encode(p, precision) for p in points]
        except ValueError:
            wanted = None
        if wanted is None:
            with pytest.raises(ValueError):
                observation_threshold_lines(thresholds, obs, precision)
        else:
            assert observation_threshold_lines(thresholds, obs, precision) == wanted


def reading(account: Account, minute: int, followers: int) -> Reading:
    obs = Observation(account, T0 + timedelta(minutes=minute), followers)
    return Reading(account, obs.time, obs, None, None)


def test_rules_hand_back_the_stored_text_when_their_state_does_not_change() -> None:
    alice = Account("x", "alice", "alice")
    # A stored text in another key order: same state, so it is kept rather than rewritten.
    stored = '{"streak": 0, "armed": true, "active": false}'
    state, events = Threshold("below", 100).evaluate(stored, reading(alice, 1, 500))
    assert (state, events) == (stored, [])
    state, _ = Threshold("below", 100).evaluate(stored, reading(alice, 1, 50))
    assert state == dump_state(ThresholdState(armed=False, streak=1, active=True))
    ok = dump_state(LifecycleState("ok"))
    assert Lifecycle().evaluate(ok, reading(alice, 1, 5)) == (ok, [])
    gone = Reading(alice, T0, None, FailureKind.SUSPENDED, None)
    state, events = Lifecycle().evaluate(ok, gone)
    assert state == dump_state(LifecycleState("suspended")) and len(events) == 1
    level = dump_state(MilestoneState(1000))
    assert Milestones(every=1000).evaluate(level, reading(alice, 1, 1500)) == (level, [])


async def test_poll_points_spool_the_same_lines_as_the_points_they_stand_for(
    tmp_path: Path,
) -> None:
    labelled = Account("x", "bob", "bob", labels=(("team", "a b"), ("zone", "eu")))
    plain = Account("mastodon", "c,d=e f", "cd@example.social")
    observations = [
        Observation(labelled, T0, 1_234, following=5, posts=6),
        Observation(plain, T0 + timedelta(seconds=1), 99, resolution=1000),
        Observation(plain, T0 + timedelta(seconds=2), 0),
    ]
    lines = {labelled.key: (("below", 1000), ("above", 2000)), plain.key: (("below", 100),)}
    extra = observation_threshold_points({plain.key: (("above", 7),)}, observations[1:2])
    due = observations[:2]  # the third observation's lines are not due: its count alone
    fast = PollPoints(observations, lines, extra, due)
    expected = [
        *(observation_point(o, lines[o.account.key]) for o in observations),
        *observation_threshold_points(lines, due),
        *extra,
    ]
    assert [dict(p.fields).get("distance") for p in expected[:3]] == [234, -1, -100]
    assert list(fast) == expected and len(fast) == len(expected)
    spooled = []
    async with httpx.AsyncClient() as client:
        # Nothing listens on port 1: every line stays in the spool to be compared.
        store = InfluxV1Store(client, url="http://127.0.0.1:1", database="db")
        for n, points in enumerate((expected, PollPoints(observations, lines, extra, due))):
            state = StateDB(tmp_path / f"state{n}.sqlite3")
            spool = Spool(tmp_path / f"spool{n}.sqlite3")
            writer = Writer(store, state, spool, ManualClock(T0), health_every=None)
            await writer.write(points)
            spooled.append([line for _, line in spool.peek(100)])
            state.close()
            spool.close()
    assert spooled[0] == spooled[1]
    assert sorted(spooled[1]) == sorted(encode(p) for p in expected)


async def test_unchanged_rule_states_are_kept_and_changed_ones_stored(tmp_path: Path) -> None:
    alice = Account("x", "alice", "alice")
    state = StateDB(tmp_path / "state.sqlite3")
    pipeline = Pipeline(
        state=state,
        writer=None,
        outbox=None,
        clock=ManualClock(T0),
        route=lambda e: [],
        rules={alice.key: [Threshold("below", 100), Lifecycle()]},
    )

    def poll(minute: int, followers: int) -> FetchResult:
        return FetchResult((Observation(alice, T0 + timedelta(minutes=minute), followers),))

    for minute, n in enumerate([500, 400, 50, 60]):
        await pipeline.process(poll(minute, n))
        if minute == 1:
            # Campaign phases share the table; a poll never writes back a stale copy of theirs.
            state.rules.set_rule_state(*alice.key, "other", "kept")
    stored = state.rules.rule_states(*alice.key)
    assert stored["other"] == "kept"
    assert load_state(ThresholdState, stored["below:100"]) == ThresholdState(False, 2, True)
    assert load_state(LifecycleState, stored["lifecycle"]) == LifecycleState("ok")
    state.close()


def test_spool_cap_counts_exactly_with_gaps_in_the_sequence(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", cap=10)
    assert spool.add([f"m v={i}i" for i in range(10)]) == 0
    # Acknowledge two lines in the middle: the seqs now have a gap the size bound must allow.
    middle = [seq for seq, _ in spool.peek(10)][4:6]
    spool.ack(middle)
    assert spool.add(["m v=10i", "m v=11i"]) == 0
    assert spool.add(["m v=12i"]) == 1
    counts = spool.counts()
    assert (counts.spooled, counts.dropped, counts.written) == (10, 1, 2)
    assert counts.balanced
    assert spool.peek(1)[0][1] == "m v=1i"
    spool.close()


async def test_a_count_that_cannot_be_encoded_is_left_out_alone(tmp_path: Path) -> None:
    good = Account("x", "good", "good")
    bad = Account("x", "bad", "bad\nname")  # config validation would refuse it: a bug path
    observations = [Observation(good, T0, 10), Observation(bad, T0, 20)]
    lines = {good.key: (("below", 5),), bad.key: (("below", 5),)}
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url="http://127.0.0.1:1", database="db")
        state = StateDB(tmp_path / "state.sqlite3")
        spool = Spool(tmp_path / "spool.sqlite3")
        writer = Writer(store, state, spool, ManualClock(T0), health_every=None)
        await writer.write(PollPoints(observations, lines, [], observations))
        spooled = [line for _, line in spool.peek(100)]
        state.close()
        spool.close()
    assert writer.rejected == 2
    assert spooled == [
        observation_line(observations[0], store.precision, lines[good.key]),
        *observation_threshold_lines(lines, observations[0], store.precision),
    ]


async def test_window_rules_see_the_same_history_prefetched_as_read_one_by_one(
    tmp_path: Path,
) -> None:
    accounts = [Account("x", f"u{i}", f"u{i}") for i in range(3)]
    rules = {a.key: [WindowChange("drop", 600.0, amount=50)] for a in accounts}
    fired: dict[str, list[list[int]]] = {}
    for mode in ("batch", "one by one"):
        state = StateDB(tmp_path / f"{mode}.sqlite3")
        pipeline = Pipeline(
            state=state,
            writer=None,
            outbox=None,
            clock=ManualClock(T0),
            route=lambda e: [],
            rules=rules,
        )
        events = []
        # Polls 5 minutes apart (plus a few µs, so window edges fall between stored readings
        # and exactly on them); u1 drops 60 within the window, u2 only across its edge.
        for step in range(8):
            when = T0 + timedelta(seconds=300 * step, microseconds=step % 2)
            counts = [1000, 1000 - 30 * step, 1000 - (100 if step == 6 else 0)]
            result = FetchResult(
                tuple(Observation(a, when, n) for a, n in zip(accounts, counts, strict=True))
            )
            if mode == "batch":
                rows = await pipeline.process(result)
            else:
                rows = []
                for obs in result.observations:
                    rows += await pipeline.process(FetchResult((obs,)))
            events.append([len(r.events) for r in rows])
        fired[mode] = events
        if mode == "batch":
            # The prefetched window against the per-account query, at and around every edge.
            keys = [a.key for a in accounts]
            edges = [T0 + timedelta(seconds=300 * s, microseconds=s % 2) for s in range(8)]
            for since in edges:
                for nudge in (timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1)):
                    known = Known(state, keys, T0 - timedelta(hours=1))
                    for key in keys:
                        expected = state.accounts.history(*key, since + nudge)
                        assert known.history(key, since + nudge) == expected
        state.close()
    assert fired["batch"] == fired["one by one"]
    assert any(any(step) for step in fired["batch"])


def test_accounts_with_the_same_lines_share_one_tuple(tmp_path: Path) -> None:
    watch = [{"platform": "x", "handle": f"u{i}"} for i in range(3)]
    watch.append({"platform": "x", "handle": "own", "below": [7]})
    config = load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path)},
            "platforms": {"x": {"bearer_token": "t", "defaults": {"below": 100}}},
            "watch": watch,
        },
    )
    lines = threshold_lines(config)
    assert lines[("x", "u0")] == (("below", 100),)
    assert lines[("x", "u0")] is lines[("x", "u1")] is lines[("x", "u2")]
    assert lines[("x", "own")] == (("below", 7),)
