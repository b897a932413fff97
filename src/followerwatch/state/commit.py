"""What a poll commits to the state database (counts, history, rule states, events), and the
committer that groups polls' commits into one transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import structlog

from followerwatch.disk.sqlite import GroupCommitter, insert_many
from followerwatch.models import Event, EventStatus
from followerwatch.state.behind import WriteBehind
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.rows import EVENT_COLS, N_EVENT_COLS, event_row, summary_value, ts
from followerwatch.state.values import SUMMARY_RULE, Change, HeldZero, LastSeen

log = structlog.get_logger("followerwatch.state")

# The values are re-exported: callers import them with the commit that writes them.
__all__ = [
    "Change",
    "Commit",
    "Committer",
    "HeldZero",
    "LastSeen",
    "insert_event",
    "routed",
    "store_counts",
    "upsert_counts",
    "write_commit",
    "write_group",
]


StateRow = tuple[str, str, str, str]  # platform, account, rule, state


class Commit(NamedTuple):
    """A poll's changes and its events' routes, queued for the committer thread."""

    changes: Sequence[Change]
    routes: list[tuple[Event, list[str]]]
    keep: Mapping[tuple[str, str], float] | None
    # Suspect zeros to keep, and accounts whose held zeros are done with (confirmed or not).
    held: Sequence[HeldZero] = ()
    released: Sequence[tuple[str, str]] = ()
    # Last counts written behind (state/behind.py), flushed in this transaction.
    counts: Sequence[tuple[tuple[str, str], LastSeen]] = ()
    # Soft rule states written behind with them, by account and rule (WriteBehind.states).
    states: Mapping[tuple[str, str], Mapping[str, str]] | None = None


def routed(
    changes: Sequence[Change], route: Callable[[Event], Iterable[str]]
) -> list[tuple[Event, list[str]]]:
    """Each event with its notifiers, worked out on the loop (routing reads live config)."""
    return [(ev, list(route(ev))) for ch in changes for ev in ch.events]


# An existing state is updated in place (REPLACE deletes and inserts the row: about a third more
# CPU per row, which counts when a summary rule rewrites every account's state each cycle).
UPSERT_STATE = " ON CONFLICT (platform, account, rule) DO UPDATE SET state=excluded.state"


def write_group(db: sqlite3.Connection, group: list[Commit]) -> list[bool]:
    """Each queued commit's statements, in the committer's one transaction."""
    return [write_commit(db, commit) for commit in group]


def write_commit(db: sqlite3.Connection, commit: Commit) -> bool:
    """A commit's statements (in a transaction); whether it stored an event to deliver."""
    changes, keep = commit.changes, commit.keep or {}
    if commit.counts:
        write_behind(db, commit.counts, commit.states or {})
    # One statement per table for the whole batch; per key the order is as before
    # (count, history, rule states, closed conditions, then that key's events).
    counted = [ch for ch in changes if ch.last is not None]
    summaries, others = split_states(
        (
            ((ch.platform, ch.account), rule, st)
            for ch in changes
            for rule, st in ch.rule_states.items()
        ),
        {(ch.platform, ch.account) for ch in counted},
    )
    store_counts(db, counted, keep, summaries)
    write_states(db, others)
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


def write_behind(
    db: sqlite3.Connection,
    counts: Sequence[tuple[tuple[str, str], LastSeen]],
    states: Mapping[tuple[str, str], Mapping[str, str]],
) -> None:
    """Counts written behind, each with its account's summary; other soft states as rows."""
    # Every account with waiting soft states has a waiting count (WriteBehind.put), except at
    # close, where states of the flush under way come too: those go the way of write_states.
    summaries, others = split_states(
        ((key, rule, text) for key, rules in states.items() for rule, text in rules.items()),
        {key for key, _ in counts},
    )
    upsert_counts(db, [(*key, seen) for key, seen in counts], summaries)
    write_states(db, others)


def split_states(
    states: Iterable[tuple[tuple[str, str], str, str]], counted: Container[tuple[str, str]]
) -> tuple[dict[tuple[str, str], bytes | str], list[StateRow]]:
    """Summaries that go in their account's row with its count, and the other state rows."""
    summaries: dict[tuple[str, str], bytes | str] = {}
    others: list[StateRow] = []
    for key, rule, text in states:
        if rule == SUMMARY_RULE and key in counted:
            summaries[key] = summary_value(text)
        else:
            others.append((*key, rule, text))
    return summaries, others


