"""Replicas of `followerwatch run` sharing one watchlist through PostgreSQL leases (issue 19)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import FakeX
from followerwatch.clock import SystemClock
from replica_procs import (
    holders,
    polls_between,
    start_replica,
    stop_all,
    wait_until,
    write_config,
)

ACCOUNTS = 300


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeX:
    """A fake X with no effective rate limit, timed by the real clock."""
    fake = FakeX(httpserver, SystemClock())
    fake.limit = fake.remaining = 10**9
    return fake


def test_three_replicas_poll_each_account_once_per_interval(
    tmp_path: Path, fake: FakeX, influx_db: tuple[str, str], pg_dsn: str
) -> None:
    config = tmp_path / "fw.toml"
    names = write_config(config, fake, influx_db, pg_dsn, ACCOUNTS)
    procs = [start_replica(config, tmp_path / f"data{i}") for i in range(3)]
    try:
        # Settled: all 64 shards leased, 21 or 22 to each of the three.
        wait_until(
            lambda: sorted(Counter(holders(pg_dsn).values()).values()) == [21, 21, 22],
            "the shards to spread over three replicas",
            timeout=30,
        )
        time.sleep(2)  # the last shard's first poll
        start = SystemClock().now()
        time.sleep(6)
        end = SystemClock().now() - timedelta(seconds=0)
        counts = polls_between(fake, start, end)
        settled = holders(pg_dsn)
    finally:
        outs = stop_all(procs)
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    assert sorted(Counter(settled.values()).values()) == [21, 21, 22]
    # Every account, polled once a second by one replica: about 6 polls in 6 s, never double.
    assert set(counts) == set(names)
    print("polls per account in 6 s:", Counter(counts.values()))
    assert min(counts.values()) >= 5 and max(counts.values()) <= 7, sorted(counts.values())
