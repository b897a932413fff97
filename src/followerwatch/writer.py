"""Points → InfluxDB, with a bounded in-memory backlog while it is unreachable."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import structlog

from followerwatch.errors import StoreError
from followerwatch.models import Point
from followerwatch.schema import event_point
from followerwatch.state import StateDB
from followerwatch.store.base import Store

log = structlog.get_logger("followerwatch.writer")


class Writer:
    """Writes points oldest first, then any events InfluxDB has not confirmed yet."""

    def __init__(self, store: Store, state: StateDB, max_backlog: int = 100_000) -> None:
        self.store = store
        self.state = state
        self._backlog: deque[Point] = deque()
        self._max_backlog = max_backlog
        self.dropped = 0

    @property
    def backlog(self) -> int:
        """Points waiting for InfluxDB."""
        return len(self._backlog)

    async def write(self, points: Sequence[Point]) -> None:
        """Queue `points` behind the backlog and try to write everything; never raises."""
        self._backlog.extend(points)
        overflow = len(self._backlog) - self._max_backlog
        if overflow > 0:
            for _ in range(overflow):
                self._backlog.popleft()
            self.dropped += overflow
            log.error(
                "backlog full, oldest points dropped", dropped=overflow, dropped_total=self.dropped
            )
        try:
            if self._backlog:
                batch = list(self._backlog)
                await self.store.write(batch)
                for _ in batch:
                    self._backlog.popleft()
            events = self.state.unstored_events()
            if events:
                await self.store.write([event_point(e) for e in events])
                self.state.mark_stored(e.id for e in events)
        except StoreError as exc:
            if not exc.retryable and exc.status in (400, 422):
                # A point the server rejects will never be accepted: do not wedge the queue on it.
                log.error(
                    "influxdb rejected points; dropping them",
                    error=str(exc),
                    points=len(self._backlog),
                )
                self.dropped += len(self._backlog)
                self._backlog.clear()
                return
            log.warning(
                "influxdb write failed; will retry next cycle",
                error=str(exc),
                backlog=len(self._backlog),
            )
