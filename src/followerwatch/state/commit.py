"""What a poll commits to the state database (counts, history, rule states, events), and the
committer that groups polls' commits into one transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from followerwatch.disk.sqlite import GroupCommitter, insert_many
from followerwatch.models import Event, EventStatus
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.rows import EVENT_COLS, event_row, ts


# NamedTuples, not frozen dataclasses: as immutable, and several times cheaper to build, which
# counts at one or two per observation.
class LastSeen(NamedTuple):
    """The last stored count of an account."""

    followers: int
    time: datetime
    platform_id: str | None
    handle: str | None


class Change(NamedTuple):
    """Everything one account's poll changes, committed atomically."""

    platform: str
    account: str
    last: LastSeen | None
    rule_states: dict[str, str]
    events: tuple[Event, ...]
    closed: tuple[str, ...] = ()
    # Every (time, count) read in this batch, for the history window rules use.
    history: tuple[tuple[datetime, int], ...] = ()


class HeldZero(NamedTuple):
    """A reading of exactly 0 held as suspect (kept until confirmed or recovered)."""

    platform: str
    account: str
    time: datetime
    following: int | None
    posts: int | None
    platform_id: str | None
    handle: str | None
    resolution: int | None


class Commit(NamedTuple):
    """A poll's changes and its events' routes, queued for the committer thread."""

    changes: Sequence[Change]
    routes: list[tuple[Event, list[str]]]
    keep: dict[tuple[str, str], float] | None
    # Suspect zeros to keep, and accounts whose held zeros are done with (confirmed or not).
    held: Sequence[HeldZero] = ()
    released: Sequence[tuple[str, str]] = ()


def routed(
    changes: Sequence[Change], route: Callable[[Event], Iterable[str]]
) -> list[tuple[Event, list[str]]]:
    """Each event with its notifiers, worked out on the loop (routing reads live config)."""
    return [(ev, list(route(ev))) for ch in changes for ev in ch.events]


def write_group(db: sqlite3.Connection, group: list[Commit]) -> list[bool]:
    """Each queued commit's statements, in the committer's one transaction."""
    return [write_commit(db, commit) for commit in group]


def write_commit(db: sqlite3.Connection, commit: Commit) -> bool:
    """A commit's statements (in a transaction); whether it stored an event to deliver."""
    changes, keep = commit.changes, commit.keep or {}
    # One statement per table for the whole batch; per key the order is as before
    # (count, history, rule states, closed conditions, then that key's events).
    store_counts(db, [ch for ch in changes if ch.last is not None], keep)
    insert_many(
        db,
        "INSERT OR REPLACE INTO rule_state",
        [
            (ch.platform, ch.account, rule, st)
            for ch in changes
            for rule, st in ch.rule_states.items()
        ],
    )
    db.executemany(
        "DELETE FROM active WHERE platform=? AND account=? AND rule=?",
        [(ch.platform, ch.account, rule) for ch in changes for rule in ch.closed],
    )
    if commit.released:
        db.executemany("DELETE FROM suspect_zeros WHERE platform=? AND account=?", commit.released)
    if commit.held:
        insert_many(
            db,
            "INSERT OR REPLACE INTO suspect_zeros",
            [(*h[:2], ts(h.time), *h[3:]) for h in commit.held],
        )
    new = False
    for ev, notifiers in commit.routes:
        new |= insert_event(db, ev, notifiers)
    return new


