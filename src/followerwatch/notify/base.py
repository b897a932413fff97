"""The Notifier protocol and the documented webhook payload."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC
from typing import Any, ClassVar, Protocol, runtime_checkable

from followerwatch.models import Event, Projection

PAYLOAD_VERSION = 1


class Notifier(Protocol):
    """Delivers one event; raises DeliveryError(permanent=…) on failure."""

    key: ClassVar[str]
    name: str

    async def send(self, event: Event) -> None: ...


@runtime_checkable
class BatchNotifier(Notifier, Protocol):
    """A notifier that can also deliver several events in one request (all or none)."""

    async def send_many(self, events: Sequence[Event]) -> None: ...


@runtime_checkable
class ConcurrentNotifier(Notifier, Protocol):
    """A notifier that says how many lanes (or requests) of it may be in flight at once."""

    concurrency: int


@runtime_checkable
class RefreshingNotifier(Notifier, Protocol):
    """A notifier that needs still-active conditions re-announced every `resend_interval` s."""

    resend_interval: float

    async def refresh(self, active: Sequence[Event]) -> None: ...


def event_fields(event: Event) -> dict[str, Any]:
    """An event as JSON-ready fields: the `event` object of the webhook payload."""
    return {
        "id": event.id,
        "time": event.time.isoformat().replace("+00:00", "Z"),
        "platform": event.platform,
        "account": event.account,
        "rule": event.rule,
        "kind": str(event.kind),
        "value": event.value,
        "threshold": event.threshold,
        "message": event.message,
        "severity": str(event.severity),
        "status": str(event.status),
        "labels": dict(event.labels),
        # The `unusual` rule's score (a number), null for every other event (and never NaN,
        # which is not JSON).
        "score": event.score if event.score is not None and math.isfinite(event.score) else None,
    }


def projection_fields(projection: Projection | None) -> dict[str, Any] | None:
    """The `projection` object of the webhook payload: where the trend leads next, or None."""
    if projection is None:
        return None
    return {
        "line": projection.line,
        "direction": projection.direction,
        "eta_seconds": round(projection.seconds),
        "at": projection.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "per_day": round(projection.per_day),
    }


def event_payload(event: Event) -> dict[str, Any]:
    """The public JSON payload of an event (documented in the README; change only on purpose)."""
    return {
        "version": PAYLOAD_VERSION,
        "source": "followerwatch",
        "event": event_fields(event),
        "projection": projection_fields(event.projection),
    }
