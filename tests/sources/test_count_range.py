"""A count is an int in 0 … 2^53 - 1; anything else is refused by the shared parsers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from followerwatch.models import (
    MAX_COUNT,
    Account,
    Failure,
    FailureKind,
    FetchResult,
    Observation,
    bounded,
)
from followerwatch.sources.common import count, strict_count

REFUSED: list[Any] = [
    -1,
    MAX_COUNT + 1,
    2**63,
    2**64,
    1.5,
    1e20,
    True,
    False,
    "12.5",
    "-3",
    "1e3",
    str(MAX_COUNT + 1),
    "9" * 5000,  # int() itself raises past 4,300 digits
    [],
    {},
]
ACCEPTED = [0, 1, 250_000, MAX_COUNT]


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_the_shared_parsers_refuse_what_is_not_a_count(value: Any) -> None:
    assert count(value) is None
    with pytest.raises(ValueError, match="not a count"):
        strict_count({"n": value}, "n")


@pytest.mark.parametrize("value", ACCEPTED)
def test_the_shared_parsers_keep_every_count_up_to_2_53(value: int) -> None:
    assert count(value) == value
    assert count(str(value)) == value  # YouTube quotes its counts
    assert strict_count({"n": value}, "n") == value


def test_the_net_turns_an_unstorable_observation_into_a_malformed_failure() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    a, b, c, d = (Account("x", n, n) for n in "abcd")
    result = bounded(
        FetchResult(
            observations=(
                Observation(a, when, 2**63),
                Observation(b, when, 10),
                Observation(c, when, 10, following=-4),
                Observation(d, when, MAX_COUNT, posts=MAX_COUNT),
            ),
            failures=(Failure(Account("x", "e", "e"), when, FailureKind.NOT_FOUND),),
            requests=1,
        )
    )
    assert [o.account for o in result.observations] == [b, d]
    assert [(f.account.name, f.kind) for f in result.failures] == [
        ("e", FailureKind.NOT_FOUND),
        ("a", FailureKind.MALFORMED),
        ("c", FailureKind.MALFORMED),
    ]
    assert result.requests == 1
