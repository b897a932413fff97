"""The alert outbox: stored events delivered to each notifier in order, at least once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import structlog

from followerwatch.clock import Clock
from followerwatch.errors import DeliveryError
from followerwatch.models import Event
from followerwatch.notify.base import Notifier
from followerwatch.state import StateDB

log = structlog.get_logger("followerwatch.outbox")


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
    ) -> None:
        self.state = state
        self.notifiers = list(notifiers)
        self.clock = clock
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._kick = asyncio.Event()
        self._refreshed: dict[str, float] = {}
        # The poll jobs and the background loop both deliver; one at a time, or events go twice.
        self._lock = asyncio.Lock()

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after `attempts` failed tries: exponential, capped, with jitter."""
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, attempts - 1))
        return float(base * self._rng.uniform(0.5, 1.0))

    def kick(self) -> None:
        """Wake the background loop: something new may be due."""
        self._kick.set()

    async def deliver_due(self) -> int:
        """One attempt at every due delivery, in order per notifier; returns how many were sent."""
        async with self._lock:
            return await self._deliver_due()

    async def _deliver_due(self) -> int:
        sent = 0
        now = self.clock.now().timestamp()
        for notifier in self.notifiers:
            for delivery in self.state.pending(notifier.name):
                if delivery.next_attempt > now:
                    break  # keep each channel in order: later events wait for this one
                if not await self._attempt(notifier, delivery.event, delivery.attempts):
                    break
                sent += 1
            await self._refresh(notifier, now)
        return sent

    async def _attempt(self, notifier: Notifier, event: Event, attempts: int) -> bool:
        try:
            await notifier.send(event)
        except DeliveryError as exc:
            if exc.permanent:
                log.error(
                    "alert delivery failed permanently",
                    notifier=notifier.name,
                    event_id=event.id,
                    error=str(exc),
                )
                self.state.mark_delivery(event.id, notifier.name, "failed", str(exc))
                return True
            wait = self.backoff(attempts + 1)
            log.warning(
                "alert delivery failed; will retry",
                notifier=notifier.name,
                event_id=event.id,
                error=str(exc),
                attempt=attempts + 1,
                retry_in_s=round(wait, 1),
            )
            self.state.mark_delivery(
                event.id, notifier.name, "pending", str(exc), self.clock.now().timestamp() + wait
            )
            return False
        self.state.mark_delivery(event.id, notifier.name, "delivered", None)
        return True

    async def _refresh(self, notifier: Notifier, now: float) -> None:
        """Re-announce still-active conditions to notifiers that need it (Alertmanager)."""
        interval = getattr(notifier, "resend_interval", None)
        refresh = getattr(notifier, "refresh", None)
        if (
            not interval
            or refresh is None
            or now - self._refreshed.get(notifier.name, 0) < interval
        ):
            return
        self._refreshed[notifier.name] = now
        try:
            await refresh([event for event, _ in self.state.active()])
        except DeliveryError as exc:
            log.warning(
                "re-announcing active alerts failed", notifier=notifier.name, error=str(exc)
            )

    def next_due(self) -> float | None:
        """The earliest time (epoch seconds) a pending delivery is due, if any."""
        heads = [p[0].next_attempt for n in self.notifiers if (p := self.state.pending(n.name, 1))]
        return min(heads) if heads else None

    async def run(self, stop: asyncio.Event, idle: float = 5.0) -> None:
        """Deliver in the background until `stop` is set."""
        while not stop.is_set():
            try:
                await self.deliver_due()
            except Exception:  # the loop must outlive any one bad delivery
                log.exception("outbox loop error")
            due = self.next_due()
            wait = idle if due is None else max(0.05, min(idle, due - self.clock.now().timestamp()))
            self._kick.clear()
            waiters = [asyncio.ensure_future(self._kick.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

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
