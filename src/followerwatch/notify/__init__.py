"""The explicit notifier registry: `type` key → config model and builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from followerwatch.clock import Clock, SystemClock
from followerwatch.notify import alertmanager, apprise, log, webhook
from followerwatch.notify.base import Notifier

if TYPE_CHECKING:
    from followerwatch.analysis.charts import AccountCharts

NotifierConfig = (
    log.LogConfig | webhook.WebhookConfig | alertmanager.AlertmanagerConfig | apprise.AppriseConfig
)

# Builders take (config, the shared client, the clock, the alert chart drawer or None).
REGISTRY: dict[str, Callable[[Any, httpx.AsyncClient, Clock, AccountCharts | None], Notifier]] = {
    "log": lambda cfg, client, clock, charts: log.LogNotifier(cfg),
    "webhook": lambda cfg, client, clock, charts: webhook.WebhookNotifier(cfg, client, clock),
    "alertmanager": lambda cfg, client, clock, charts: alertmanager.AlertmanagerNotifier(
        cfg, client, clock
    ),
    "apprise": lambda cfg, client, clock, charts: apprise.AppriseNotifier(cfg, charts),
}


def build_notifier(
    config: NotifierConfig,
    client: httpx.AsyncClient,
    clock: Clock | None = None,
    charts: AccountCharts | None = None,
) -> Notifier:
    """The notifier for one `[[notifiers]]` entry; `charts` draws the charts alerts can attach."""
    return REGISTRY[config.type](config, client, clock or SystemClock(), charts)
