"""The limiter: a whole-second margin whatever the window, and no overshoot when concurrent."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from followerwatch.clock import ManualClock, SystemClock
from followerwatch.models import RateLimit
from followerwatch.net.http import build_client
from followerwatch.net.ratelimit import SAFETY_MARGIN, RateLimiter, parse_epoch_reset
from followerwatch.sources.common import Requester, Tally

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def exhausted_then_fresh(window: float, limit: int = 300) -> RateLimiter:
    limiter = RateLimiter()
    limiter.update(RateLimit(limit, 0, at(10)))
    limiter.update(RateLimit(limit, limit - 1, at(10 + window)))
    return limiter


@pytest.mark.parametrize("window", [1, 10, 15, 50, 900])
def test_the_margin_is_a_whole_second_whatever_the_window(window: float) -> None:
    # A reset rounded down to whole seconds may name a moment up to a second before the window
    # ends: a margin shrunk with a short window (0.2 s of a 10 s one) was refused at its edge.
    limiter = exhausted_then_fresh(window)
    limiter.update(RateLimit(300, 0, at(10 + window)))
    assert SAFETY_MARGIN == 1.0
    assert limiter.delay(at(10)) == pytest.approx(window + 1.0)


@pytest.mark.parametrize(("past", "wait"), [(0.0, 1.0), (0.25, 0.75), (0.999, 0.001), (1.0, 0.0)])
async def test_a_reset_already_past_still_waits_out_the_margin(past: float, wait: float) -> None:
    clock = ManualClock(at(10 + past))
    limiter = RateLimiter()
    limiter.update(RateLimit(10, 0, at(10)), clock.now())
    await limiter.wait(clock, max_wait=900)
    assert clock.sleeps == ([pytest.approx(wait)] if wait else [])


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


async def test_no_429_against_a_fixed_window(httpserver: HTTPServer) -> None:
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
        for _ in range(3 * 2):  # two windows' worth, one request at a time
            response, _ = await requester.send("GET", url, Tally())
            assert response.status_code == 200
    assert server.refused == 0 and server.served == 6


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
