"""The rate-limit header parsers (every reset format, garbage → None) and the RateLimiter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from followerwatch.clock import ManualClock
from followerwatch.errors import RateLimitedError
from followerwatch.models import RateLimit
from followerwatch.net.ratelimit import (
    RateLimiter,
    parse_count,
    parse_epoch_reset,
    parse_retry_after,
    reset_from_epoch,
    reset_from_iso,
    reset_from_seconds,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = int(NOW.timestamp())
GARBAGE = ["", " ", "abc", "-5", "nan", "inf", "1e9", "1_000", "0x10", "١٢", "12abc", None]


@pytest.mark.parametrize(
    "headers",
    [
        httpx.Headers(
            {
                "X-Rate-Limit-Limit": "300",
                "X-Rate-Limit-Remaining": "0",
                "X-Rate-Limit-Reset": str(EPOCH + 60),
            }
        ),
        {
            "x-rate-limit-limit": "300",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(EPOCH + 60),
        },
        {
            "X-RATE-LIMIT-LIMIT": "300",
            "X-Rate-Limit-Remaining": "0",
            "x-rate-limit-RESET": str(EPOCH + 60),
        },
    ],
)
def test_epoch_headers_any_case(headers) -> None:
    assert parse_epoch_reset(headers, "x-rate-limit-") == RateLimit(
        limit=300, remaining=0, reset_at=NOW + timedelta(seconds=60)
    )


def test_epoch_headers_absent_or_garbage() -> None:
    assert parse_epoch_reset({}, "x-rate-limit-") is None
    garbled = {
        "x-rate-limit-limit": "lots",
        "x-rate-limit-remaining": "-1",
        "x-rate-limit-reset": "soon",
    }
    assert parse_epoch_reset(garbled, "x-rate-limit-") is None
    partial = {"x-rate-limit-remaining": "12", "x-rate-limit-reset": "soon"}
    assert parse_epoch_reset(partial, "x-rate-limit-") == RateLimit(None, 12, None)


def test_each_reset_format() -> None:
    assert reset_from_epoch(str(EPOCH + 60)) == NOW + timedelta(seconds=60)
    assert reset_from_epoch(f"{EPOCH}.5") == NOW + timedelta(seconds=0.5)
    assert reset_from_seconds("30", NOW) == NOW + timedelta(seconds=30)
    assert reset_from_seconds(" 2.5 ", NOW) == NOW + timedelta(seconds=2.5)
    assert reset_from_iso("2026-08-22T12:35:00.000000Z") == datetime(
        2026, 8, 22, 12, 35, tzinfo=UTC
    )
    plus_two = reset_from_iso("2026-08-22T14:35:00+02:00")
    assert plus_two == datetime(2026, 8, 22, 12, 35, tzinfo=UTC)
    assert plus_two is not None and plus_two.tzinfo == UTC
    assert reset_from_iso("2026-08-22T12:35:00") == datetime(2026, 8, 22, 12, 35, tzinfo=UTC)
    assert parse_retry_after("120", NOW) == NOW + timedelta(seconds=120)
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", NOW) == datetime(
        2026, 10, 21, 7, 28, tzinfo=UTC
    )
    assert parse_count("598.0") == 598  # Reddit's float counts
    assert parse_count("300") == 300


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_is_none_never_an_error(value: str | None) -> None:
    assert parse_count(value) is None
    assert reset_from_epoch(value) is None
    assert reset_from_seconds(value, NOW) is None
    assert reset_from_iso(value) is None
    assert parse_retry_after(value, NOW) is None


@pytest.mark.parametrize("value", ["9" * 30, "2026-13-45T00:00:00Z", "Mon, 99 Foo 2026 00:00:00"])
def test_out_of_range_is_none(value: str) -> None:
    assert reset_from_epoch(value) is None
    assert reset_from_seconds(value, NOW) is None
    assert reset_from_iso(value) is None
    assert parse_retry_after(value, NOW) is None


async def test_limiter_sleeps_until_reset_plus_margin() -> None:
    clock = ManualClock(NOW)
    limiter = RateLimiter()
    limiter.update(RateLimit(300, 0, NOW + timedelta(seconds=90)))

    await limiter.wait(clock, max_wait=900)

    assert clock.sleeps == [91.0]
    await limiter.wait(clock, max_wait=900)  # the reset has passed now
    assert clock.sleeps == [91.0]


@pytest.mark.parametrize(
    "state",
    [
        None,
        RateLimit(300, 5, NOW + timedelta(seconds=90)),
        RateLimit(300, 0, NOW - timedelta(seconds=1)),  # past by the whole margin
        RateLimit(300, 0, None),
        RateLimit(None, None, NOW + timedelta(seconds=90)),
    ],
)
async def test_limiter_does_not_wait_with_budget_or_past_reset(state: RateLimit | None) -> None:
    clock = ManualClock(NOW)
    limiter = RateLimiter()
    if state is not None:
        limiter.update(state)

    await limiter.wait(clock, max_wait=900)

    assert clock.sleeps == []


async def test_limiter_raises_when_wait_exceeds_max() -> None:
    clock = ManualClock(NOW)
    limiter = RateLimiter()
    reset = (NOW + timedelta(seconds=600)).astimezone(timezone(timedelta(hours=2)))
    limiter.update(RateLimit(300, 0, reset))

    with pytest.raises(RateLimitedError) as info:
        await limiter.wait(clock, max_wait=120)

    assert info.value.retry_at == reset
    assert clock.sleeps == []


async def test_a_reset_beyond_max_backoff_is_cut_and_not_slept_on() -> None:
    clock = ManualClock(NOW)
    limiter = RateLimiter(max_backoff=900)
    year_9999 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    limiter.update(RateLimit(300, 0, year_9999), NOW)

    assert limiter.state == RateLimit(300, 0, NOW + timedelta(seconds=900))
    with pytest.raises(RateLimitedError, match="9999-12-31 23:59:59 UTC, not believed") as info:
        await limiter.acquire(clock, max_wait=10**6)  # even a long max_wait does not sleep on it
    assert info.value.not_believed == year_9999
    assert info.value.retry_at == NOW + timedelta(seconds=900)
    assert clock.sleeps == []
    clock.advance(901)  # the cut and its margin have passed: one request may find out
    await limiter.acquire(clock, max_wait=60)
    assert clock.sleeps == []


# Dates that parse but overflow when moved to UTC, and epochs past any datetime.
OVERFLOWING = [
    "9999-12-31T23:59:59-01:00",
    "Fri, 31 Dec 9999 23:59:59 -0100",
    "0001-01-01T00:00:00+01:00",
    "1" + "0" * 400,
    "9" * 300 + ".5",
    "99999999999999999999",
    "1e300",
    "-1",
]


@pytest.mark.parametrize("value", OVERFLOWING)
def test_an_overflowing_date_or_epoch_is_none_not_an_overflow(value: str) -> None:
    assert reset_from_epoch(value) is None
    assert reset_from_seconds(value, NOW) is None
    assert reset_from_iso(value) is None
    assert parse_retry_after(value, NOW) is None
    assert parse_epoch_reset({"x-rate-limit-reset": value}, "x-rate-limit-") is None


async def test_a_reset_just_past_the_window_from_a_slow_clock_is_believed() -> None:
    # X answers a fresh window's reset as now + 900 s by its clock; ours is 1.5 s behind.
    clock = ManualClock(NOW)
    limiter = RateLimiter(max_backoff=900)
    reset = NOW + timedelta(seconds=901.5)
    limiter.update(RateLimit(300, 0, reset), clock.now())

    assert limiter.not_believed is None
    assert limiter.state == RateLimit(300, 0, reset)
    await limiter.acquire(clock, max_wait=10**4)
    assert clock.sleeps == [902.5]
    # Beyond the tolerance it is still cut.
    limiter.update(RateLimit(300, 0, NOW + timedelta(seconds=2000)), NOW)
    assert limiter.not_believed == NOW + timedelta(seconds=2000)
