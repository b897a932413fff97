"""Rule state and last counts behave the same on both backends: SQLite's StateDB and PostgreSQL's
mirror and committer (state/pg/). Each test writes through `committer.commit_async`, reads back
with the reads a poll makes, then reads again after a reopen (SQLite: the file opened again;
PostgreSQL: another replica that took the shard's lease and loaded it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from followerwatch.models import Event
from followerwatch.state.db import StateDB
from followerwatch.state.pg.connect import connect, migrate
from followerwatch.state.pg.store import PgState
from followerwatch.state.values import SUMMARY_RULE, Change, HeldZero, LastSeen

T0 = datetime(2026, 9, 1, tzinfo=UTC)
KEY = ("x", "hot")
OTHER = ("x", "cold")
SHARD = 5


def no_route(_: Event) -> list[str]:
    return []


def seen(
    minute: int, count: int = 1000, pid: str | None = None, handle: str | None = None
) -> LastSeen:
    return LastSeen(count, T0 + timedelta(minutes=minute), pid, handle)


@dataclass
class Backend:
    """One backend's state, and how to open it again as a restarted or succeeding process."""

    kind: str
    where: Any
    state: Any = None
    replicas: int = field(default=0)

    def open(self) -> Any:
        if self.kind == "sqlite":
            self.state = StateDB(self.where)
            return self.state
        self.replicas += 1
        replica, fence = f"r{self.replicas}", self.replicas
        with connect(self.where) as conn:
            conn.execute(
                "INSERT INTO leases (shard, holder, fence, expires)"
                " VALUES (%s, %s, %s, now() + interval '60 s') ON CONFLICT (shard) DO UPDATE"
                " SET holder = excluded.holder, fence = excluded.fence, expires = excluded.expires",
                (SHARD, replica, fence),
            )
            conn.commit()
        pg = PgState(self.where, replica, shard_of=lambda _: SHARD, fence_of={SHARD: fence}.get)
        pg.load(SHARD)
        self.state = pg
        return pg

    def reopen(self) -> Any:
        """Close (writing everything) and open again; the PostgreSQL one checks all landed."""
        self.close()
        return self.open()

    def close(self) -> None:
        if self.state is None:
            return
        if self.kind == "postgresql":
            assert self.state.committer.flush(10)
            assert self.state.committer.fenced_drops == 0
        self.state.close()
        self.state = None


def live_then_reopened(backend: Backend) -> Iterator[Any]:
    """The state as written, then as another process (or replica) opens it."""
    yield backend.state
    yield backend.reopen()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        out = Backend("sqlite", tmp_path / "state.sqlite3")
    else:
        dsn = request.getfixturevalue("pg_dsn")
        with connect(dsn) as conn:
            migrate(conn)
        out = Backend("postgresql", dsn)
    out.open()
    yield out
    out.close()


async def test_last_counts_keep_a_known_handle_and_id(backend: Backend) -> None:
    state = backend.state
    first = Change(*KEY, seen(0, 1000, "id1", "@hot"), {}, (), journal=True)
    await state.committer.commit_async([first], no_route)
    # A bare count (SQLite writes it behind; reads see it all the same).
    await state.committer.commit_async([Change(*KEY, seen(1, 990), {}, ())], no_route)
    await state.committer.settled([KEY])
    for state in live_then_reopened(backend):
        assert state.accounts.last_seen(*KEY) == seen(1, 990, "id1", "@hot")
        assert state.accounts.last_seen_many([KEY, OTHER]) == {KEY: seen(1, 990, "id1", "@hot")}
        assert state.accounts.platform_ids_of("x", ["hot", "cold"]) == {"hot": "id1"}
        assert state.accounts.last_seen(*OTHER) is None


