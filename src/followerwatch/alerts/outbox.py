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
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Sequence

import structlog

from followerwatch.alerts.enrich import Enricher
from followerwatch.clock import Clock
from followerwatch.errors import DeliveryError
from followerwatch.models import Event, Projection
from followerwatch.notify.base import (
    BatchNotifier,
    ConcurrentNotifier,
    Notifier,
    RefreshingNotifier,
)
from followerwatch.state.db import StateDB
from followerwatch.state.deliveries import SERVICE_PLATFORM, Delivery, DeliveryRef, Mark

log = structlog.get_logger("followerwatch.outbox")

DEFAULT_CONCURRENCY = 16
# Deliveries read per notifier per pass; the rest wait for the next pass.
PASS_LIMIT = 5000
# Events per request for notifiers that take a list (`send_many`, e.g. Alertmanager).
BATCH_MAX = 200

# Seconds between tries to record outcomes the disk refused.
UNRECORDED_RETRY = 1.0

Lane = tuple[str, str, str]  # (notifier, platform, account)


def lane_key(event: Event | DeliveryRef) -> tuple[str, str]:
    """The order key of an event: its account, or one shared key for the service's own events."""
    # Operational and campaign events (started, ended, its reports) keep one order among them.
    return (event.platform, "" if event.platform == SERVICE_PLATFORM else event.account)


