"""Three replicas on one X token under an enforced limit: with a BudgetShare, 0 × 429."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.errors import SourceError
from followerwatch.models import Account
from followerwatch.net.ratelimit import BudgetShare
from followerwatch.sources.base import SourceContext
from followerwatch.sources.x import XConfig, build

REPLICAS = 3
PER_REPLICA = 3  # batches each replica has in flight at once: its poll concurrency
LIMIT = 30
WINDOW = 2
RUN_FOR = 5.0  # seconds: two to three windows


async def _replica(
    fake: FakeX, tmp_path: Path, share: BudgetShare | None, groups: list[list[Account]]
) -> tuple[set[Account], int]:
    """Poll `groups` (one batch each, all at once) cycle after cycle until RUN_FOR has passed.

    Returns the accounts that were observed, and the fetches that failed.
    """
    config = XConfig(bearer_token=TOKEN, base_url=fake.base_url)
    observed: set[Account] = set()
    failed = 0
    deadline = time.monotonic() + RUN_FOR
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        source = build(config, SourceContext(client, SystemClock(), tmp_path, share))

        async def fetch(group: list[Account]) -> None:
            nonlocal failed
            try:
                result = await source.fetch(group)
            except SourceError:
                failed += 1
                return
            observed.update(o.account for o in result.observations)

        while time.monotonic() < deadline and (share is not None or fake.refusals == 0):
            await asyncio.gather(*(fetch(g) for g in groups))
    return observed, failed


@pytest.mark.parametrize("shared", [True, False])
async def test_three_replicas_on_one_token(
    httpserver: HTTPServer, tmp_path: Path, shared: bool
) -> None:
    fake = FakeX(httpserver, SystemClock(), window=WINDOW)
    fake.limit = fake.remaining = LIMIT
    users = [make_user(i) for i in range(REPLICAS * PER_REPLICA * 100)]
    fake.add(*users)
    accounts = [Account("x", u["username"], u["username"]) for u in users]
    batches = [accounts[i : i + 100] for i in range(0, len(accounts), 100)]
    mine = [batches[r * PER_REPLICA : (r + 1) * PER_REPLICA] for r in range(REPLICAS)]

    outcomes = await asyncio.gather(
        *(
            _replica(
                fake,
                tmp_path,
                BudgetShare(peers=REPLICAS - 1, per_peer=PER_REPLICA) if shared else None,
                groups,
            )
            for groups in mine
        )
    )

    if shared:
        assert fake.refusals == 0
        assert all(failed == 0 for _, failed in outcomes)
        assert set().union(*(seen for seen, _ in outcomes)) == set(accounts)
        # The limit really bound: the replicas went on into later windows, past the first one.
        assert len(fake.seen) > LIMIT
    else:
        # Each replica alone believes the whole window is its own: together they overshoot.
        assert fake.refusals > 0
