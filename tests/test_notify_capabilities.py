"""What each notifier can do beyond `send` is declared as Protocols, and the outbox goes by them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from followerwatch.alerts.outbox import Outbox
from followerwatch.clock import ManualClock
from followerwatch.models import Event, EventKind, EventStatus
from followerwatch.notify import REGISTRY, build_notifier
from followerwatch.notify.alertmanager import AlertmanagerConfig
from followerwatch.notify.apprise import AppriseConfig
from followerwatch.notify.base import (
    BatchNotifier,
    ConcurrentNotifier,
    RefreshingNotifier,
)
from followerwatch.notify.log import LogConfig
from followerwatch.notify.webhook import WebhookConfig
from followerwatch.state.db import StateDB

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CAPABILITIES = (BatchNotifier, ConcurrentNotifier, RefreshingNotifier)

CONFIGS: dict[str, Any] = {
    "log": LogConfig.model_validate({"type": "log"}),
    "webhook": WebhookConfig.model_validate({"type": "webhook", "url": "http://127.0.0.1:9/h"}),
    "alertmanager": AlertmanagerConfig.model_validate(
        {"type": "alertmanager", "url": "http://127.0.0.1:9"}
    ),
    "apprise": AppriseConfig.model_validate({"type": "apprise", "urls": ["json://127.0.0.1:9/"]}),
}
EXPECTED = {
    "log": {ConcurrentNotifier},
    "webhook": {ConcurrentNotifier},
    "alertmanager": {BatchNotifier, ConcurrentNotifier, RefreshingNotifier},
    "apprise": set(),
}


@pytest.mark.parametrize("key", sorted(REGISTRY))
async def test_each_registered_notifier_has_the_capabilities_it_declares(key: str) -> None:
    async with httpx.AsyncClient() as client:
        notifier = build_notifier(CONFIGS[key], client)
    assert {p for p in CAPABILITIES if isinstance(notifier, p)} == EXPECTED[key]


def events(accounts: Sequence[str]) -> list[Event]:
    return [
        Event(
            f"{a}-0",
            T0 + timedelta(seconds=i),
            "x",
            a,
            "below:10",
            EventKind.DROPPED_BELOW,
            9,
            10,
            "m",
            status=EventStatus.FIRING,
        )
        for i, a in enumerate(accounts)
    ]


class Counting:
    """Records how many sends are in flight at once; no declared concurrency."""

    key: ClassVar[str] = "counting"

    def __init__(self) -> None:
        self.name = "n"
        self.now = 0
        self.most = 0

    async def send(self, event: Event) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.01)
        self.now -= 1


class OneAtATime(Counting, ConcurrentNotifier):
    """The same, declaring one lane."""

    concurrency = 1


class Refreshing(Counting, RefreshingNotifier):
    """Re-announces active conditions, as Alertmanager does."""

    resend_interval = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.refreshed: list[Sequence[Event]] = []

    async def refresh(self, active: Sequence[Event]) -> None:
        self.refreshed.append(active)


class StrayRefresh(Counting):
    """Has a `refresh` method but declares no interval: never refreshed."""

    def __init__(self) -> None:
        super().__init__()
        self.refreshed = 0

    async def refresh(self, active: Sequence[Event]) -> None:
        self.refreshed += 1


async def deliver(tmp_path: Path, notifier: Counting, accounts: Sequence[str]) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    try:
        state.events.add_events(events(accounts), lambda e: [notifier.name])
        await Outbox(state, [notifier], ManualClock(T0)).deliver_due()
    finally:
        state.close()


async def test_the_outbox_takes_a_declared_concurrency_and_defaults_without_one(
    tmp_path: Path,
) -> None:
    accounts = [f"u{i}" for i in range(4)]
    plain, one = Counting(), OneAtATime()
    await deliver(tmp_path / "plain", plain, accounts)
    await deliver(tmp_path / "one", one, accounts)
    assert plain.most == 4
    assert one.most == 1


async def test_only_a_refreshing_notifier_is_refreshed(tmp_path: Path) -> None:
    refreshing, stray = Refreshing(), StrayRefresh()
    await deliver(tmp_path / "r", refreshing, ["a"])
    await deliver(tmp_path / "s", stray, ["a"])
    assert len(refreshing.refreshed) == 1
    assert stray.refreshed == 0