async def test_rule_states_and_summaries_read_the_same(backend: Backend) -> None:
    state = backend.state
    packed = "s1 \x00\xff"
    first = Change(*KEY, seen(0), {SUMMARY_RULE: packed, "below:5": "armed"}, (), journal=True)
    await state.committer.commit_async([first], no_route)
    await state.committer.commit_async(
        [Change(*KEY, seen(1), {SUMMARY_RULE: "s2"}, (), soft=True)], no_route
    )
    # A count without a summary keeps the stored one.
    await state.committer.commit_async([Change(*KEY, seen(2, 990), {}, (), journal=True)], no_route)
    # Seeded without a count: it waits in rule_state, read all the same.
    await state.committer.commit_async(
        [Change(*OTHER, None, {SUMMARY_RULE: "seeded"}, ())], no_route
    )
    await state.committer.settled([KEY, OTHER])
    want = {KEY: {SUMMARY_RULE: "s2", "below:5": "armed"}, OTHER: {SUMMARY_RULE: "seeded"}}
    for state in live_then_reopened(backend):
        assert state.rules.rule_states_many([KEY, OTHER, ("x", "none")]) == want
        summaries: dict[tuple[str, str], str] = {}
        assert state.accounts.last_seen_many([KEY, OTHER], summaries) == {KEY: seen(2, 990)}
        assert summaries == {KEY: "s2"}
        assert state.rules.rule_states_many([KEY], summaries) == {KEY: want[KEY]}
        assert state.rules.rule_states(*OTHER) == {SUMMARY_RULE: "seeded"}
    # Its first count's summary supersedes the seeded one; seeded again, the new one wins.
    await state.committer.commit_async(
        [Change(*OTHER, seen(3), {SUMMARY_RULE: "polled"}, (), journal=True)], no_route
    )
    assert state.rules.rule_states(*OTHER) == {SUMMARY_RULE: "polled"}
    await state.committer.commit_async(
        [Change(*OTHER, None, {SUMMARY_RULE: "again"}, ())], no_route
    )
    state.rules.set_rule_state(*KEY, "below:5", "fired")
    await state.committer.settled([KEY, OTHER])
    for state in live_then_reopened(backend):
        assert state.rules.rule_states(*OTHER) == {SUMMARY_RULE: "again"}
        assert state.rules.rule_states(*KEY) == {SUMMARY_RULE: "s2", "below:5": "fired"}


async def test_history_is_kept_for_the_window_of_accounts_that_keep_it(backend: Backend) -> None:
    state = backend.state
    keep = {KEY: 600.0}  # ten minutes
    points = tuple((T0 + timedelta(minutes=m), 1000 - m) for m in range(0, 20, 2))
    last = seen(18, 982)
    await state.committer.commit_async(
        [
            Change(*KEY, last, {}, (), history=points, journal=True),
            Change(*OTHER, seen(18), {}, (), history=points, journal=True),
        ],
        no_route,
        keep,
    )
    await state.committer.settled([KEY, OTHER])
    want = [(T0 + timedelta(minutes=m), 1000 - m) for m in range(8, 20, 2)]
    for state in live_then_reopened(backend):
        assert state.accounts.history(*KEY, T0) == want
        assert state.accounts.history(*OTHER, T0) == []
        since = T0 + timedelta(minutes=12)
        assert state.accounts.history_many([KEY, OTHER], since) == {
            KEY: [(when.timestamp(), n) for when, n in want if when >= since]
        }


async def test_held_zeros_are_kept_until_released(backend: Backend) -> None:
    state = backend.state
    zeros = [HeldZero(*KEY, T0 + timedelta(minutes=m), 5, 7, "id1", "@hot", 60) for m in (3, 1)]
    other = HeldZero(*OTHER, T0, None, None, None, None, None)
    await state.committer.commit_async([], no_route, held=[*zeros, other])
    await state.committer.settled([KEY, OTHER])
    for state in live_then_reopened(backend):
        assert state.accounts.held_zeros() == {KEY: sorted(zeros), OTHER: [other]}
    await state.committer.commit_async([], no_route, released=[KEY])
    await state.committer.settled([KEY])
    for state in live_then_reopened(backend):
        assert state.accounts.held_zeros() == {OTHER: [other]}
