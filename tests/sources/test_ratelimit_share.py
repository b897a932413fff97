"""A RateLimiter given a BudgetShare leaves the end of each window to the other replicas."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from followerwatch.clock import ManualClock
from followerwatch.errors import RateLimitedError
from followerwatch.models import RateLimit
from followerwatch.net.ratelimit import BudgetShare, RateLimiter

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RESET = NOW + timedelta(seconds=90)


async def admitted(limiter: RateLimiter, clock: ManualClock, most: int = 40) -> int:
    """How many requests in a row the limiter lets out now, none answered, without sleeping."""
    sent = 0
    for _ in range(most):
        task = asyncio.ensure_future(limiter.acquire(clock, 900))
        for _ in range(3):
            await asyncio.sleep(0)
        if not task.done() or clock.sleeps:
            task.cancel()
            break
        task.result()
        sent += 1
    return sent


@pytest.mark.parametrize(
    ("share", "limit", "reserve"),
    [
        (BudgetShare(), 300, 0),
        (BudgetShare(peers=0, per_peer=8), 300, 0),
        (BudgetShare(peers=2, per_peer=3), 300, 6),
        (BudgetShare(peers=2, per_peer=3), None, 6),
        (BudgetShare(peers=2, per_peer=20), 30, 10),  # capped at a third of the window
        (BudgetShare(peers=2, per_peer=5), 2, 0),  # a tiny limit is never reserved away
        (BudgetShare(peers=-1, per_peer=3), 300, 0),
    ],
)
def test_reserve(share: BudgetShare, limit: int | None, reserve: int) -> None:
    assert share.reserve(limit) == reserve


async def test_the_reserve_is_left_to_the_others() -> None:
    clock = ManualClock(NOW)
    limiter = RateLimiter(share=BudgetShare(peers=2, per_peer=3))
    limiter.update(RateLimit(300, 10, RESET), NOW)

    # 10 left, 6 reserved: four may be in flight at once, the fifth waits for an answer.
    assert await admitted(limiter, clock) == 4
    assert clock.sleeps == []


async def test_at_the_reserve_it_waits_for_the_reset() -> None:
    clock = ManualClock(NOW)
    limiter = RateLimiter(share=BudgetShare(peers=2, per_peer=3))
    limiter.update(RateLimit(300, 6, RESET), NOW)

    assert limiter.delay(NOW) == 91.0
    await limiter.acquire(clock, 900)

    assert clock.sleeps == [91.0]


async def test_the_share_follows_the_live_replica_count() -> None:
    clock = ManualClock(NOW)
    share = BudgetShare(peers=2, per_peer=3)
    limiter = RateLimiter(share=share)
    limiter.update(RateLimit(300, 6, RESET), NOW)
    assert limiter.delay(NOW) > 0

    share.peers = 1  # a replica left: its part comes back at once

    assert limiter.delay(NOW) == 0
    assert await admitted(limiter, clock) == 3


async def test_waiting_longer_than_max_wait_at_the_reserve_raises() -> None:
    clock = ManualClock(NOW)
    limiter = RateLimiter(share=BudgetShare(peers=1, per_peer=4))
    limiter.update(RateLimit(300, 3, RESET), NOW)

    with pytest.raises(RateLimitedError) as info:
        await limiter.acquire(clock, max_wait=30)

    assert info.value.retry_at == RESET


async def test_a_tiny_limit_still_makes_progress_every_window() -> None:
    clock = ManualClock(NOW)
    limiter = RateLimiter(share=BudgetShare(peers=2, per_peer=5))
    # A window of 3: one unit reserved (3 // 3), so two of the three are this replica's to use.
    limiter.update(RateLimit(3, 3, RESET), NOW)
    assert await admitted(limiter, clock) == 2

    # Spent down to the reserve: after the reset (plus margin) one request finds the new window.
    limiter = RateLimiter(share=BudgetShare(peers=2, per_peer=5))
    limiter.update(RateLimit(3, 1, RESET), NOW)
    await limiter.acquire(clock, 900)
    assert clock.sleeps == [91.0]


STATES = [
    None,
    RateLimit(300, 10, RESET),
    RateLimit(300, 3, RESET),
    RateLimit(300, 1, RESET),
    RateLimit(300, 0, RESET),
    RateLimit(300, 0, NOW - timedelta(seconds=5)),
    RateLimit(300, 4, NOW - timedelta(seconds=5)),
    RateLimit(None, None, RESET),
    RateLimit(300, 5, None),
]


@pytest.mark.parametrize("state", STATES)
async def test_without_peers_nothing_changes(state: RateLimit | None) -> None:
    outcomes = []
    for limiter in (RateLimiter(), RateLimiter(share=BudgetShare(peers=0, per_peer=16))):
        clock = ManualClock(NOW)
        if state is not None:
            limiter.update(state, NOW)
        delay = limiter.delay(NOW)
        outcomes.append((delay, await admitted(limiter, clock), clock.sleeps))
    assert outcomes[0] == outcomes[1]


async def _replicas(seed: int, replicas: int, per_peer: int, limit: int, shared: bool) -> int:
    """Replicas with `per_peer` workers each spend one window; answers come back late at random.

    Returns how many requests found the window spent (a 429).
    """
    rng = random.Random(seed)
    clock = ManualClock(NOW)
    left, refused = limit, 0

    async def jitter(most: int) -> None:
        for _ in range(rng.randint(0, most)):
            await asyncio.sleep(0)

    async def worker(limiter: RateLimiter) -> None:
        nonlocal left, refused
        await jitter(50)
        while True:
            try:
                await limiter.acquire(clock, 0)  # the reset is beyond the test: stop there
            except RateLimitedError:
                return
            try:
                await jitter(8)
                if left == 0:
                    refused += 1
                else:
                    left -= 1
                seen = left
                # Some answers take long: others spend the budget behind this view's back.
                await jitter(rng.choice([1, 8, 60]))
                limiter.update(RateLimit(limit, seen, RESET), NOW)
            finally:
                limiter.release()

    workers = []
    for _ in range(replicas):
        share = BudgetShare(peers=replicas - 1, per_peer=per_peer) if shared else None
        limiter = RateLimiter(share=share)
        workers += [worker(limiter) for _ in range(per_peer)]
    await asyncio.gather(*workers)
    assert left <= limit  # sanity: every replica stopped
    return refused


@pytest.mark.parametrize(("replicas", "per_peer", "limit"), [(3, 1, 30), (3, 4, 40), (5, 2, 60)])
async def test_stale_views_never_overshoot_the_reserve(
    replicas: int, per_peer: int, limit: int
) -> None:
    shared = [await _replicas(s, replicas, per_peer, limit, shared=True) for s in range(150)]
    alone = [await _replicas(s, replicas, per_peer, limit, shared=False) for s in range(150)]

    assert max(shared) == 0
    # The same schedules without the share do overshoot: the test can fail.
    assert max(alone) > 0
