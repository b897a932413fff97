"""`test-alert`: one synthetic event sent straight to every notifier, each result reported."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from followerwatch.clock import SystemClock
from followerwatch.errors import DeliveryError
from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.net.http import build_client
from followerwatch.notify import NotifierConfig, build_notifier


class NotifierSettings(Protocol):
    """The part of the settings a test alert reads."""

    @property
    def notifiers(self) -> Sequence[NotifierConfig]: ...


class ChannelsConfig(Protocol):
    """The loaded config as a test alert sees it (config sits above alerts, so a Protocol)."""

    @property
    def settings(self) -> NotifierSettings: ...


def sample_event(now_clock: SystemClock | None = None) -> Event:
    """A harmless event that says what it is."""
    now = (now_clock or SystemClock()).now()
    return Event(
        id=str(uuid.uuid4()),
        time=now,
        platform="followerwatch",
        account="test",
        rule="test",
        kind=EventKind.TEST,
        value=0,
        threshold=0,
        severity=Severity.INFO,
        status=EventStatus.ONCE,
        message="followerwatch test alert: if you can read this, this channel works",
    )


async def send_test_alert(config: ChannelsConfig) -> dict[str, str | None]:
    """Notifier name → None when delivered, else the problem."""
    results: dict[str, str | None] = {}
    event = sample_event()
    async with build_client() as client:
        for notifier_cfg in config.settings.notifiers:
            notifier = build_notifier(notifier_cfg, client)
            try:
                await notifier.send(event)
            except DeliveryError as exc:
                results[notifier.name] = str(exc)
            else:
                results[notifier.name] = None
    return results
