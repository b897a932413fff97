"""A poll's lines encoded as a batch are exactly the lines encoded one by one (or fail alike)."""

from __future__ import annotations

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


@given(batch=st.lists(observations(), max_size=6), lines=st.lists(LINES, max_size=6))
def test_batch_equals_one_by_one(batch: list[Observation], lines: list[tuple]) -> None:
    thresholds = {o.account.key: own for o, own in zip(batch, lines, strict=False)}
    for precision in ("s", "ns"):
        for obs in batch:
            own = thresholds.get(obs.account.key, ())
            try:
                line: str | None = observation_line(obs, precision, own)
            except ValueError:
                line = None
            if line is None:
                with pytest.raises(ValueError):
                    observation_lines([obs], precision, thresholds)
            else:
                assert observation_lines([obs], precision, thresholds) == [line]
        try:
            expected: list[str] | None = [
                observation_line(o, precision, thresholds.get(o.account.key, ())) for o in batch
            ]
        except ValueError:
            expected = None
        if expected is None:
            with pytest.raises(ValueError):
                observation_lines(batch, precision, thresholds)
        else:
            assert observation_lines(batch, precision, thresholds) == expected


def test_a_bad_observation_costs_only_its_own_line() -> None:
    good = Observation(Account("x", "alice", "alice"), T0, 5, 1)
    bad = Observation(Account("x", "bad\nname", "bad\nname"), T0, 6)
    lines, rejected = encode_lines(PollPoints([good, bad, good], {}, []), "s")
    assert rejected == 1
    assert lines == [observation_line(good, "s")] * 2
    assert lines[0] == "followers,account=alice,platform=x followers=5i,following=1i 1777593600"


def test_the_nearest_of_several_lines_and_the_only_one() -> None:
    obs = Observation(Account("x", "alice", "alice"), T0, 100)
    one = {obs.account.key: (("below", 90),)}
    several = {obs.account.key: (("below", 90), ("above", 105), ("above", 200))}
    assert observation_lines([obs], "s", one)[0].endswith("distance=10i 1777593600")
    assert observation_lines([obs], "s", several)[0].endswith("distance=-5i 1777593600")
