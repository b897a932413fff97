"""The outbox's state on PostgreSQL: deliveries claimed per lane by one replica at a time,
claims of a dead replica taken over after their TTL, marks only by the holder; and the
outbox-state contract on both backends alike."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from backend_fixture import migrated, pg_state
from followerwatch.alerts.outbox import Outbox
from followerwatch.clock import ManualClock
from followerwatch.models import EventStatus
from followerwatch.state.deliveries import Mark
from followerwatch.state.pg.connect import connect
from followerwatch.state.pg.events import insert_events
from test_outbox import T0, Receiver, alternating, event, webhook

HOOK = ["hook"]


def route(ev: object) -> list[str]:
    return HOOK


def test_the_outbox_state_behaves_alike_on_both_backends(make_state: Callable[[], Any]) -> None:
    state = make_state()
    # One condition opened and closed within one call; b-0 carries a score and labels.
    scored = replace(event("b", 0), score=2.5, labels=(("team", "x"),))
    stored = [*alternating("a", 2), scored]
    state.events.add_events(stored, lambda e: ["hook", "mail"] if e.account == "a" else [])
    state.events.add_events(stored[:1], route)  # stored already: no second delivery
    assert [r.event_id for r in state.deliveries.pending_refs("hook")] == ["a-0", "a-1"]
    pending = state.deliveries.pending("mail", 10)
    assert [d.event for d in pending] == stored[:2]
    assert [(d.attempts, d.next_attempt, d.enriched) for d in pending] == [(0, 0.0, False)] * 2
    # b-0 goes nowhere, so it is never enrichment work.
    assert [e.id for e in state.deliveries.unenriched()] == ["a-0", "a-1"]
    state.deliveries.set_enrichment({"a-0": None, "a-1": None})
    assert state.deliveries.unenriched() == []
    retry = T0.timestamp() + 5
    state.deliveries.mark_deliveries(
        [Mark("a-0", "hook", "delivered"), Mark("a-1", "hook", "pending", "503", retry)]
    )
    state.deliveries.mark_deliveries([Mark("a-0", "mail", "failed", "400", 0.0)])
    assert state.deliveries.delivery_counts() == {"delivered": 1, "pending": 2, "failed": 1}
    [ref] = state.deliveries.pending_refs("hook")
    assert (ref.event_id, ref.attempts, ref.next_attempt, ref.enriched) == ("a-1", 1, retry, True)
    assert sorted(state.deliveries.pending_heads()) == [
        ("hook", "x", "a", retry),
        ("mail", "x", "a", 0.0),
    ]
    assert state.deliveries.events_by_id(["b-0", "zz"]) == {"b-0": stored[2]}
    # a-1 resolved a-0's condition; b-0 still fires.
    assert [(e.id, sent) for e, sent in state.events.active()] == [
        ("b-0", stored[2].time.timestamp())
    ]
    state.events.touch_active(stored[2], 123.0)
    assert [(e.id, sent) for e, sent in state.events.active()] == [("b-0", 123.0)]
    assert [e.id for e in state.events.unstored_events()] == ["a-0", "a-1", "b-0"]
    state.events.mark_stored(["a-0"])
    assert [e.id for e in state.events.unstored_events()] == ["a-1", "b-0"]
    assert [(e.id, st) for e, st in state.events.recent(2)] == [
        ("a-1", {"hook": "pending", "mail": "pending"}),
        ("b-0", {}),
    ]
    state.close()


def store(dsn: str, events: list[Any], shard: int = 7) -> bool:
    with connect(dsn) as conn, conn.transaction():
        return insert_events(conn, shard, [(ev, HOOK) for ev in events])


def test_insert_events_stores_each_event_once_with_its_shard(pg_dsn: str) -> None:
    dsn = migrated(pg_dsn)
    assert store(dsn, alternating("a", 2))
    assert not store(dsn, alternating("a", 2))  # a re-run commit: nothing new
    with connect(dsn) as conn:
        rows = conn.execute("SELECT id, shard FROM events ORDER BY seq").fetchall()
        assert rows == [("a-0", 7), ("a-1", 7)]
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone() == (2,)


def test_two_replicas_never_claim_the_same_delivery_and_keep_each_account_in_order(
    pg_dsn: str,
) -> None:
    dsn = migrated(pg_dsn)
    accounts = [f"u{i}" for i in range(60)]
    events = [e for account in accounts for e in alternating(account, 5)]
    store(dsn, events)
    replicas = [pg_state(dsn, f"r{i}") for i in range(2)]
    sent: list[tuple[str, str]] = []  # (replica, event id), in the order they were "sent"
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        deliveries = replicas[i].deliveries
        try:
            while refs := deliveries.pending_refs("hook", 37):
                with lock:  # sent before the outcome is recorded, as the outbox does
                    sent.extend((f"r{i}", r.event_id) for r in refs)
                deliveries.mark_deliveries([Mark(r.event_id, "hook", "delivered") for r in refs])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = [i for _, i in sent]
    assert sorted(ids) == sorted(e.id for e in events)  # each exactly once
    assert {r for r, _ in sent} == {"r0", "r1"}  # both did some of the work
    for account in accounts:
        assert [i for i in ids if i.startswith(f"{account}-")] == [
            f"{account}-{n}" for n in range(5)
        ]
    assert replicas[0].deliveries.delivery_counts() == {"delivered": len(events)}
    for replica in replicas:
        assert replica.deliveries.ignored_marks == 0
        replica.close()


def test_a_dead_replicas_claims_are_taken_after_the_ttl_and_its_late_marks_ignored(
    pg_dsn: str,
) -> None:
    dsn = migrated(pg_dsn)
    events = [*alternating("a", 3), *alternating("b", 2)]
    store(dsn, events)
    dead, alive = pg_state(dsn, "dead", claim_ttl=1.0), pg_state(dsn, "alive", claim_ttl=1.0)
    assert len(dead.deliveries.pending_refs("hook")) == len(events)
    # Its lanes are held: the other replica neither takes them nor waits for their heads.
    assert alive.deliveries.pending_refs("hook") == []
    assert alive.deliveries.pending_heads() == []
    time.sleep(1.2)
    taken = alive.deliveries.pending_refs("hook")
    assert [r.event_id for r in taken] == [e.id for e in events]
    assert dead.deliveries.pending_refs("hook") == []  # the live claim is the other's now
    # The dead replica wakes up and records what it had sent: the holder's record stands.
    dead.deliveries.mark_deliveries([Mark(e.id, "hook", "failed", "late") for e in events])
    assert dead.deliveries.ignored_marks == len(events)
    assert alive.deliveries.delivery_counts() == {"pending": len(events)}
    alive.deliveries.mark_deliveries([Mark(e.id, "hook", "delivered") for e in events])
    assert alive.deliveries.delivery_counts() == {"delivered": len(events)}
    assert alive.deliveries.ignored_marks == 0
    dead.close()
    alive.close()


def test_a_live_replicas_passes_keep_its_claims(pg_dsn: str) -> None:
    dsn = migrated(pg_dsn)
    store(dsn, alternating("a", 2))
    holder, other = pg_state(dsn, "holder", claim_ttl=1.0), pg_state(dsn, "other", claim_ttl=1.0)
    assert len(holder.deliveries.pending_refs("hook")) == 2
    for _ in range(3):  # 1.8 s in all, past the TTL: each pass extends the claims
        time.sleep(0.6)
        assert len(holder.deliveries.pending_refs("hook")) == 2
        assert other.deliveries.pending_refs("hook") == []
    holder.close()
    other.close()


def test_a_mark_by_a_replica_that_does_not_hold_the_delivery_is_ignored(pg_dsn: str) -> None:
    dsn = migrated(pg_dsn)
    store(dsn, [event("a", 0)])
    holder, other = pg_state(dsn, "holder"), pg_state(dsn, "other")
    other.deliveries.mark_deliveries([Mark("a-0", "hook", "failed", "never claimed", 0.0)])
    assert other.deliveries.ignored_marks == 1
    assert [r.event_id for r in holder.deliveries.pending_refs("hook")] == ["a-0"]
    other.deliveries.mark_deliveries([Mark("a-0", "hook", "failed", "held by another", 0.0)])
    assert holder.deliveries.delivery_counts() == {"pending": 1}
    retry = T0.timestamp() + 60
    holder.deliveries.mark_deliveries([Mark("a-0", "hook", "pending", "503", retry)])
    [ref] = holder.deliveries.pending_refs("hook")
    assert (ref.attempts, ref.next_attempt) == (1, retry)
    holder.close()
    other.close()


async def test_two_outboxes_deliver_every_event_once_in_order_per_account(pg_dsn: str) -> None:
    dsn = migrated(pg_dsn)
    accounts = [f"u{i}" for i in range(30)]
    events = [e for account in accounts for e in alternating(account, 4)]
    states = [pg_state(dsn, f"r{i}") for i in range(2)]

    async def handler(payload: dict[str, Any]) -> int:
        await asyncio.sleep(0.005)
        return 204

    async with (
        Receiver(handler) as receiver,
        httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client,
    ):
        outboxes = [
            Outbox(state, [webhook(client, receiver.url, concurrency=4)], ManualClock(T0))
            for state in states
        ]
        # Stored in two halves, each half's passes racing the other replica's.
        for half in (events[: len(events) // 2], events[len(events) // 2 :]):
            states[0].events.add_events(half, route)
            await asyncio.gather(*(o.deliver_due() for o in outboxes))
        assert all(await asyncio.gather(*(o.drain(timeout=10) for o in outboxes)))
    assert sorted(receiver.arrived) == sorted(e.id for e in events)  # each exactly once
    for account in accounts:
        mine = [i for i in receiver.arrived if i.startswith(f"{account}-")]
        assert mine == [f"{account}-{n}" for n in range(4)]
    assert states[1].deliveries.delivery_counts() == {"delivered": len(events)}
    for state in states:
        state.close()


def test_events_added_outside_a_commit_ring_the_doorbell(pg_dsn: str) -> None:
    state = pg_state(migrated(pg_dsn))
    state.events.add_events([event("a", 0)], lambda e: [])
    assert not state.doorbell.rung  # nothing to deliver
    state.events.add_events([event("a", 1, EventStatus.RESOLVED)], route)
    assert state.doorbell.rung
    state.close()