def write_states(db: sqlite3.Connection, rows: Sequence[StateRow]) -> None:
    """Upsert rule-state rows; a summary without a count to ride with goes in both places."""
    insert_many(db, "INSERT INTO rule_state", rows, UPSERT_STATE)
    # Rare (a baseline seeded from InfluxDB, a state set by hand): the account's row, if it has
    # one, must not keep an older summary that reads would prefer.
    db.executemany(
        "UPDATE accounts SET summary=? WHERE platform=? AND account=?",
        [(summary_value(row[3]), row[0], row[1]) for row in rows if row[2] == SUMMARY_RULE],
    )


def store_counts(
    db: sqlite3.Connection,
    changes: Sequence[Change],
    keep: Mapping[tuple[str, str], float],
    summaries: Mapping[tuple[str, str], bytes | str] | None = None,
) -> None:
    """Upsert the last counts (and summaries); keep history rows for accounts that need them."""
    upsert_counts(db, [(ch.platform, ch.account, ch.last) for ch in changes if ch.last], summaries)
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


def upsert_counts(
    db: sqlite3.Connection,
    counts: Sequence[tuple[str, str, LastSeen]],
    summaries: Mapping[tuple[str, str], bytes | str] | None = None,
) -> None:
    """Upsert accounts' last counts and summaries; what a reading lacks keeps the stored one."""
    times: dict[datetime, str] = {}  # a batch's readings share a handful of poll times
    summary = (summaries or {}).get
    rows = []
    for platform, account, last in counts:
        when = times.get(last.time)
        if when is None:
            when = times[last.time] = ts(last.time)
        rows.append(
            (
                platform,
                account,
                last.followers,
                when,
                last.platform_id,
                last.handle,
                summary((platform, account)),
            )
        )
    insert_many(
        db,
        "INSERT INTO accounts (platform, account, followers, time, platform_id, handle, summary)",
        rows,
        " ON CONFLICT (platform, account) DO"
        " UPDATE SET followers=excluded.followers, time=excluded.time,"
        " platform_id=COALESCE(excluded.platform_id, platform_id),"
        " handle=COALESCE(excluded.handle, handle),"
        " summary=COALESCE(excluded.summary, summary)",
    )


