"""Last counts written behind: read through memory, flushed in bulk, journaled when they matter."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bare_pipeline import bare_pipeline
from followerwatch.clock import ManualClock
from followerwatch.models import Account, EventKind, FetchResult, Observation
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.base import Rule
from followerwatch.rules.health import Stale
from followerwatch.rules.lifecycle import Lifecycle
from followerwatch.rules.threshold import Threshold
from followerwatch.rules.window import WindowChange
from followerwatch.state.db import StateDB

T0 = datetime(2026, 8, 1, tzinfo=UTC)
ACCOUNTS = [Account("x", f"u{i}", f"u{i}") for i in range(20)]


def pipeline(state: StateDB, *, window: bool = False, lifecycle: bool = True) -> Pipeline:
    rules: list[Rule] = [Threshold("below", 100)]
    if lifecycle:
        rules.append(Lifecycle())
    if window:
        rules.append(WindowChange("drop", 3600.0, amount=500))
    return bare_pipeline(state, {a.key: rules for a in ACCOUNTS}, T0)


def batch(
    minute: int, counts: Sequence[int], accounts: Sequence[Account] = ACCOUNTS
) -> FetchResult:
    when = T0 + timedelta(minutes=minute)
    return FetchResult(
        tuple(
            Observation(a, when, n, platform_id=f"id-{a.name}", handle=a.handle)
            for a, n in zip(accounts, counts, strict=True)
        )
    )


async def steady_polls(pipe: Pipeline, minutes: int) -> None:
    """Every account polled once a minute from minute 0, at 500, 501, ...: nothing to journal
    after the first."""
    for minute in range(minutes):
        await pipe.process(batch(minute, [500 + minute] * 20))


def on_disk(path: Path) -> dict[str, tuple[int, str]]:
    """What another process reads of the accounts table: (followers, time) by account."""
    with contextlib.closing(sqlite3.connect(str(path))) as db:
        rows = db.execute("SELECT account, followers, time FROM accounts").fetchall()
    return {a: (n, t) for a, n, t in rows}


def rule_states_on_disk(path: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(str(path))) as db:
        rows = db.execute("SELECT account, state FROM rule_state WHERE rule='below:100'").fetchall()
    return dict(rows)


async def test_a_steady_count_waits_in_memory_and_reads_see_it(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    try:
        pipe = pipeline(state)
        await steady_polls(pipe, 1)
        # A first count is committed with its poll.
        assert {n for n, _ in on_disk(state.path).values()} == {500}
        await pipe.process(batch(1, [501 + i for i in range(20)]))
        assert {n for n, _ in on_disk(state.path).values()} == {500}  # not written yet
        assert len(state.behind.dirty) == 20
        # Every in-process read sees the newer counts, one by one and by batch.
        a = ACCOUNTS[3]
        seen = state.accounts.last_seen(*a.key)
        assert seen is not None and (seen.followers, seen.time) == (504, T0 + timedelta(minutes=1))
        assert seen.platform_id == "id-u3" and seen.handle == "u3"
        many = state.accounts.last_seen_many(a.key for a in ACCOUNTS)
        assert [many[a.key].followers for a in ACCOUNTS] == [501 + i for i in range(20)]
        assert state.accounts.platform_ids_of("x", ["u3", "nobody"]) == {"u3": "id-u3"}
        # The next poll evaluates against them: a change column from the newer count.
        rows = await pipe.process(batch(2, [510 + i for i in range(20)]))
        assert [r.change for r in rows] == [9] * 20
    finally:
        state.close()


async def test_reaching_the_bound_flushes_in_one_transaction(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    try:
        state.behind.rows = 15
        pipe = pipeline(state)
        await steady_polls(pipe, 1)
        commits = state.committer.commits
        await pipe.process(batch(1, [501] * 10, ACCOUNTS[:10]))
        assert state.committer.commits == commits  # 10 waiting, under the bound: no commit
        await pipe.process(batch(2, [501] * 10, ACCOUNTS[10:]))  # 10 more: 20 >= 15, flushed
        assert state.behind.flushing  # under way, and still read
        assert state.accounts.last_seen(*ACCOUNTS[0].key) is not None
        for _ in range(100):
            if not state.behind.flushing:
                break
            await asyncio.sleep(0.01)
        assert state.committer.commits == commits + 1 and state.behind.flushes == 1
        assert not state.behind.dirty and not state.behind.flushing
        assert {n for n, _ in on_disk(state.path).values()} == {501}
    finally:
        state.close()


async def test_waiting_counts_are_flushed_within_the_interval(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    try:
        state.behind.seconds = 0.05
        pipe = pipeline(state)
        await steady_polls(pipe, 2)
        for _ in range(200):
            if state.behind.flushes:
                break
            await asyncio.sleep(0.01)
        assert state.behind.flushes == 1 and not state.behind
        assert {n for n, _ in on_disk(state.path).values()} == {501}
    finally:
        state.close()


async def test_close_writes_what_waits(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = StateDB(path)
    pipe = pipeline(state)
    await steady_polls(pipe, 2)
    state.behind.rows = 20
    await pipe.process(batch(2, [502] * 20))  # a flush under way ...
    await pipe.process(batch(3, [503] * 20))  # ... and more waiting behind it
    state.close()
    assert {n for n, _ in on_disk(path).values()} == {503}
    again = StateDB(path)
    try:
        seen = again.accounts.last_seen(*ACCOUNTS[0].key)
        assert seen is not None and seen.time == T0 + timedelta(minutes=3)
    finally:
        again.close()


async def test_a_batch_with_nothing_to_journal_waits_for_no_commit(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    try:
        pipe = pipeline(state)
        await steady_polls(pipe, 1)
        # Another connection holds the write lock: any commit would wait for it.
        blocker = sqlite3.connect(str(state.path), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            await asyncio.wait_for(pipe.process(batch(1, [501] * 20)), 1.0)
            await asyncio.wait_for(state.committer.settled(a.key for a in ACCOUNTS), 1.0)
            # Nor do accounts that got no count and whose rules changed nothing.
            await asyncio.wait_for(pipe.process(FetchResult(()), polled=ACCOUNTS), 1.0)
            crossing = asyncio.create_task(pipe.process(batch(2, [50] + [502] * 19)))
            await asyncio.sleep(0.2)
            assert not crossing.done()  # a crossing is journaled: it waits for its fsync
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        rows = await asyncio.wait_for(crossing, 5.0)
        assert [len(r.events) for r in rows] == [1] + [0] * 19
    finally:
        state.close()


async def test_a_journaled_change_carries_its_count_and_takes_it_out_of_memory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    state = StateDB(path)
    try:
        pipe = pipeline(state)
        await steady_polls(pipe, 2)
        rows = await pipe.process(batch(2, [50] + [502] * 19))  # u0 crosses below 100
        assert len(rows[0].events) == 1
        disk = on_disk(path)
        assert disk["u0"][0] == 50  # with its rule state, in the same commit
        assert '"armed": false' in rule_states_on_disk(path)["u0"]
        assert disk["u1"][0] == 500  # the others still wait
        assert ACCOUNTS[0].key not in state.behind.dirty
        # An older count waiting behind can never land after it: the flush has none of u0.
        flush = state.committer.flush()
        assert flush is not None
        await flush
        disk = on_disk(path)
        assert disk["u0"][0] == 50 and disk["u1"][0] == 502
    finally:
        state.close()


async def test_a_journaled_change_without_a_count_carries_the_waiting_one(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    clock = ManualClock(T0)
    state = StateDB(path)
    try:
        a = ACCOUNTS[0]
        pipe = Pipeline(
            state=state,
            writer=None,
            outbox=None,
            clock=clock,
            route=lambda e: ["log"],
            rules={a.key: [Stale(600.0)]},
        )
        await pipe.process(batch(0, [500], [a]), polled=[a])
        await pipe.process(batch(1, [501], [a]), polled=[a])
        assert on_disk(path)["u0"][0] == 500
        clock.advance(1800)
        await pipe.process(FetchResult(()), polled=[a])  # no count: stale fires
        assert [e.kind for e in state.events.unstored_events()] == [EventKind.STALE]
        disk = on_disk(path)
        # Its state is journaled with the count it was measured against.
        assert disk["u0"] == (501, (T0 + timedelta(minutes=1)).isoformat())
        assert not state.behind
    finally:
        state.close()


async def test_first_counts_new_handles_and_history_keepers_are_journaled(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    state = StateDB(path)
    try:
        pipe = pipeline(state, window=True)  # every account keeps an hour of history
        await steady_polls(pipe, 2)
        assert {n for n, _ in on_disk(path).values()} == {501} and not state.behind
    finally:
        state.close()
    state = StateDB(path)
    try:
        # No lifecycle rule, so no rename alert: only the new handle asks for the journal.
        pipe = pipeline(state, lifecycle=False)
        b, c = ACCOUNTS[1], ACCOUNTS[2]
        renamed = Account("x", "u0-new", "u0")
        newcomer = Account("x", "u99", "u99")
        await pipe.process(batch(2, [502, 502, 502, 502], [renamed, b, c, newcomer]))
        disk = on_disk(path)
        assert disk["u0"][0] == 502 and disk["u99"][0] == 502  # journaled
        assert disk["u1"][0] == 501 and disk["u2"][0] == 501  # waiting
        with contextlib.closing(sqlite3.connect(str(path))) as db:
            handle = db.execute("SELECT handle FROM accounts WHERE account='u0'").fetchone()
        assert handle == ("u0-new",)
        assert sorted(state.behind.dirty) == [b.key, c.key]
    finally:
        state.close()


async def test_a_failed_flush_keeps_the_counts_and_journals_polls_until_the_disk_takes_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    state = StateDB(path)
    try:
        pipe = pipeline(state)
        await steady_polls(pipe, 2)
        # The committer's connection refuses writes (as on a full disk): the flush fails.
        state.committer._group._db.execute("PRAGMA query_only = ON")
        flush = state.committer.flush()
        assert flush is not None
        await asyncio.wait([flush])
        await asyncio.sleep(0)
        assert len(state.behind.dirty) == 20  # kept, still read
        seen = state.accounts.last_seen(*ACCOUNTS[0].key)
        assert seen is not None and seen.followers == 501
        # The next poll is journaled, so the pipeline sees the refusal (as it did before).
        with pytest.raises(sqlite3.OperationalError):
            await pipe.process(batch(2, [502] * 20))
        state.committer._group._db.execute("PRAGMA query_only = OFF")
        await pipe.process(batch(3, [503] * 20))
        assert {n for n, _ in on_disk(path).values()} == {503}
        # Once a commit goes through, steady counts wait behind again.
        await pipe.process(batch(4, [504] * 20))
        assert len(state.behind.dirty) == 20
    finally:
        state.close()


def test_a_state_database_outliving_its_event_loop_still_flushes(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = StateDB(path)
    try:
        pipe = pipeline(state)
        asyncio.run(pipe.process(batch(0, [500] * 20)))

        async def first() -> None:
            state.behind.rows = 20
            await pipe.process(batch(1, [501] * 20))  # a flush starts; the loop ends under it
            assert state.behind.flushing

        async def second() -> None:
            state.behind.rows, state.behind.seconds = 1000, 0.05
            await pipe.process(batch(2, [502] * 20))
            for _ in range(200):
                if not state.behind:
                    break
                await asyncio.sleep(0.01)

        # The write lock held elsewhere: the flush lands only after its loop is gone.
        blocker = sqlite3.connect(str(path), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            asyncio.run(first())
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        asyncio.run(second())
        assert not state.behind  # the timer and the flush of the new loop went through
        assert {n for n, _ in on_disk(path).values()} == {502}
    finally:
        state.close()
