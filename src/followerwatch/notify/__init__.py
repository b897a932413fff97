"""The explicit notifier registry: `type` key → config model and builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from followerwatch.clock import Clock, SystemClock
from followerwatch.notify import alertmanager, apprise, log, webhook
from followerwatch.notify.base import Notifier

NotifierConfig = (
    log.LogConfig | webhook.WebhookConfig | alertmanager.AlertmanagerConfig | apprise.AppriseConfig
)

REGISTRY: dict[str, Callable[[Any, httpx.AsyncClient, Clock], Notifier]] = {
    "log": lambda cfg, client, clock: log.LogNotifier(cfg),
    "webhook": webhook.WebhookNotifier,
    "alertmanager": alertmanager.AlertmanagerNotifier,
    "apprise": lambda cfg, client, clock: apprise.AppriseNotifier(cfg),
}


def build_notifier(
    config: NotifierConfig, client: httpx.AsyncClient, clock: Clock | None = None
) -> Notifier:
    """The notifier for one `[[notifiers]]` entry."""
    return REGISTRY[config.type](config, client, clock or SystemClock())
