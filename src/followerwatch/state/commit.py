"""The committer that groups polls' commits into one transaction (what a commit writes, and
how, is state/writes.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence

import structlog

from followerwatch.disk.sqlite import GroupCommitter
from followerwatch.models import Event
from followerwatch.state.behind import WriteBehind
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.values import Change, HeldZero, LastSeen
from followerwatch.state.writes import (
    Commit,
    insert_event,
    routed,
    store_counts,
    upsert_counts,
    write_commit,
    write_group,
    write_states,
)

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
    "write_states",
]


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
