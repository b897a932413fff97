"""The spool's committer thread: concurrent adds share one fsynced transaction, none is lost."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from followerwatch.clock import ManualClock
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.models import Point
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.spool import Spool
from followerwatch.store.writer import Writer

T0 = datetime(2026, 7, 1, tzinfo=UTC)
DB = "group_commit"


def point(task: int, n: int) -> Point:
    return Point(
        "followers",
        (("platform", "x"), ("account", f"t{task}")),
        (("followers", n),),
        T0 + timedelta(minutes=n),
    )


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection holding the spool's write lock, so adds queue up behind it."""
    blocker = sqlite3.connect(str(path), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


async def test_concurrent_writes_share_transactions_and_land_exactly_once(
    tmp_path: Path, influxd: TempInfluxd
) -> None:
    influxd.query(f'CREATE DATABASE "{DB}"')
    spool = Spool(tmp_path / "spool.sqlite3")
    state = StateDB(tmp_path / "state.sqlite3")
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influxd.url, database=DB)
        writer = Writer(store, state, spool, ManualClock(T0), health_every=None)
        blocker = hold_write_lock(spool.path)
        tasks = [
            asyncio.create_task(writer.write([point(t, n) for n in range(3)])) for t in range(50)
        ]
        await asyncio.sleep(0)  # every task has queued its lines behind the held lock
        blocker.execute("COMMIT")
        blocker.close()
        await asyncio.gather(*tasks)
        await writer.flush()
        series = await store.query('SELECT count(followers) FROM "followers"')
    counts = spool.counts()
    state.close()
    spool.close()
    # At most the group that reached the lock first, then everyone queued behind it.
    assert spool.commits <= 2
    assert (counts.added, counts.written, counts.spooled, counts.dropped) == (150, 150, 0, 0)
    assert counts.balanced
    assert series[0]["values"][0][1] == 150


async def test_a_group_over_the_cap_drops_exactly_the_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", cap=25)
    blocker = hold_write_lock(spool.path)
    tasks = [
        asyncio.create_task(spool.add_async([f"m,t={t} v={n}i" for n in range(10)]))
        for t in range(4)
    ]
    await asyncio.sleep(0)
    blocker.execute("COMMIT")
    blocker.close()
    dropped = await asyncio.gather(*tasks)
    counts = spool.counts()
    kept = [line for _, line in spool.peek(100)]
    spool.close()
    assert sum(dropped) == 15 and counts.dropped == 15
    assert (counts.added, counts.spooled) == (40, 25) and counts.balanced
    # FIFO: what is left is the newest 25 in the order they were queued.
    everything = [f"m,t={t} v={n}i" for t in range(4) for n in range(10)]
    assert kept == everything[15:]


async def test_close_commits_the_adds_still_queued(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    blocker = hold_write_lock(path)
    tasks = [asyncio.create_task(spool.add_async([f"m,t={t} v=1i"])) for t in range(20)]
    await asyncio.sleep(0)
    blocker.execute("COMMIT")
    blocker.close()
    spool.close()  # before any waiter has run again: the queue is drained, not dropped
    assert await asyncio.gather(*tasks) == [0] * 20
    reopened = Spool(path)
    counts = reopened.counts()
    lines = sorted(line for _, line in reopened.peek(100))
    reopened.close()
    assert (counts.added, counts.spooled) == (20, 20) and counts.balanced
    assert lines == sorted(f"m,t={t} v=1i" for t in range(20))


async def test_a_failed_commit_reaches_the_waiting_write_and_adds_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    state = StateDB(tmp_path / "state.sqlite3")
    async with httpx.AsyncClient() as client:
        # Nothing listens on port 1: what is spooled stays there to be counted.
        store = InfluxV1Store(client, url="http://127.0.0.1:1", database=DB)
        writer = Writer(store, state, spool, ManualClock(T0), health_every=None)
        await writer.write([point(0, 0)])
        # A full disk, for real: SQLite may not grow the file by a page (SQLITE_FULL).
        pages = spool._committer._db.execute("PRAGMA page_count").fetchone()[0]
        spool._committer._db.execute(f"PRAGMA max_page_count={pages}")
        big = [point(1, n) for n in range(2000)]
        # Held in memory, not raised: a full disk loses nothing.
        await asyncio.gather(writer.write(big), writer.write(big))
        assert writer.disk_problem is not None and "full" in writer.disk_problem
        after_failure = spool.counts()
        spool._committer._db.execute("PRAGMA max_page_count=1073741823")
        await writer.write([point(2, 0)])  # behind the held lines
        await writer.flush()  # the committer outlives the failure; the held lines go in
        assert writer.disk_problem is None
    counts = spool.counts()
    state.close()
    spool.close()
    assert (after_failure.added, after_failure.spooled) == (1, 1) and after_failure.balanced
    assert (counts.added, counts.spooled) == (4002, 4002) and counts.balanced
