"""A poll's lines encoded as a batch are exactly the lines encoded one by one (or fail alike)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from followerwatch.models import Account, Observation
from followerwatch.store.pollpoints import PollPoints, encode_lines
from followerwatch.store.schema import observation_line, observation_lines

T0 = datetime(2026, 5, 1, tzinfo=UTC)
NAMES = st.text(max_size=8) | st.sampled_from(["alice", "a b", "c,d", "e=f", "g\\h", "time"])
INTS = st.integers(0, 10**6) | st.integers(-(2**64), 2**64)
LINES = st.lists(st.tuples(st.sampled_from(["below", "above"]), INTS), max_size=3).map(tuple)
# The `unusual` score: absent, whole numbers, any float (NaN and infinities never reach a line).
SCORES = st.none() | st.integers(-100, 100).map(float) | st.floats()


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    # Mostly plain accounts (the batch path), sometimes what only the general path handles.
    plain = draw(st.booleans())
    name = draw(st.from_regex(r"[a-z0-9_]{1,15}", fullmatch=True) if plain else NAMES)
    if not plain and draw(st.booleans()):
        name = draw(st.sampled_from(["a" * 999, "b" * 1000]))
    labels = () if plain else draw(st.lists(st.tuples(NAMES, NAMES), max_size=1).map(tuple))
    platform = "x" if plain else draw(st.sampled_from(["x", "", "a b", "x\n"]))
    account = Account(platform, name, name, labels=labels)
    # Mostly the poll's one time (one object), sometimes another.
    when = draw(st.sampled_from([T0, T0 + timedelta(seconds=1), T0 + timedelta(microseconds=1)]))
    extra = draw(st.lists(st.none() | INTS, min_size=3, max_size=3))
    followers = draw(INTS | st.booleans())
    return Observation(account, when, followers, extra[0], extra[1], resolution=extra[2])


@given(
    batch=st.lists(observations(), max_size=6),
    lines=st.lists(LINES, max_size=6),
    drawn=st.lists(SCORES, max_size=6),
)
def test_batch_equals_one_by_one(
    batch: list[Observation], lines: list[tuple], drawn: list[float | None]
) -> None:
    thresholds = {o.account.key: own for o, own in zip(batch, lines, strict=False)}
    scores = {i: score for i, score in enumerate(drawn) if score is not None}
    for precision in ("s", "ns"):
        for i, obs in enumerate(batch):
            own = thresholds.get(obs.account.key, ())
            score = scores.get(i)
            try:
                line: str | None = observation_line(obs, precision, own, score)
            except ValueError:
                line = None
            if line is None:
                with pytest.raises(ValueError):
                    observation_lines([obs], precision, thresholds, {0: score} if score else {})
            else:
                one = {} if score is None else {0: score}
                assert observation_lines([obs], precision, thresholds, one) == [line]
                _assert_unusual(line, score)
        try:
            expected: list[str] | None = [
                observation_line(o, precision, thresholds.get(o.account.key, ()), scores.get(i))
                for i, o in enumerate(batch)
            ]
        except ValueError:
            expected = None
        if expected is None:
            with pytest.raises(ValueError):
                observation_lines(batch, precision, thresholds, scores)
        else:
            assert observation_lines(batch, precision, thresholds, scores) == expected


def _assert_unusual(line: str, score: float | None) -> None:
    fields = line.rsplit(" ", 2)[-2]
    if score is None or not math.isfinite(score):
        assert ",unusual=" not in fields
    else:
        # A float field: never the integer suffix, and the same number back.
        value = fields.rsplit(",unusual=", 1)[1]
        assert not value.endswith("i") and float(value) == score


def test_a_whole_number_score_is_a_float_field() -> None:
    obs = Observation(Account("x", "alice", "alice"), T0, 100)
    labelled = Observation(Account("x", "bob", "bob", labels=(("team", "a"),)), T0, 7)
    assert observation_lines([obs, labelled, obs], "s", {}, {0: 3.0, 1: -46.0}) == [
        "followers,account=alice,platform=x followers=100i,unusual=3.0 1777593600",
        "followers,account=bob,platform=x,team=a followers=7i,unusual=-46.0 1777593600",
        "followers,account=alice,platform=x followers=100i 1777593600",
    ]
    for bad in (math.nan, math.inf, -math.inf):
        assert observation_line(obs, "s", (), bad) == (
            "followers,account=alice,platform=x followers=100i 1777593600"
        )


def test_a_bad_observation_costs_only_its_own_line() -> None:
    good = Observation(Account("x", "alice", "alice"), T0, 5, 1)
    bad = Observation(Account("x", "bad\nname", "bad\nname"), T0, 6)
    lines, rejected = encode_lines(PollPoints([good, bad, good], {}, []), "s")
    assert rejected == 1
    assert lines == [observation_line(good, "s")] * 2
    assert lines[0] == "followers,account=alice,platform=x followers=5i,following=1i 1777593600"


def test_poll_points_carry_the_scores_of_their_observations() -> None:
    alice = Observation(Account("x", "alice", "alice"), T0, 5)
    bob = Observation(Account("x", "bob", "bob"), T0, 6)
    points = PollPoints([alice, bob], {}, [], scores={1: -12.5})
    lines, rejected = encode_lines(points, "s")
    assert rejected == 0
    assert lines == [
        "followers,account=alice,platform=x followers=5i 1777593600",
        "followers,account=bob,platform=x followers=6i,unusual=-12.5 1777593600",
    ]
    # Read as Points (the writer's other readers), the same field.
    assert [dict(p.fields).get("unusual") for p in points] == [None, -12.5]


def test_the_nearest_of_several_lines_and_the_only_one() -> None:
    obs = Observation(Account("x", "alice", "alice"), T0, 100)
    one = {obs.account.key: (("below", 90),)}
    several = {obs.account.key: (("below", 90), ("above", 105), ("above", 200))}
    assert observation_lines([obs], "s", one)[0].endswith("distance=10i 1777593600")
    assert observation_lines([obs], "s", several)[0].endswith("distance=-5i 1777593600")
