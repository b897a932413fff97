"""The explicit notifier registry: `type` key → config model and builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from followerwatch.notify import log, webhook
from followerwatch.notify.base import Notifier

NotifierConfig = log.LogConfig | webhook.WebhookConfig

REGISTRY: dict[str, Callable[[Any, httpx.AsyncClient], Notifier]] = {
    "log": lambda cfg, client: log.LogNotifier(cfg),
    "webhook": webhook.WebhookNotifier,
}


def build_notifier(config: NotifierConfig, client: httpx.AsyncClient) -> Notifier:
    """The notifier for one `[[notifiers]]` entry."""
    return REGISTRY[config.type](config, client)