class Outbox:
    """Sends pending deliveries; transient failures back off exponentially with jitter."""

    def __init__(
        self,
        state: StateDB,
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
        # Whatever a notifier's own timeouts say (a receiver may trickle its answer byte by byte),
        # an attempt that takes longer is abandoned and retried like any transient failure.
        self.attempt_timeout = attempt_timeout
        self._rng = rng or random.Random()
        # New events ring the state's doorbell the moment they are stored, so delivery starts
        # while their poll still writes to InfluxDB; the outbox waits on that same one.
        self._kick = state.doorbell
        self._refreshed: dict[str, float] = {}
        self._busy: set[Lane] = set()  # lanes a pass is working on, until their marks are written
        self._enriching: set[str] = set()
        self._marks: list[Mark] = []
        self._finished: list[Lane] = []
        self._flush_soon = False
        self._wanted: set[Lane] = set()  # busy lanes a pass had to skip
        # Lanes whose outcomes the disk refused: kept out of passes (their deliveries would be
        # sent again at once) until a later flush records those outcomes.
        self._unrecorded: set[Lane] = set()
        self._freed = asyncio.Event()  # set (and replaced) whenever lanes are released

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
        if self._unrecorded:
            self._flush()  # outcomes the disk refused before: recorded first, if it takes them
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

    def _claim(self, notifier: Notifier, now: float, held: set[Lane]) -> dict[Lane, list[Delivery]]:
        """The due run at the head of every free lane, claimed; lanes others hold go in `held`."""
        refs: dict[Lane, list[DeliveryRef]] = {}
        stopped: set[Lane] = set()
        single = _width(notifier) == 1  # one lane for everything: the stored order, strictly
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

    async def _deliver(self, notifier: Notifier, now: float, wait: bool) -> int:
        sent = 0
        while True:
            held: set[Lane] = set()
            sent += await self._run(notifier, self._claim(notifier, now, held))
            if not wait or not held:
                return sent
            held &= self._busy
            while held:  # each wake-up means some pass released lanes
                await self._freed.wait()
                held &= self._busy

    async def _run(self, notifier: Notifier, lanes: dict[Lane, list[Delivery]]) -> int:
        if not lanes:
            return 0
        try:
            if isinstance(notifier, BatchNotifier):
                return await self._batched(notifier, lanes)
            return await self._lanes(notifier, lanes)
        finally:
            self._finished.extend(lanes)
            self._flush()  # everything this pass did is on disk before it returns

    async def _lanes(self, notifier: Notifier, lanes: dict[Lane, list[Delivery]]) -> int:
        """Up to `concurrency` lanes at once, each one event after another."""
        queue = deque(lanes.items())
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while queue:
                lane, deliveries = queue.popleft()
                try:
                    for delivery in deliveries:
                        outcome = await self._attempt(notifier, delivery)
                        if not outcome:
                            break
                        sent += outcome == "delivered"
                finally:
                    self._done(lane)

        await asyncio.gather(*(worker() for _ in range(min(_width(notifier), len(queue)))))
        return sent

    async def _attempt(self, notifier: Notifier, delivery: Delivery) -> str:
        """One send: 'delivered', 'failed' (final), or '' when the lane must stop for a retry."""
        event = delivery.event
        try:
            async with asyncio.timeout(self.attempt_timeout):
                await notifier.send(event)
        except DeliveryError as exc:
            return self._failed(notifier, delivery, exc)
        except TimeoutError:
            return self._failed(notifier, delivery, self._overdue(notifier))
        except Exception as exc:  # a notifier bug must not kill the lane's bookkeeping
            log.exception("notifier raised", notifier=notifier.name, event_id=event.id)
            return self._failed(notifier, delivery, DeliveryError(repr(exc)))
        self._mark(Mark(event.id, notifier.name, "delivered"))
        return "delivered"

    def _failed(self, notifier: Notifier, delivery: Delivery, exc: DeliveryError) -> str:
        """Record a failed attempt: 'failed' if final, else '' with the retry scheduled."""
        event = delivery.event
        if exc.permanent:
            log.error(
                "alert delivery failed permanently",
                notifier=notifier.name,
                event_id=event.id,
                error=str(exc),
            )
            self._mark(Mark(event.id, notifier.name, "failed", str(exc)))
            return "failed"
        wait = self.backoff(delivery.attempts + 1)
        log.warning(
            "alert delivery failed; will retry",
            notifier=notifier.name,
            event_id=event.id,
            error=str(exc),
            attempt=delivery.attempts + 1,
            retry_in_s=round(wait, 1),
        )
        retry_at = self.clock.now().timestamp() + wait
        self._mark(Mark(event.id, notifier.name, "pending", str(exc), retry_at))
        return ""

    async def _batched(self, notifier: BatchNotifier, lanes: dict[Lane, list[Delivery]]) -> int:
        """Rounds of one request per BATCH_MAX lane heads; a lane's next event waits a round."""
        queues = {lane: deque(ds) for lane, ds in lanes.items()}
        gate = asyncio.Semaphore(_width(notifier))
        sent = 0
        while queues:
            heads = [(lane, q[0]) for lane, q in queues.items()]
            chunks = [heads[i : i + BATCH_MAX] for i in range(0, len(heads), BATCH_MAX)]
            results = await asyncio.gather(*(self._chunk(notifier, c, gate) for c in chunks))
            for chunk, outcomes in zip(chunks, results, strict=True):
                for (lane, _), outcome in zip(chunk, outcomes, strict=True):
                    queue = queues[lane]
                    queue.popleft()
                    sent += outcome == "delivered"
                    if not outcome or not queue:
                        del queues[lane]
                        self._done(lane)
        return sent

    async def _chunk(
        self, notifier: BatchNotifier, chunk: list[tuple[Lane, Delivery]], gate: asyncio.Semaphore
    ) -> list[str]:
        """The outcome (as `_attempt`'s) of each delivery of one request."""
        async with gate:
            try:
                async with asyncio.timeout(self.attempt_timeout):
                    await notifier.send_many([d.event for _, d in chunk])
            except TimeoutError:
                return [self._failed(notifier, d, self._overdue(notifier)) for _, d in chunk]
            except DeliveryError as exc:
                if not exc.permanent or len(chunk) == 1:
                    return [self._failed(notifier, d, exc) for _, d in chunk]
                # One bad alert must not sink the others: find it by sending one at a time.
                return [await self._attempt(notifier, d) for _, d in chunk]
        for _, delivery in chunk:
            self._mark(Mark(delivery.event.id, notifier.name, "delivered"))
        return ["delivered"] * len(chunk)

    def _overdue(self, notifier: Notifier) -> DeliveryError:
        return DeliveryError(f"{notifier.name}: no answer within {self.attempt_timeout:g} s")

    def _mark(self, mark: Mark) -> None:
        self._marks.append(mark)

    def _done(self, lane: Lane) -> None:
        """A lane is finished: release it once its marks are written, batched with others'."""
        self._finished.append(lane)
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
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
            self.kick()

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
        lanes = {n.name for n in self.notifiers if _width(n) > 1}
        heads = [
            due
            for notifier, platform, account, due in self.deliveries.pending_heads()
            if notifier in lanes
            and (notifier, platform, account) not in self._busy
            and (notifier, platform, account) not in self._unrecorded
        ]
        for n in self.notifiers:  # one lane: the head is the oldest pending delivery
            lane = (n.name, "", "")
            if n.name not in lanes and lane not in self._busy and lane not in self._unrecorded:
                heads += [d.next_attempt for d in self.deliveries.pending(n.name, 1)]
        return min(heads) if heads else None

    async def run(self, stop: asyncio.Event, idle: float = 5.0, grace: float = 2.0) -> None:
        """Deliver in the background until `stop` is set (a pass then gets `grace` s to end)."""
        while not stop.is_set():
            self._kick.clear()  # a kick during the pass below means: go again at once
            await self._background_pass(stop, grace)
            if self._kick.rung:
                continue
            due = self.next_due()
            wait = idle if due is None else max(0.05, min(idle, due - self.clock.now().timestamp()))
            if self._unrecorded:
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


def _width(notifier: Notifier) -> int:
    """How many lanes (or requests) of one notifier may be in flight at once."""
    if isinstance(notifier, ConcurrentNotifier):
        return max(1, notifier.concurrency)
    return DEFAULT_CONCURRENCY