def store_counts(
    db: sqlite3.Connection,
    changes: Sequence[Change],
    keep: dict[tuple[str, str], float],
) -> None:
    """Upsert the last counts; keep history rows for accounts whose rules need them."""
    times: dict[datetime, str] = {}  # a batch's readings share a handful of poll times
    rows = []
    for ch in changes:
        last = ch.last
        assert last is not None
        when = times.get(last.time)
        if when is None:
            when = times[last.time] = ts(last.time)
        rows.append((ch.platform, ch.account, last.followers, when, last.platform_id, last.handle))
    insert_many(
        db,
        "INSERT INTO accounts",
        rows,
        " ON CONFLICT (platform, account) DO"
        " UPDATE SET followers=excluded.followers, time=excluded.time,"
        " platform_id=COALESCE(excluded.platform_id, platform_id),"
        " handle=COALESCE(excluded.handle, handle)",
    )
    kept = [
        (ch, keep[(ch.platform, ch.account)])
        for ch in changes
        if keep.get((ch.platform, ch.account), 0.0) > 0
    ]
    if not kept:
        return
    insert_many(
        db,
        "INSERT OR REPLACE INTO history",
        [
            (ch.platform, ch.account, when.timestamp(), n)
            for ch, _ in kept
            for when, n in ch.history
        ],
    )
    db.executemany(
        "DELETE FROM history WHERE platform=? AND account=? AND time<?",
        [
            (ch.platform, ch.account, ch.last.time.timestamp() - seconds)
            for ch, seconds in kept
            if ch.last
        ],
    )


def insert_event(db: sqlite3.Connection, ev: Event, notifiers: Iterable[str]) -> bool:
    """Store an event and queue its deliveries; whether it is new and has any to make."""
    cur = db.execute(
        f"INSERT OR IGNORE INTO events ({EVENT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        event_row(ev),
    )
    if not cur.rowcount:
        return False  # already stored: its deliveries were queued the first time
    names = list(notifiers)
    if not names:
        # Nobody to deliver to, so nothing to enrich: keeps the outbox's look-up short.
        db.execute("UPDATE events SET enriched = 1 WHERE id = ?", (ev.id,))
    db.executemany(
        "INSERT OR IGNORE INTO deliveries (event_id, notifier) VALUES (?,?)",
        [(ev.id, n) for n in names],
    )
    if ev.status == EventStatus.FIRING:
        db.execute(
            "INSERT OR REPLACE INTO active VALUES (?,?,?,?,?)",
            (ev.platform, ev.account, ev.rule, ev.id, ev.time.timestamp()),
        )
    elif ev.status == EventStatus.RESOLVED:
        db.execute(
            "DELETE FROM active WHERE platform=? AND account=? AND rule=?",
            (ev.platform, ev.account, ev.rule),
        )
    return bool(names)


class Committer:
    """Polls' commits, written in the committer thread's connection, many per transaction."""

    def __init__(self, db: sqlite3.Connection, doorbell: Doorbell) -> None:
        """Commit through `db` (its own connection); ring `doorbell` for events to deliver."""
        # Poll commits fsync in this thread, with its own connection, off the event loop.
        self._group: GroupCommitter[Commit, bool] = GroupCommitter(
            db, write_group, "state-committer"
        )
        self._doorbell = doorbell
        # Accounts whose commit is queued: a poll of them reads only once it has landed.
        self._in_flight: dict[tuple[str, str], asyncio.Future[bool]] = {}

    @property
    def commits(self) -> int:
        """Transactions `commit_async` made (one per group of commits)."""
        return self._group.commits

    def close(self) -> None:
        """Commit what is queued, stop the thread and close its connection."""
        self._group.close()

    async def commit_async(
        self,
        changes: Sequence[Change],
        route: Callable[[Event], Iterable[str]],
        keep_history: dict[tuple[str, str], float] | None = None,
        *,
        held: Sequence[HeldZero] = (),
        released: Sequence[tuple[str, str]] = (),
    ) -> None:
        """A poll's changes, committed with every other commit queued (one fsync)."""
        done = self._group.enqueue(
            Commit(changes, routed(changes, route), keep_history, held, released)
        )
        keys = [(ch.platform, ch.account) for ch in changes]
        for key in keys:
            self._in_flight[key] = done
        try:
            new = await done
        finally:
            for key in keys:
                if self._in_flight.get(key) is done:
                    del self._in_flight[key]
        if new:
            self._doorbell.ring()

    async def settled(self, keys: Iterable[tuple[str, str]]) -> None:
        """Wait for the queued commits of these accounts, so what is read next includes them."""
        if not self._in_flight:
            return
        waits = {id(f): f for key in keys if (f := self._in_flight.get(key)) is not None}
        if waits:
            # Their outcome (an error included) is their own caller's; here only the wait counts.
            await asyncio.wait(waits.values())
