"""Re-announcing conditions still active past their account's `repeat` interval."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from followerwatch.models import Event
from followerwatch.state.base import EventStore


def repeats(
    events: EventStore, repeat: Mapping[tuple[str, str], float], now: datetime
) -> list[Event]:
    """The active conditions due again at `now`, as new events (each marked as sent now)."""
    if not repeat:
        return []
    out = []
    for event, last_sent in events.active():
        every = repeat.get((event.platform, event.account))
        if not every or now.timestamp() - last_sent < every:
            continue
        again = replace(
            event,
            id=str(uuid.uuid5(uuid.UUID(event.id), now.isoformat())),
            time=now,
            message=f"still: {event.message}",
        )
        events.touch_active(event, now.timestamp())
        out.append(again)
    return out
