"""Sending one notifier's claimed lanes: in parallel, in batches, each outcome or retry marked."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import structlog

from followerwatch.alerts.lanes import Lane, Lanes, width
from followerwatch.clock import Clock
from followerwatch.errors import DeliveryError
from followerwatch.notify.base import BatchNotifier, Notifier
from followerwatch.state.deliveries import Delivery, Mark

log = structlog.get_logger("followerwatch.outbox")

# Events per request for notifiers that take a list (`send_many`, e.g. Alertmanager).
BATCH_MAX = 200


class Sender:
    """Sends what a pass claimed, in order per lane; a transient failure schedules a retry."""

    def __init__(
        self,
        lanes: Lanes,
        clock: Clock,
        attempt_timeout: float,
        backoff: Callable[[int], float],
    ) -> None:
        self.lanes = lanes
        self.clock = clock
        # Whatever a notifier's own timeouts say (a receiver may trickle its answer byte by byte),
        # an attempt that takes longer is abandoned and retried like any transient failure.
        self.attempt_timeout = attempt_timeout
        self.backoff = backoff  # seconds to wait after n failed tries

    async def send(self, notifier: Notifier, lanes: dict[Lane, list[Delivery]]) -> int:
        """Send the claimed lanes through `notifier`; returns how many were delivered."""
        if isinstance(notifier, BatchNotifier):
            return await self._batched(notifier, lanes)
        return await self._lanes(notifier, lanes)

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
                    self.lanes.done(lane)

        await asyncio.gather(*(worker() for _ in range(min(width(notifier), len(queue)))))
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
        self.lanes.mark(Mark(event.id, notifier.name, "delivered"))
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
            self.lanes.mark(Mark(event.id, notifier.name, "failed", str(exc)))
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
        self.lanes.mark(Mark(event.id, notifier.name, "pending", str(exc), retry_at))
        return ""

    async def _batched(self, notifier: BatchNotifier, lanes: dict[Lane, list[Delivery]]) -> int:
        """Rounds of one request per BATCH_MAX lane heads; a lane's next event waits a round."""
        queues = {lane: deque(ds) for lane, ds in lanes.items()}
        gate = asyncio.Semaphore(width(notifier))
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
                        self.lanes.done(lane)
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
            self.lanes.mark(Mark(delivery.event.id, notifier.name, "delivered"))
        return ["delivered"] * len(chunk)

    def _overdue(self, notifier: Notifier) -> DeliveryError:
        return DeliveryError(f"{notifier.name}: no answer within {self.attempt_timeout:g} s")
