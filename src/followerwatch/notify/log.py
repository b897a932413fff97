"""The `log` notifier: each event as one structured log line."""

from __future__ import annotations

from typing import ClassVar, Literal

import structlog
from pydantic import Field

from followerwatch.config.base import StrictModel
from followerwatch.models import MAX_COUNT, Event
from followerwatch.notify.base import ConcurrentNotifier


class LogConfig(StrictModel):
    """`[[notifiers]] type = "log"`."""

    type: Literal["log"] = "log"
    name: str = "log"
    # Deliveries (accounts) in flight at once; 1 sends one event at a time, in stored order.
    concurrency: int = Field(default=16, ge=1, le=MAX_COUNT)

    def secrets(self) -> list[str]:
        """No secrets."""
        return []


class LogNotifier(ConcurrentNotifier):
    """Writes alerts to the structured log."""

    key: ClassVar[str] = "log"

    def __init__(self, config: LogConfig) -> None:
        self.name = config.name
        self.concurrency = config.concurrency
        self._log = structlog.get_logger("followerwatch.alert")

    async def send(self, event: Event) -> None:
        self._log.warning(
            event.message,
            alert=str(event.kind),
            platform=event.platform,
            account=event.account,
            rule=event.rule,
            value=event.value,
            threshold=event.threshold,
            at=event.time.isoformat().replace("+00:00", "Z"),
            event_id=event.id,
        )
