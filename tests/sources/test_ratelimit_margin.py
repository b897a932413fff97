"""The limiter: a margin of 2 % of a short window once seen, and no overshoot when concurrent."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from followerwatch.clock import ManualClock, SystemClock
from followerwatch.http import build_client
from followerwatch.models import RateLimit
from followerwatch.ratelimit import SAFETY_MARGIN, RateLimiter, parse_epoch_reset
from followerwatch.sources.common import Requester, Tally

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def exhausted_then_fresh(window: float, limit: int = 300) -> RateLimiter:
    limiter = RateLimiter()
    limiter.update(RateLimit(limit, 0, at(10)))
    limiter.update(RateLimit(limit, limit - 1, at(10 + window)))
    return limiter


def test_the_margin_is_a_second_until_a_window_is_seen() -> None:
    limiter = RateLimiter()
    assert limiter.margin == SAFETY_MARGIN == 1.0
    limiter.update(RateLimit(300, 0, at(10)))
    assert limiter.delay(NOW) == 11.0


@pytest.mark.parametrize(("window", "margin"), [(15, 0.3), (16, 0.32), (50, 1.0), (900, 1.0)])
def test_a_short_fixed_window_shrinks_the_margin(window: float, margin: float) -> None:
    limiter = exhausted_then_fresh(window)
    assert limiter.margin == pytest.approx(margin)
    limiter.update(RateLimit(300, 0, at(10 + window)))
    assert limiter.delay(at(10)) == pytest.approx(window + margin)


@pytest.mark.parametrize(
    "after",
    [
        RateLimit(300, 250, at(25)),  # not a fresh window: budget came back only in part
        RateLimit(100, 99, at(25)),  # another limit: another bucket or policy
        RateLimit(300, 299, at(9)),  # the reset moved back
        RateLimit(None, None, at(25)),
        RateLimit(300, 299, None),
    ],
)
def test_no_window_is_learned_from_anything_else(after: RateLimit) -> None:
    limiter = RateLimiter()
    limiter.update(RateLimit(300, 0, at(10)))
    limiter.update(after)
    assert limiter.margin == 1.0


def test_a_refusal_restores_the_full_margin() -> None:
    limiter = exhausted_then_fresh(15)
    limiter.rate_limited()
    assert limiter.margin == 1.0


async def test_manual_clock_wait_uses_the_learned_margin() -> None:
    clock = ManualClock(at(10))
    limiter = exhausted_then_fresh(15)
    limiter.update(RateLimit(300, 0, at(25)))
    await limiter.wait(clock, max_wait=900)
    assert clock.sleeps == [pytest.approx(15.3)]


class FixedWindow:
    """X's scheme, as the benchmark fakes it: a window starts at the first request after the
    last one ended, and its reset is whole epoch seconds."""

    def __init__(self, limit: int, window: int) -> None:
        self.limit, self.window = limit, window
        self.reset, self.remaining = 0, 0
        self.served = self.refused = 0
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            now = time.time()
            if now >= self.reset:
                self.reset, self.remaining = int(now) + self.window, self.limit
            if self.remaining <= 0:
                self.refused += 1
                status = 429
            else:
                self.remaining -= 1
                self.served += 1
                status = 200
            headers = {
                "x-rate-limit-limit": str(self.limit),
                "x-rate-limit-remaining": str(self.remaining),
                "x-rate-limit-reset": str(self.reset),
            }
        return Response("{}", status=status, headers=headers, content_type="application/json")


async def test_no_429_against_a_fixed_window_with_the_learned_margin(
    httpserver: HTTPServer,
) -> None:
    server = FixedWindow(limit=3, window=1)
    httpserver.expect_request("/2/users/by").respond_with_handler(server)
    url = httpserver.url_for("/2/users/by")
    async with build_client(timeout=5) as client:
        requester = Requester(
            client,
            SystemClock(),
            "x",
            lambda headers, received: parse_epoch_reset(headers, "x-rate-limit-"),
        )
        for _ in range(3 * 3):  # three windows' worth, one request at a time
            response, _ = await requester.send("GET", url, Tally())
            assert response.status_code == 200
    assert server.refused == 0 and server.served == 9
    # The second window's reset came 2 s after the first (1 s margin); the third's 1 s after.
    assert requester.limiter("").margin == pytest.approx(0.02)


def test_the_learned_margin_is_never_negative_or_above_a_second() -> None:
    for window in (0.001, 1, 49, 50, 51, 10_000):
        margin = exhausted_then_fresh(window).margin
        assert 0 < margin <= 1.0


async def test_requests_in_flight_speak_for_the_budget_left() -> None:
    clock = ManualClock(NOW)
    limiter = RateLimiter()
    limiter.update(RateLimit(300, 2, at(10)))
    await limiter.acquire(clock, 900)
    await limiter.acquire(clock, 900)
    third = asyncio.create_task(limiter.acquire(clock, 900))
    await asyncio.sleep(0)
    assert not third.done()  # two left, two in flight
    limiter.update(RateLimit(300, 1, at(10)))  # one of them answered
    limiter.release()
    await asyncio.sleep(0)
    assert not third.done()  # one left, one still in flight
    limiter.update(RateLimit(300, 0, at(10)))
    limiter.release()
    await asyncio.wait_for(third, 1)
    assert clock.sleeps == [11.0]  # then it waited for the reset, as a lone request would


def test_an_overtaken_answer_does_not_raise_the_budget() -> None:
    limiter = RateLimiter()
    limiter.update(RateLimit(300, 5, at(10)))
    limiter.update(RateLimit(300, 7, at(10)))
    assert limiter.state == RateLimit(300, 5, at(10))
    limiter.update(RateLimit(300, 299, at(25)))  # a new window does
    assert limiter.state == RateLimit(300, 299, at(25))


async def test_concurrent_requests_never_overshoot_the_window(httpserver: HTTPServer) -> None:
    server = FixedWindow(limit=5, window=1)
    httpserver.expect_request("/2/users/by").respond_with_handler(server)
    url = httpserver.url_for("/2/users/by")
    async with build_client(timeout=5) as client:
        requester = Requester(
            client,
            SystemClock(),
            "x",
            lambda headers, received: parse_epoch_reset(headers, "x-rate-limit-"),
        )
        answers = await asyncio.gather(*(requester.send("GET", url, Tally()) for _ in range(12)))
    assert [r.status_code for r, _ in answers] == [200] * 12
    assert server.refused == 0 and server.served == 12
