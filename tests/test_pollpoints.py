"""Points become spool lines in store/pollpoints.py: what cannot be encoded is counted, not kept."""

from __future__ import annotations

from datetime import UTC, datetime

from followerwatch.models import Account, Observation, Point
from followerwatch.store.lineprotocol import encode
from followerwatch.store.pollpoints import PollPoints, encode_lines
from followerwatch.store.schema import observation_line

T0 = datetime(2026, 5, 1, tzinfo=UTC)
GOOD = Point("m", (("k", "v"),), (("n", 1),), T0)
NO_FIELDS = Point("m", (("k", "v"),), (), T0)


def test_points_that_cannot_be_encoded_are_counted_and_left_out() -> None:
    assert encode_lines([NO_FIELDS, GOOD, NO_FIELDS], "s") == ([encode(GOOD, "s")], 2)


def test_a_polls_bad_observation_leaves_out_only_its_own_line() -> None:
    account = Account("x", "a", "a")
    good = Observation(account, T0, 10)
    naive = Observation(account, datetime(2026, 5, 1), 11)  # no timezone: cannot be encoded
    lines, rejected = encode_lines(PollPoints([good, naive], {}, [GOOD]), "ms")
    assert lines == [observation_line(good, "ms"), encode(GOOD, "ms")]
    assert rejected == 1
