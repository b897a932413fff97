"""The state seam: one object per concern, a doorbell instead of a callback, and a writer that
needs only store/'s own protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from followerwatch.clock import ManualClock
from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.state.accounts import Accounts
from followerwatch.state.commit import Change, Committer, LastSeen
from followerwatch.state.db import StateDB
from followerwatch.state.deliveries import Deliveries
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.events import Events
from followerwatch.state.rules import RuleStates
from followerwatch.store.base import StoreState
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.lineprotocol import encode
from followerwatch.store.schema import event_point
from followerwatch.store.spool import Spool
from followerwatch.store.writer import Writer

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def event(account: str, n: int, status: EventStatus = EventStatus.FIRING) -> Event:
    return Event(
        id=f"{account}-{n}",
        time=T0 + timedelta(minutes=n),
        platform="x",
        account=account,
        rule="below:1000",
        kind=EventKind.DROPPED_BELOW,
        value=999,
        threshold=1000,
        message=f"{account} event {n}",
        severity=Severity.WARNING,
        status=status,
    )


class ListEvents:
    """Events kept in a list: a second, real implementation of what the writer needs."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.stored: set[str] = set()

    def unstored_events(self, limit: int = 1000) -> list[Event]:
        return [e for e in self.events if e.id not in self.stored][:limit]

    def mark_stored(self, event_ids: Iterable[str]) -> None:
        self.stored.update(event_ids)


class FixedCounts:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def delivery_counts(self) -> dict[str, int]:
        return dict(self.counts)


class ListState:
    """All a writer may use of a state database, without one."""

    def __init__(self, events: ListEvents, deliveries: FixedCounts) -> None:
        self.events = events
        self.deliveries = deliveries


async def test_the_writer_copies_events_from_any_state_that_meets_stores_protocol(
    tmp_path: Path,
) -> None:
    events = ListEvents([event("a", 0), event("b", 1)])
    state: StoreState = ListState(events, FixedCounts({"pending": 3, "delivered": 9}))
    spool = Spool(tmp_path / "spool.sqlite3")
    async with httpx.AsyncClient() as client:
        # Nobody listens there: every line stays in the spool, where the test reads it.
        store = InfluxV1Store(client, url="http://127.0.0.1:1", database="db")
        writer = Writer(store, state, spool, ManualClock(T0), health_every=60.0)
        await writer.write([])
        await writer.flush()
        lines = [line for _, line in spool.peek(100)]
    spool.close()
    assert events.stored == {"a-0", "b-1"}
    for e in events.events:
        assert lines.count(encode(event_point(e), store.precision)) == 1
    [health] = [line for line in lines if line.startswith("followerwatch_spool")]
    assert "alerts_pending=3i" in health


def test_the_state_database_assembles_concerns_and_inherits_nothing(tmp_path: Path) -> None:
    for cls in (StateDB, Accounts, RuleStates, Events, Deliveries, Committer, Doorbell):
        assert cls.__mro__ == (cls, object), cls
    doorbell = Doorbell()
    state = StateDB(tmp_path / "state.sqlite3", doorbell=doorbell)
    try:
        assert state.doorbell is doorbell
        assert isinstance(state.accounts, Accounts)
        assert isinstance(state.rules, RuleStates)
        assert isinstance(state.events, Events)
        assert isinstance(state.deliveries, Deliveries)
        assert isinstance(state.committer, Committer)
        assert not hasattr(state, "on_new_event")
    finally:
        state.close()


async def test_storing_an_event_to_deliver_rings_the_doorbell(tmp_path: Path) -> None:
    doorbell = Doorbell()
    state = StateDB(tmp_path / "state.sqlite3", doorbell=doorbell)
    try:
        state.events.add_events([event("a", 0)], lambda e: [])
        assert not doorbell.rung  # nobody to deliver to: nothing for the outbox
        waiting = asyncio.ensure_future(doorbell.wait())
        await asyncio.sleep(0)
        assert not waiting.done()
        state.events.add_events([event("a", 1)], lambda e: ["hook"])
        await asyncio.wait_for(waiting, 1.0)
        doorbell.clear()
        state.events.add_events([event("a", 1)], lambda e: ["hook"])
        assert not doorbell.rung  # stored already: its delivery was queued the first time
        change = Change("x", "b", LastSeen(999, T0, None, None), {}, (event("b", 0),))
        await state.committer.commit_async([change], lambda e: ["hook"])
        assert doorbell.rung  # a poll's commit rings it too
        assert state.accounts.last_seen("x", "b") == LastSeen(999, T0, None, None)
    finally:
        state.close()


def test_one_doorbell_serves_successive_event_loops() -> None:
    doorbell = Doorbell()

    async def ring_and_wait() -> None:
        waiting = asyncio.ensure_future(doorbell.wait())
        await asyncio.sleep(0)
        doorbell.ring()
        await asyncio.wait_for(waiting, 1.0)
        doorbell.clear()

    # A state database outlives `asyncio.run`s (one-shot commands, tests): so must its doorbell.
    asyncio.run(ring_and_wait())
    asyncio.run(ring_and_wait())
