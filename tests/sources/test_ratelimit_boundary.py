"""No 429 at a window boundary: 800 X accounts in 8 groups, each polled every second, against
10 requests per 10 s whose reset header is whole seconds; and a refusal naming no future reset
backs off for the whole credential.

Time runs ten times faster than the wall clock (the source and the fake share one clock), so a
window is 10 s of that clock and 1 s of the test's; the fake keeps X's semantics on it.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fakes.fake_x import START, TOKEN, FakeX, make_user
from followerwatch.errors import RateLimitedError
from followerwatch.models import Account
from followerwatch.sources.x import XSource

SPEED = 10.0


class FastClock:
    """Wall time from START running SPEED times faster; sleeps shrink to match."""

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * SPEED)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / SPEED)


class WindowedX(FakeX):
    """X's lookup window: `limit` requests from the window's first request for `window` s; the
    reset header is that end in whole epoch seconds, rounded down, so it can be past on arrival.
    """

    def __init__(self, server: HTTPServer, clock: FastClock, limit: int, window: float) -> None:
        super().__init__(server, clock)
        self.limit, self.remaining, self.window = limit, 0, window
        self.ends = 0.0  # when the current window really ends
        self.reset = math.inf  # FakeX's own window never rolls over
        self.served = self.refused = 0
        self.lock = threading.Lock()

    def rate_headers(self) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(self.limit),
            "x-rate-limit-remaining": str(max(self.remaining, 0)),
            "x-rate-limit-reset": str(int(self.ends)),
        }

    def _answer(
        self,
        request: Request,
        param: str,
        pattern: re.Pattern[str],
        find: Callable[[str], dict[str, Any] | None],
    ) -> Response:
        with self.lock:
            now = self.clock.now().timestamp()
            if now >= self.ends:
                self.remaining, self.ends = self.limit, now + self.window
            response = super()._answer(request, param, pattern, find)
            if response.status_code == 429:
                self.refused += 1
            else:
                self.served += 1
            return response


def accounts(users: list[dict[str, Any]]) -> list[Account]:
    return [Account("x", u["username"], u["username"]) for u in users]


async def test_no_429_at_the_window_boundary_with_8_groups_polled_every_second(
    httpserver: HTTPServer,
) -> None:
    clock = FastClock(START + timedelta(seconds=0.37))
    fake = WindowedX(httpserver, clock, limit=10, window=10)
    users = [make_user(i) for i in range(800)]
    fake.add(*users)
    groups = [accounts(users[i : i + 100]) for i in range(0, 800, 100)]
    refusals: list[str] = []
    polls: list[int] = []
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        # One source for the platform, as the service builds it: one limiter for all 8 groups.
        source = XSource(client, bearer_token=TOKEN, clock=clock, base_url=fake.base_url)
        begin = clock.now()

        async def every_second(group: list[Account]) -> None:
            # The scheduler's interval job: every second, never overlapping, late runs coalesced.
            tick = begin
            while True:
                try:
                    result = await source.fetch(group)
                    polls.append(len(result.observations))
                except RateLimitedError as exc:
                    refusals.append(str(exc))
                now = clock.now()
                while tick <= now:
                    tick += timedelta(seconds=1)
                await clock.sleep((tick - now).total_seconds())

        tasks = [asyncio.create_task(every_second(g)) for g in groups]
        await clock.sleep(36)  # three full windows and a part
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert (fake.refused, refusals) == (0, [])
    # Every window was used in full: the waits cost the margin, not the budget.
    assert fake.served >= 30
    assert polls and set(polls) == {100}


async def test_a_429_without_a_future_reset_backs_off_growing_and_holds_every_group(
    httpserver: HTTPServer,
) -> None:
    clock = FastClock(START)
    fake = FakeX(httpserver, clock)
    fake.limit = fake.remaining = 10**6
    users = [make_user(i) for i in range(300)]
    fake.add(*users)
    past = str(int(clock.now().timestamp()) - 1)
    # No reset at all, then a reset already past: neither says when to come back.
    fake.serve(429, fake.load("rate_limited_problem.json"))
    fake.serve(
        429,
        fake.load("rate_limited_code88.json"),
        {**fake.rate_headers(), "x-rate-limit-remaining": "0", "x-rate-limit-reset": past},
    )
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        source = XSource(client, bearer_token=TOKEN, clock=clock, base_url=fake.base_url)
        results = await asyncio.gather(
            *(source.fetch(accounts(users[i : i + 100])) for i in range(0, 300, 100))
        )
    assert [len(r.observations) for r in results] == [100, 100, 100]
    times = [s.time for s in fake.seen]
    assert len(times) == 5  # two refusals, then one request per group
    first, second = (times[1] - times[0]).total_seconds(), (times[2] - times[1]).total_seconds()
    # 1 s then 2 s of back-off, each with the 1 s margin; no group was let through meanwhile.
    assert first >= 2.0 and second >= 3.0
    assert all(t >= times[2] for t in times[3:])
