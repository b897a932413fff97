"""Events raised outside a poll's commit (the writer's spool alerts), stored and routed."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from followerwatch.models import Event
from followerwatch.state.base import EventStore


class EventSink:
    """Stores one event at a time with the notifiers its route names; the outbox delivers it."""

    def __init__(self, events: EventStore, route: Callable[[Event], Iterable[str]]) -> None:
        self._events = events
        self._route = route

    def raise_event(self, event: Event) -> None:
        """Store the event and its deliveries."""
        self._events.add_events([event], self._route)
