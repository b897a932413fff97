"""The alert outbox: stored events delivered to each notifier at least once, in order per account.

Each notifier's pending deliveries form one lane per (platform, account). A lane goes strictly in
order (a resolution never overtakes its firing; a lane whose head waits for a retry waits whole),
while different lanes go out concurrently, up to the notifier's `concurrency`, and notifiers run
side by side. A pass claims the lanes it works on in memory until their outcomes are written, so
the poll path and the background loop never send the same delivery twice. Outcomes are written in
batches: one transaction for everything that finished in the same turn of the event loop.

Polls never wait for delivery: in `run` the background loop sends, and a one-shot poll makes one
pass within its own deadline. Every attempt has a deadline of its own (`attempt_timeout`), so a
receiver that accepts and never answers costs one retry, and an unfinished attempt stays pending.

Before an event's first attempt the pass asks the enricher, once and for all of its new events
together, for a projection; whatever the enricher says (or nothing, if it fails or is slow) is
stored with the event, so every notifier and every retry carries the same text.

The outbox runs the passes; which lanes a pass holds is lanes.py's, sending them is sending.py's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import structlog

from followerwatch.alerts.enrich import Enricher
from followerwatch.alerts.lanes import PASS_LIMIT, Lane, Lanes
from followerwatch.alerts.sending import Sender
from followerwatch.clock import Clock
from followerwatch.errors import DeliveryError
from followerwatch.models import Projection
from followerwatch.notify.base import Notifier, RefreshingNotifier
from followerwatch.state.base import StateBackend
from followerwatch.state.deliveries import Delivery

log = structlog.get_logger("followerwatch.outbox")

# Seconds between tries to record outcomes the disk refused.
UNRECORDED_RETRY = 1.0


class Outbox:
    """Sends pending deliveries; transient failures back off exponentially with jitter."""

    def __init__(
        self,
        state: StateBackend,
        notifiers: Sequence[Notifier],
        clock: Clock,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 600.0,
        rng: random.Random | None = None,
        enricher: Enricher | None = None,
        enrich_timeout: float = 2.0,
        attempt_timeout: float = 30.0,
    ) -> None:
        self.deliveries = state.deliveries
        self.events = state.events
        self.notifiers = list(notifiers)
        self.clock = clock
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.enricher = enricher
        # A last resort: the enricher bounds its own reads; this bounds a misbehaving one.
        self.enrich_timeout = enrich_timeout
        self._rng = rng or random.Random()
        # New events ring the state's doorbell the moment they are stored, so delivery starts
        # while their poll still writes to InfluxDB; the outbox waits on that same one.
        self._kick = state.doorbell
        self._refreshed: dict[str, float] = {}
        self._enriching: set[str] = set()
        self._lanes = Lanes(state.deliveries, self.kick)
        self._failing = False  # a pass failed and none has worked since (logged once)
        self._sender = Sender(self._lanes, clock, attempt_timeout, self.backoff)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after `attempts` failed tries: exponential, capped, with jitter."""
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, attempts - 1))
        return float(base * self._rng.uniform(0.5, 1.0))

    def kick(self) -> None:
        """Wake the background loop: something new may be due."""
        self._kick.ring()

    async def deliver_due(self, *, wait: bool = True) -> int:
        """One attempt at every due delivery, in order per account; returns how many were sent.

        Lanes another pass holds are waited for and then taken up (so when a poll's call
        returns, its events have been tried); with `wait=False` they are left to that pass.
        """
        if self._lanes.unrecorded:
            self._lanes.flush()  # outcomes the disk refused before: recorded first, if it can
        await self._enrich()
        now = self.clock.now().timestamp()
        sent = await asyncio.gather(*(self._deliver(n, now, wait) for n in self.notifiers))
        for notifier in self.notifiers:
            await self._refresh(notifier, now)
        return sum(sent)

    async def deliver_within(self, timeout: float) -> bool:
        """deliver_due, abandoned after `timeout` s; True if it ended (the rest stays pending)."""
        try:
            async with asyncio.timeout(timeout):
                await self.deliver_due()
        except TimeoutError:
            # Unfinished attempts are not marked: their deliveries stay due for the next run.
            log.warning(
                "alert delivery cut short; what is pending is retried by the next run",
                timeout_s=timeout,
                pending=self.deliveries.delivery_counts().get("pending", 0),
            )
            return False
        return True

    async def _enrich(self) -> None:
        """Projections for every event not yet enriched, in one call; stored once, even if none."""
        todo = [e for e in self.deliveries.unenriched(PASS_LIMIT) if e.id not in self._enriching]
        if not todo:
            return
        ids = {e.id for e in todo}
        self._enriching |= ids
        try:
            found: dict[str, Projection] = {}
            if self.enricher is not None:
                try:
                    got = await asyncio.wait_for(self.enricher.enrich(todo), self.enrich_timeout)
                    found = dict(got)
                except Exception as exc:  # a projection is a nicety: never hold up an alert
                    log.warning("alert projections skipped", error=repr(exc))
            self.deliveries.set_enrichment({e.id: found.get(e.id) for e in todo})
        finally:
            self._enriching -= ids

    async def _deliver(self, notifier: Notifier, now: float, wait: bool) -> int:
        sent = 0
        while True:
            held: set[Lane] = set()
            sent += await self._run(notifier, self._lanes.claim(notifier, now, held))
            if not wait or not held:
                return sent
            await self._lanes.wait_for(held)

    async def _run(self, notifier: Notifier, lanes: dict[Lane, list[Delivery]]) -> int:
        if not lanes:
            return 0
        try:
            return await self._sender.send(notifier, lanes)
        finally:
            self._lanes.finish(lanes)  # everything this pass did is on disk before it returns

    async def _refresh(self, notifier: Notifier, now: float) -> None:
        """Re-announce still-active conditions to notifiers that need it (Alertmanager)."""
        if (
            not isinstance(notifier, RefreshingNotifier)
            or not notifier.resend_interval
            or now - self._refreshed.get(notifier.name, 0) < notifier.resend_interval
        ):
            return
        self._refreshed[notifier.name] = now
        try:
            await notifier.refresh([event for event, _ in self.events.active()])
        except DeliveryError as exc:
            log.warning(
                "re-announcing active alerts failed", notifier=notifier.name, error=str(exc)
            )

    def next_due(self) -> float | None:
        """The earliest time (epoch seconds) the head of a free lane is due, if any."""
        return self._lanes.next_due(self.notifiers)

    async def run(self, stop: asyncio.Event, idle: float = 5.0, grace: float = 2.0) -> None:
        """Deliver in the background until `stop` is set (a pass then gets `grace` s to end)."""
        while not stop.is_set():
            self._kick.clear()  # a kick during the pass below means: go again at once
            await self._background_pass(stop, grace)
            if self._kick.rung:
                continue
            try:
                due = self.next_due()
            except Exception as exc:  # the state database is unreachable: try again later
                self._failed(exc)
                due = None
            wait = idle if due is None else max(0.05, min(idle, due - self.clock.now().timestamp()))
            if self._lanes.unrecorded:
                wait = min(wait, UNRECORDED_RETRY)  # the next pass tries to record them again
            waiters = [asyncio.ensure_future(self._kick.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _background_pass(self, stop: asyncio.Event, grace: float) -> None:
        """One pass; on `stop`, what is still in flight after `grace` is left pending."""
        work = asyncio.ensure_future(self.deliver_due(wait=False))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([work, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                # A receiver that never answers must not hold up a shutdown either: unmarked
                # attempts stay pending and the next run sends them (at least once).
                await asyncio.wait([work], timeout=grace)
            if not work.done():
                log.warning("stopping: alert deliveries in flight are left for the next run")
                work.cancel()
                await asyncio.wait([work])
        finally:
            stopping.cancel()
            work.cancel()  # only matters when this task itself is cancelled
        if not work.cancelled() and (exc := work.exception()) is not None:
            # The loop must outlive any one bad delivery.
            self._failed(exc)
        elif not work.cancelled() and self._failing:
            self._failing = False
            log.info("outbox loop works again")

    def _failed(self, exc: BaseException) -> None:
        """Log a failing pass once until a pass works again (a state outage fails them all)."""
        if not self._failing:
            self._failing = True
            log.error("outbox loop error", exc_info=exc)

    async def drain(self, timeout: float) -> bool:
        """Deliver until nothing is pending or `timeout` passes (on the clock); True if drained."""
        deadline = self.clock.now().timestamp() + timeout
        while True:
            await self.deliver_due()
            due = self.next_due()
            if due is None:
                return True
            now = self.clock.now().timestamp()
            if due > deadline:
                return False
            # A millisecond past due: clocks keep microseconds, the outbox keeps floats.
            await self.clock.sleep(max(0.0, due - now) + 0.001)
