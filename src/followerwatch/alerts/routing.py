"""Which notifiers get which events: by kind, severity, platform and account labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import Field

from followerwatch.config.base import StrictModel
from followerwatch.config.fields import PositiveDuration
from followerwatch.models import Event, EventKind, Severity


class RouteConfig(StrictModel):
    """`[[alerts.routes]]`: events matching every given criterion go to `notifiers`."""

    notifiers: list[str] = Field(min_length=1)
    kinds: list[EventKind] | None = None
    severity: list[Severity] | None = None
    platforms: list[str] | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    def matches(self, event: Event) -> bool:
        """Whether this route takes the event."""
        labels = dict(event.labels)
        return (
            (self.kinds is None or event.kind in self.kinds)
            and (self.severity is None or event.severity in self.severity)
            and (self.platforms is None or event.platform in self.platforms)
            and all(labels.get(k) == v for k, v in self.labels.items())
        )


class AlertsConfig(StrictModel):
    """`[alerts]`: routing and the outbox's retry policy."""

    routes: list[RouteConfig] = Field(default_factory=list)
    # Notifiers for events no route takes; None means every notifier.
    default: list[str] | None = None
    backoff_initial: PositiveDuration = 1.0
    backoff_max: PositiveDuration = 600.0
    # The longest one delivery attempt may take, whatever the receiver does (a retryable failure).
    attempt_timeout: PositiveDuration = 30.0
    # How long a one-shot `poll` tries delivery before it exits; the rest waits for the next run.
    poll_delivery_timeout: PositiveDuration = 10.0

    def unknown_notifier(self, names: Sequence[str]) -> str | None:
        """The first notifier name a route or the default mentions that does not exist."""
        mentioned = [n for r in self.routes for n in r.notifiers] + list(self.default or [])
        return next((n for n in mentioned if n not in names), None)


def make_router(cfg: AlertsConfig, names: Sequence[str]) -> Callable[[Event], list[str]]:
    """event → the names of the notifiers that must deliver it."""
    default = list(names) if cfg.default is None else list(cfg.default)

    def route(event: Event) -> list[str]:
        chosen: list[str] = []
        for r in cfg.routes:
            if r.matches(event):
                chosen += [n for n in r.notifiers if n not in chosen]
        return chosen if chosen else default

    return route
