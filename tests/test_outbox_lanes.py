"""alerts/lanes.py: a claimed lane is held until its outcomes are written, then let go."""

from __future__ import annotations

import asyncio
from pathlib import Path

from followerwatch.alerts.lanes import Lane, Lanes
from followerwatch.models import Event
from followerwatch.state.db import StateDB
from followerwatch.state.deliveries import Mark
from test_outbox import T0, event


class Hook:
    """A notifier of default width (one lane per account); these tests never send."""

    name = "hook"

    async def send(self, event: Event) -> None:
        raise AssertionError("lanes never send")


async def test_a_claimed_lane_is_held_until_its_outcomes_are_written(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    events = [event("ann", 0), event("ann", 1), event("bob", 0)]
    state.events.add_events(events, lambda e: ["hook"])
    state.deliveries.set_enrichment({e.id: None for e in events})
    kicks: list[int] = []
    lanes = Lanes(state.deliveries, lambda: kicks.append(1))
    hook, now = Hook(), T0.timestamp() + 3600

    first = lanes.claim(hook, now, set())
    assert {lane: [d.event.id for d in ds] for lane, ds in first.items()} == {
        ("hook", "x", "ann"): ["ann-0", "ann-1"],
        ("hook", "x", "bob"): ["bob-0"],
    }
    held: set[Lane] = set()
    assert lanes.claim(hook, now, held) == {}  # another pass gets nothing twice
    assert held == set(first)
    assert lanes.next_due([hook]) is None  # every head is in a lane a pass holds

    waiter = asyncio.create_task(lanes.wait_for(set(held)))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    for deliveries in first.values():
        for d in deliveries:
            lanes.mark(Mark(d.event.id, "hook", "delivered"))
    lanes.finish(first)
    await asyncio.wait_for(waiter, 1.0)

    assert kicks == [1]  # lanes another pass skipped are free: it is woken to look again
    assert state.deliveries.delivery_counts() == {"delivered": 3}
    assert lanes.claim(hook, now, set()) == {}
    state.close()
