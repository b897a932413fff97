"""The Store protocol (where points go), and what the writer needs of the state database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from followerwatch.models import Event, Point


class Store(Protocol):
    """A point sink with a reachability check."""

    precision: str

    async def write(self, points: Sequence[Point]) -> None: ...

    async def write_lines(self, lines: Sequence[str]) -> None: ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...


class QueryableStore(Store, Protocol):
    """A store that can also run InfluxQL (the v1 path)."""

    async def query(self, influxql: str, *, epoch: str | None = "s") -> list[dict[str, Any]]: ...


class EventsToStore(Protocol):
    """Stored events waiting for their copy in InfluxDB."""

    def unstored_events(self, limit: int = ...) -> list[Event]:
        """Events not yet confirmed in InfluxDB, oldest first."""
        ...

    def mark_stored(self, event_ids: Iterable[str]) -> None:
        """Record that these events are in InfluxDB."""
        ...


class DeliveryCounts(Protocol):
    """How many alert deliveries are in each status (the health point reports the pending)."""

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries by status."""
        ...


class StoreState(Protocol):
    """All the writer uses of the state database: its events and its delivery counts."""

    @property
    def events(self) -> EventsToStore:
        """The events, to copy into InfluxDB."""
        ...

    @property
    def deliveries(self) -> DeliveryCounts:
        """The outbox's deliveries, counted."""
        ...
