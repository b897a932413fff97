"""The outbox's lanes: which ones passes hold, and the outcomes written before they are let go."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

import structlog

from followerwatch.models import Event
from followerwatch.notify.base import ConcurrentNotifier, Notifier
from followerwatch.state.base import DeliveryStore
from followerwatch.state.deliveries import (
    SERVICE_PLATFORM,
    Delivery,
    DeliveryRef,
    Mark,
)

log = structlog.get_logger("followerwatch.outbox")

DEFAULT_CONCURRENCY = 16
# Deliveries read per notifier per pass; the rest wait for the next pass.
PASS_LIMIT = 5000

Lane = tuple[str, str, str]  # (notifier, platform, account)


def lane_key(event: Event | DeliveryRef) -> tuple[str, str]:
    """The order key of an event: its account, or one shared key for the service's own events."""
    # Operational and campaign events (started, ended, its reports) keep one order among them.
    return (event.platform, "" if event.platform == SERVICE_PLATFORM else event.account)


def width(notifier: Notifier) -> int:
    """How many lanes (or requests) of one notifier may be in flight at once."""
    if isinstance(notifier, ConcurrentNotifier):
        return max(1, notifier.concurrency)
    return DEFAULT_CONCURRENCY


class Lanes:
    """Lanes claimed by passes, each held until its outcomes are written (batched with others')."""

    def __init__(self, deliveries: DeliveryStore, kick: Callable[[], None]) -> None:
        self.deliveries = deliveries
        self._kick = kick  # rung when a lane another pass skipped is let go
        self._busy: set[Lane] = set()  # lanes a pass is working on, until their marks are written
        self._marks: list[Mark] = []
        self._finished: list[Lane] = []
        self._flush_soon = False
        self._wanted: set[Lane] = set()  # busy lanes a pass had to skip
        # Lanes whose outcomes the disk refused: kept out of passes (their deliveries would be
        # sent again at once) until a later flush records those outcomes.
        self._unrecorded: set[Lane] = set()
        self._freed = asyncio.Event()  # set (and replaced) whenever lanes are released

    @property
    def unrecorded(self) -> bool:
        """True while outcomes the disk refused wait to be recorded."""
        return bool(self._unrecorded)

    def claim(self, notifier: Notifier, now: float, held: set[Lane]) -> dict[Lane, list[Delivery]]:
        """The due run at the head of every free lane, claimed; lanes others hold go in `held`."""
        refs: dict[Lane, list[DeliveryRef]] = {}
        stopped: set[Lane] = set()
        single = width(notifier) == 1  # one lane for everything: the stored order, strictly
        for ref in self.deliveries.pending_refs(notifier.name, PASS_LIMIT):
            lane = (notifier.name, "", "") if single else (notifier.name, *lane_key(ref))
            if lane in stopped:
                continue
            if lane in self._unrecorded:
                stopped.add(lane)  # sent already: its outcome waits for the disk
            elif lane in self._busy:
                self._wanted.add(lane)
                held.add(lane)
                stopped.add(lane)
            elif not ref.enriched or ref.next_attempt > now:
                stopped.add(lane)  # later events of this account wait behind it
            else:
                refs.setdefault(lane, []).append(ref)
        self._busy.update(refs)
        events = self.deliveries.events_by_id([r.event_id for rs in refs.values() for r in rs])
        return {
            lane: [Delivery(events[r.event_id], r.attempts, r.next_attempt) for r in rs]
            for lane, rs in refs.items()
        }

    async def wait_for(self, held: set[Lane]) -> None:
        """Return once no lane of `held` is claimed any more."""
        held &= self._busy
        while held:  # each wake-up means some pass released lanes
            await self._freed.wait()
            held &= self._busy

    def mark(self, mark: Mark) -> None:
        """Buffer one outcome; it is written with the next flush."""
        self._marks.append(mark)

    def done(self, lane: Lane) -> None:
        """A lane is finished: release it once its marks are written, batched with others'."""
        self._finished.append(lane)
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self.flush)

    def finish(self, lanes: Iterable[Lane]) -> None:
        """A pass ends: its lanes are finished and every buffered outcome is written now."""
        self._finished.extend(lanes)
        self.flush()

    def flush(self) -> None:
        """Write every buffered outcome in one transaction, then release the finished lanes."""
        self._flush_soon = False
        marks, self._marks = self._marks, []
        finished, self._finished = self._finished, []
        try:
            self.deliveries.mark_deliveries(marks)
        except Exception:  # unrecorded sends stay pending: at least once, never lost
            if not self._unrecorded:
                log.exception("recording alert deliveries failed", deliveries=len(marks))
            # Kept, with their lanes held back, until a later flush records them.
            self._marks = marks + self._marks
            self._unrecorded.update(finished)
        else:
            if self._unrecorded:
                log.warning("alert deliveries recorded again", deliveries=len(marks))
            finished += self._unrecorded
            self._unrecorded = set()
        finally:
            self._busy.difference_update(finished)
        if finished:
            self._freed.set()
            self._freed = asyncio.Event()
        if self._wanted.intersection(finished):
            # Another pass skipped these lanes while they were held: look at them again.
            self._wanted.difference_update(finished)
            self._kick()

    def next_due(self, notifiers: Sequence[Notifier]) -> float | None:
        """The earliest time (epoch seconds) the head of a free lane is due, if any."""
        lanes = {n.name for n in notifiers if width(n) > 1}
        heads = [
            due
            for notifier, platform, account, due in self.deliveries.pending_heads()
            if notifier in lanes
            and (notifier, platform, account) not in self._busy
            and (notifier, platform, account) not in self._unrecorded
        ]
        for n in notifiers:  # one lane: the head is the oldest pending delivery
            lane = (n.name, "", "")
            if n.name not in lanes and lane not in self._busy and lane not in self._unrecorded:
                heads += [d.next_attempt for d in self.deliveries.pending(n.name, 1)]
        return min(heads) if heads else None
