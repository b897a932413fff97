"""Replicas of `followerwatch run` sharing one watchlist through PostgreSQL leases (issue 19)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import FakeX
from followerwatch.clock import SystemClock
from followerwatch.demo.postgres import TempPostgres
from replica_procs import (
    Receiver,
    accounts_in,
    live_replicas,
    longest_gaps,
    polls,
    polls_between,
    set_followers,
    settle,
    shards_of,
    spread,
    start_replica,
    stop_all,
    wait_until,
    write_config,
)
from service_proc import run_cli

ACCOUNTS = 300

ALERTS = """
[platforms.x.defaults]
below = 900
[alerts]
attempt_timeout = "1s"
backoff_initial = "0.2s"
backoff_max = "0.5s"
[[notifiers]]
type = "webhook"
url = "{url}"
"""


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeX:
    """A fake X with no effective rate limit, timed by the real clock."""
    fake = FakeX(httpserver, SystemClock())
    fake.limit = fake.remaining = 10**9
    return fake


def alerting_replicas(
    tmp_path: Path, fake: FakeX, influx_db: tuple[str, str], dsn: str
) -> tuple[Receiver, list[str], list[subprocess.Popen[str]]]:
    """Three replicas alerting a webhook receiver below 900 followers; their account names."""
    receiver = Receiver()
    config = tmp_path / "fw.toml"
    extra = ALERTS.format(url=receiver.url)
    names = write_config(config, fake, influx_db, dsn, ACCOUNTS, extra=extra)
    return receiver, names, [start_replica(config, tmp_path / f"data{i}") for i in range(3)]


def test_three_replicas_poll_each_account_once_per_interval_and_a_fourth_joins(
    tmp_path: Path, fake: FakeX, influx_db: tuple[str, str], pg_dsn: str
) -> None:
    config = tmp_path / "fw.toml"
    names = write_config(config, fake, influx_db, pg_dsn, ACCOUNTS)
    procs = [start_replica(config, tmp_path / f"data{i}") for i in range(3)]
    try:
        # Settled: all 64 shards leased, 21 or 22 to each of the three.
        wait_until(
            lambda: spread(pg_dsn) == [21, 21, 22],
            "the shards to spread over three replicas",
            timeout=30,
        )
        time.sleep(2)  # the last shard's first poll
        start = SystemClock().now()
        time.sleep(6)
        counts = polls_between(fake, start, SystemClock().now())
        settled = spread(pg_dsn)
        checked = run_cli("check", "--config", str(config))
        # A fourth replica: from when it is up, the shards rebalance to 16 each.
        procs.append(start_replica(config, tmp_path / "data3"))
        wait_until(lambda: len(live_replicas(pg_dsn)) == 4, "the fourth replica", timeout=20)
        joined = SystemClock().now()
        rebalanced = wait_until(
            lambda: spread(pg_dsn) == [16, 16, 16, 16], "16 shards each", timeout=12
        )
        time.sleep(2)
        gaps = longest_gaps(fake, joined - timedelta(seconds=2), SystemClock().now())
        # SIGTERM gives the leases back at once: none is left to expire, and the others
        # take the shards at their next tick.
        leaving = procs[-1]
        leaving.send_signal(signal.SIGTERM)
        leaving.wait(timeout=30)
        left_behind = shards_of(pg_dsn, leaving.pid)
        still_live = [r for r in live_replicas(pg_dsn) if f":{leaving.pid}:" in r]
        retaken = wait_until(
            lambda: spread(pg_dsn) == [21, 21, 22], "the three to take them", timeout=10
        )
    finally:
        outs = stop_all(procs)
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    assert settled == [21, 21, 22]
    # `check` shows the replicas and the shards each holds (and exits 1: a 1 s interval is
    # far over X's ceiling, which its plan says).
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "PostgreSQL state reachable" in checked.stdout
    assert checked.stdout.count("│ yes ") == 3 and "64 of 64 shards leased" in checked.stdout
    assert sorted(int(m) for m in re.findall(r"│ (\d+): ", checked.stdout)) == [21, 21, 22]
    # Every account, polled once a second by one replica: about 6 polls in 6 s, never double.
    assert set(counts) == set(names)
    print("polls per account in 6 s:", Counter(counts.values()))
    assert min(counts.values()) >= 5 and max(counts.values()) <= 7, sorted(counts.values())
    print(
        f"rebalanced {rebalanced:.2f} s after the fourth replica was up;"
        f" longest gap between polls {max(gaps.values()):.2f} s"
    )
    assert rebalanced <= 2 * 3
    print(f"after SIGTERM the others held every shard {retaken:.2f} s after it exited")
    assert left_behind == set() and still_live == []
    assert retaken <= 3  # a renewal period plus slack, not a TTL
    # No account unpolled for longer than TTL + one interval while its shard moved.
    assert set(gaps) == set(names) and max(gaps.values()) <= 3 + 1


def test_a_killed_replicas_accounts_alerts_and_deliveries_are_taken_over(
    tmp_path: Path, fake: FakeX, influx_db: tuple[str, str], pg_dsn: str
) -> None:
    receiver, names, procs = alerting_replicas(tmp_path, fake, influx_db, pg_dsn)
    victim = procs[0]
    try:
        wait_until(
            lambda: spread(pg_dsn) == [21, 21, 22],
            "the shards to spread over three replicas",
            timeout=30,
        )
        mine = accounts_in(names, shards_of(pg_dsn, victim.pid))
        before, during = mine[:5], mine[5:10]
        # Crossings the victim sees while the receiver is down: they wait in its outbox.
        receiver.status = 503
        set_followers(fake, before, 500)
        wait_until(lambda: receiver.refused >= 5, "the victim to try its alerts", timeout=15)
        victim.kill()
        victim.wait()
        killed = SystemClock().now()
        receiver.status = 200
        # A crossing while the victim's shards change hands.
        set_followers(fake, during, 500)
        wait_until(
            lambda: all(polls(fake)[n][-1] > killed for n in mine),
            "the victim's accounts to be polled again",
            timeout=20,
        )
        repolled = max(
            next(t for t in polls(fake)[n] if t > killed) - killed for n in mine
        ).total_seconds()
        wait_until(
            lambda: set(receiver.events("dropped_below")) >= set(before + during),
            "every crossing to be delivered",
            timeout=30,
        )
        time.sleep(3)  # any second delivery would come now
    finally:
        try:
            outs = stop_all(procs)
        finally:
            receiver.stop()
    for proc, out in zip(procs[1:], outs[1:], strict=True):
        assert proc.returncode == 0, out[-3000:]
    print(f"the victim's {len(mine)} accounts polled again within {repolled:.2f} s")
    # TTL (3 s) + one interval (1 s), and the claims' own latency (a tick, a load).
    assert repolled <= 3 + 1 + 0.5
    delivered = receiver.events("dropped_below")
    assert delivered == Counter({n: 1 for n in before + during}), delivered


def test_a_replica_paused_past_its_ttl_writes_and_sends_nothing_for_lost_shards(
    tmp_path: Path, fake: FakeX, influx_db: tuple[str, str], pg_dsn: str
) -> None:
    receiver, names, procs = alerting_replicas(tmp_path, fake, influx_db, pg_dsn)
    victim = procs[0]
    try:
        wait_until(lambda: spread(pg_dsn) == [21, 21, 22], "three replicas", timeout=30)
        mine = accounts_in(names, shards_of(pg_dsn, victim.pid))
        crossed = mine[:10]
        victim.send_signal(signal.SIGSTOP)
        wait_until(lambda: spread(pg_dsn) == [32, 32], "the others to take over", timeout=30)
        # Crossings the victim cannot see: its memory still says the accounts are above 900.
        set_followers(fake, crossed, 500)
        wait_until(
            lambda: set(receiver.events("dropped_below")) >= set(crossed),
            "the new holders' alerts",
            timeout=30,
        )
        victim.send_signal(signal.SIGCONT)
        # It wakes with polls and a lease tick due; then it rejoins and takes shards back.
        wait_until(lambda: spread(pg_dsn) == [21, 21, 22], "the victim to rejoin", timeout=30)
        time.sleep(3)
    finally:
        try:
            outs = stop_all(procs)
        finally:
            receiver.stop()
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    refused = outs[0].count("state commit refused: lease lost")
    print(f"the paused replica's commits refused by the fence check: {refused}")
    # One alert per crossing: the paused replica's stale view raised none that was stored.
    assert receiver.events("dropped_below") == Counter({n: 1 for n in crossed})
    # Its state for those accounts was not written over: the new holders' crossing stands.
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT account, followers FROM accounts WHERE account = ANY(%s)", (crossed,)
        ).fetchall()
    assert dict(rows) == {n: 500 for n in crossed}


def test_postgresql_restarting_under_load_loses_and_doubles_nothing(
    tmp_path: Path, fake: FakeX, influx_db: tuple[str, str]
) -> None:
    server = TempPostgres().start()
    dsn = server.dsn
    receiver, names, procs = alerting_replicas(tmp_path, fake, influx_db, dsn)
    try:
        settle(dsn, fake, names, [21, 21, 22])
        server.stop()
        down = SystemClock().now()
        crossed = names[:10]
        set_followers(fake, crossed, 500)  # crossings while the rule work is held in memory
        time.sleep(5)  # past the 3 s TTL: nobody may take a lease, everyone keeps polling
        up = SystemClock().now()
        server.restart()
        wait_until(
            lambda: set(receiver.events("dropped_below")) >= set(crossed),
            "the held alerts",
            timeout=20,
        )
        time.sleep(3)
        during = polls_between(fake, down, up)
        final = spread(dsn)
    finally:
        try:
            outs = stop_all(procs)
        finally:
            receiver.stop()
            server.close()
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    # Polling went on through the outage, once a second, by one replica per account.
    assert set(during) == set(names)
    assert min(during.values()) >= 4 and max(during.values()) <= 6, Counter(during.values())
    assert final == [21, 21, 22]
    # The held rule work ran when PostgreSQL returned: every crossing alerted exactly once.
    assert receiver.events("dropped_below") == Counter({n: 1 for n in crossed})


def test_three_replicas_on_one_token_under_an_enforced_limit_see_no_429(
    tmp_path: Path, httpserver: HTTPServer, influx_db: tuple[str, str], pg_dsn: str
) -> None:
    # 60 requests per 2-second window for the token, whoever sends them: less than the three
    # replicas would send (a request per shard per second), so the budget is what paces them.
    fake = FakeX(httpserver, SystemClock(), window=2)
    fake.limit = fake.remaining = 60
    fake.per_endpoint = True  # X budgets /2/users and /2/users/by apart
    config = tmp_path / "fw.toml"
    names = write_config(config, fake, influx_db, pg_dsn, ACCOUNTS)
    procs = [start_replica(config, tmp_path / f"data{i}") for i in range(3)]
    try:
        settle(pg_dsn, fake, names, [21, 21, 22])
        start, refused_before = SystemClock().now(), fake.refusals
        time.sleep(8)
        served = len([s for s in list(fake.seen) if s.time >= start])
        counts = polls_between(fake, start, SystemClock().now())
        refused = fake.refusals - refused_before
    finally:
        outs = stop_all(procs)
    # Polls still waiting for the budget when told to stop make the stop unclean (exit 1).
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode in (0, 1) and "leases released" in out, out[-3000:]
    print(f"{served} requests in 8 s, {refused} refused ({refused_before} while starting)")
    # Once the replicas know each other. (While the first one is still alone it spends the
    # whole window; a newcomer's first, blind request may then meet one 429: see the README.)
    assert refused == 0
    # The limit paced them: far fewer than the 64 a second asked for, more than one window's.
    assert 60 < served <= 5 * 60
    assert len(counts) >= 0.5 * len(names)


def test_poll_refuses_the_postgresql_backend_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "fw.toml"
    config.write_text(
        '[state]\nbackend = "postgresql"\ndsn = "host=127.0.0.1 port=1 password=S3cret"\n'
        '[platforms.x]\nbearer_token = "t"\n[[watch]]\nplatform = "x"\nhandle = "jack"\n'
    )
    done = run_cli("poll", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "followerwatch run" in done.stderr
    assert "S3cret" not in done.stdout + done.stderr