def insert_event(db: sqlite3.Connection, ev: Event, notifiers: Iterable[str]) -> bool:
    """Store an event and queue its deliveries; whether it is new and has any to make."""
    cur = db.execute(
        f"INSERT OR IGNORE INTO events ({EVENT_COLS}) VALUES ({','.join('?' * N_EVENT_COLS)})",
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
    """Polls' commits, written in the committer thread's connection, many per transaction.

    A change with nothing to journal but its count is written behind (state/behind.py): kept
    in `behind`, which reads lay over SQLite's rows, and flushed in one transaction later.
    """

    def __init__(
        self, db: sqlite3.Connection, doorbell: Doorbell, behind: WriteBehind | None = None
    ) -> None:
        """Commit through `db` (its own connection); ring `doorbell` for events to deliver."""
        # Poll commits fsync in this thread, with its own connection, off the event loop.
        self._group: GroupCommitter[Commit, bool] = GroupCommitter(
            db, write_group, "state-committer"
        )
        self._doorbell = doorbell
        # Accounts whose commit is queued: a poll of them reads only once it has landed.
        self._in_flight: dict[tuple[str, str], asyncio.Future[bool]] = {}
        self.behind = WriteBehind() if behind is None else behind
        self._timer: asyncio.TimerHandle | None = None
        # The loop the timer and the flush under way answer on (a StateDB outlives `asyncio.run`s).
        self._loop: asyncio.AbstractEventLoop | None = None
        # After a flush failed (a full disk), every count is journaled with its poll, so the
        # poll sees the failure and holds its batch, until a commit goes through again.
        self._behind_ok = True

    @property
    def commits(self) -> int:
        """Transactions `commit_async` made (one per group of commits)."""
        return self._group.commits

    def close(self) -> None:
        """Write what is queued and kept behind, stop the thread, close its connection."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.behind.dirty:
            # After any flush under way (the queue is in order), before the thread stops.
            counts = self.behind.drain()
            states = dict(self.behind.states_flushing)  # a copy: see flush()
            self._group.post(Commit((), [], None, counts=counts, states=states))
        self._group.close()

    async def commit_async(
        self,
        changes: Sequence[Change],
        route: Callable[[Event], Iterable[str]],
        keep_history: Mapping[tuple[str, str], float] | None = None,
        *,
        held: Sequence[HeldZero] = (),
        released: Sequence[tuple[str, str]] = (),
    ) -> None:
        """A poll's changes: journaled with every other commit queued (one fsync), or behind."""
        self._adopt(asyncio.get_running_loop())
        changes = self._journaled(changes, keep_history or {}, held, released)
        if changes or held or released:
            await self._commit(changes, route, keep_history, held, released)
        if self.behind.dirty:
            self._flush_soon()

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """On a new event loop, forget the timer and flush the old one can no longer answer."""
        if loop is self._loop:
            return
        self._loop = loop
        self._timer = None
        if self.behind.flushing:
            # Queued before anything of this loop, so written first; waiting again costs only
            # writing the same counts once more.
            self.behind.landed(False)

    def _journaled(
        self,
        changes: Sequence[Change],
        keep: Mapping[tuple[str, str], float],
        held: Sequence[HeldZero],
        released: Sequence[tuple[str, str]],
    ) -> list[Change]:
        """The changes to commit now; a bare count is put behind instead."""
        behind = self.behind
        zeros = {(h.platform, h.account) for h in held}.union(released) if held or released else ()
        out = []
        for ch in changes:
            key = (ch.platform, ch.account)
            last = ch.last
            if not (ch.events or ch.closed) and (ch.soft or not ch.rule_states):
                if last is None and not ch.rule_states:
                    continue  # an account without a count whose rules changed nothing
                if (
                    last is not None
                    and self._behind_ok
                    and not ch.journal
                    and not keep.get(key)
                    and key not in zeros
                ):
                    behind.put(key, last, ch.rule_states)
                    continue
            if behind:
                # Journaled now, with the newest count: none of its older ones may land after.
                waiting = behind.pop(key)
                if last is None and waiting is not None:
                    ch = ch._replace(last=waiting)
                states = behind.pop_states(key)
                if states:
                    ch = ch._replace(rule_states={**states, **ch.rule_states})
            out.append(ch)
        return out

    async def _commit(
        self,
        changes: Sequence[Change],
        route: Callable[[Event], Iterable[str]],
        keep_history: Mapping[tuple[str, str], float] | None,
        held: Sequence[HeldZero],
        released: Sequence[tuple[str, str]],
    ) -> None:
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
        self._behind_ok = True
        if new:
            self._doorbell.ring()

    def _flush_soon(self) -> None:
        """Flush now if enough counts wait, else make sure a flush comes within its interval."""
        if self.behind.due():
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.behind.seconds, self._flush_due)

    def _flush_due(self) -> None:
        self._timer = None
        if self.behind.flushing:
            # The one under way calls again when it lands.
            return
        self.flush()

    def flush(self) -> asyncio.Future[bool] | None:
        """Start writing the counts kept behind, in one transaction; its future (None: none)."""
        self._adopt(asyncio.get_running_loop())
        behind = self.behind
        if behind.flushing or not behind.dirty:
            return None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        counts = behind.take()
        # A copy (the committer thread reads it): a journaled commit pops from the original.
        states = dict(behind.states_flushing)
        done = self._group.enqueue(Commit((), [], None, counts=counts, states=states))
        done.add_done_callback(self._flushed)
        return done

    def _flushed(self, done: asyncio.Future[bool]) -> None:
        error = None if done.cancelled() else done.exception()
        self.behind.landed(error is None)
        if error is not None:
            self._behind_ok = False
            log.warning("last counts kept in memory: the state file refused them", error=str(error))
        if self.behind.dirty:
            self._flush_soon()

    async def settled(self, keys: Iterable[tuple[str, str]]) -> None:
        """Wait for the queued commits of these accounts, so what is read next includes them."""
        if not self._in_flight:
            return
        waits = {id(f): f for key in keys if (f := self._in_flight.get(key)) is not None}
        if waits:
            # Their outcome (an error included) is their own caller's; here only the wait counts.
            await asyncio.wait(waits.values())
