"""Poll commits in the state's committer thread: grouped, atomic, and read back in order."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bare_pipeline import bare_pipeline
from followerwatch.models import Account, EventStatus, FetchResult, Observation
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.threshold import Threshold
from followerwatch.state.db import StateDB

T0 = datetime(2026, 8, 1, tzinfo=UTC)
ACCOUNTS = [Account("x", f"u{i}", f"u{i}") for i in range(30)]


def pipeline(state: StateDB) -> Pipeline:
    return bare_pipeline(state, {a.key: [Threshold("below", 100)] for a in ACCOUNTS}, T0)


def poll(account: Account, minute: int, followers: int) -> FetchResult:
    return FetchResult((Observation(account, T0 + timedelta(minutes=minute), followers),))


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection holding the write lock, so commits queue up behind it."""
    blocker = sqlite3.connect(str(path), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


async def test_concurrent_batches_share_transactions_and_all_land(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    pipe = pipeline(state)
    await pipe.process(FetchResult(tuple(Observation(a, T0, 500) for a in ACCOUNTS)))
    before = state.committer.commits
    blocker = hold_write_lock(state.path)
    tasks = [asyncio.create_task(pipe.process(poll(a, 1, 50 + i))) for i, a in enumerate(ACCOUNTS)]
    await asyncio.sleep(0)  # every batch has queued its commit behind the held lock
    blocker.execute("COMMIT")
    blocker.close()
    await asyncio.gather(*tasks)
    commits = state.committer.commits - before
    seen = state.accounts.last_seen_many(a.key for a in ACCOUNTS)
    events = state.events.unstored_events()
    pending = state.deliveries.delivery_counts().get("pending", 0)
    state.close()
    assert commits <= 2  # the group that reached the lock first, then everyone behind it
    assert {key: s.followers for key, s in seen.items()} == {
        a.key: 50 + i for i, a in enumerate(ACCOUNTS)
    }
    assert sorted(e.account for e in events) == sorted(a.name for a in ACCOUNTS)
    assert pending == 30


async def test_a_batch_reads_an_account_only_after_its_queued_commit(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    pipe = pipeline(state)
    alice = ACCOUNTS[0]
    await pipe.process(poll(alice, 0, 500))
    blocker = hold_write_lock(state.path)
    first = asyncio.create_task(pipe.process(poll(alice, 1, 50)))
    second = asyncio.create_task(pipe.process(poll(alice, 2, 40)))
    await asyncio.sleep(0)
    blocker.execute("COMMIT")
    blocker.close()
    rows = await asyncio.gather(first, second)
    events = state.events.unstored_events()
    state.close()
    # The second poll saw the first one's state (already below): one firing, not two.
    assert [len(r[0].events) for r in rows] == [1, 0]
    assert [(e.status, e.value) for e in events] == [(EventStatus.FIRING, 50)]


async def test_a_failed_commit_reaches_the_poll_and_stores_nothing(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    pipe = pipeline(state)
    db = state.committer._group._db  # the committer's connection: make its disk "full", for real
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    many = [*ACCOUNTS, *(Account("x", f"v{i}", f"v{i}") for i in range(3000))]
    big = FetchResult(tuple(Observation(a, T0, 50) for a in many))
    await pipe.process(big)  # held in memory, evaluated, for the retry
    assert pipe.waiting.problem is not None and "full" in pipe.waiting.problem
    assert state.accounts.last_seen_many(a.key for a in many) == {}
    assert state.events.unstored_events() == []
    db.execute("PRAGMA max_page_count=1073741823")
    assert await pipe.waiting.replay()  # the committer outlives the failure
    stored = len(state.accounts.last_seen_many(a.key for a in many))
    assert await pipe.waiting.close() == 0
    state.close()
    assert stored == len(many)
