"""Routing: events go to the notifiers of every matching route, else to the default."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from followerwatch.alerts.routing import AlertsConfig, make_router
from followerwatch.config.settings import load_config
from followerwatch.errors import ConfigError
from followerwatch.models import Event, EventKind, Severity


def event(kind: EventKind, severity: Severity, labels: tuple[tuple[str, str], ...] = ()) -> Event:
    return Event(
        id="e",
        time=datetime(2026, 1, 1, tzinfo=UTC),
        platform="x",
        account="a",
        rule="r",
        kind=kind,
        value=1,
        threshold=1,
        message="m",
        severity=severity,
        labels=labels,
    )


def test_routes_by_kind_severity_and_labels() -> None:
    cfg = AlertsConfig.model_validate(
        {
            "routes": [
                {"notifiers": ["pager"], "severity": ["critical"]},
                {"notifiers": ["news"], "labels": {"team": "news"}},
                {"notifiers": ["pager", "chat"], "kinds": ["window_drop"]},
            ],
            "default": ["log"],
        }
    )
    route = make_router(cfg, ["log", "pager", "news", "chat"])
    assert route(event(EventKind.SUSPENDED, Severity.CRITICAL)) == ["pager"]
    assert route(event(EventKind.MILESTONE, Severity.INFO, (("team", "news"),))) == ["news"]
    assert route(event(EventKind.WINDOW_DROP, Severity.CRITICAL)) == ["pager", "chat"]
    assert route(event(EventKind.MILESTONE, Severity.INFO)) == ["log"]


def test_without_routes_every_notifier_gets_everything() -> None:
    route = make_router(AlertsConfig(), ["log", "hook"])
    assert route(event(EventKind.MILESTONE, Severity.INFO)) == ["log", "hook"]


@pytest.mark.parametrize(
    ("alerts", "problem"),
    [
        ({"routes": [{"notifiers": ["nope"]}]}, "alerts: refers to notifier 'nope'"),
        ({"default": ["ghost"]}, "alerts: refers to notifier 'ghost'"),
        ({"routes": [{"notifiers": ["log"], "kinds": ["exploded"]}]}, "alerts.routes[0].kinds[0]"),
    ],
)
def test_bad_routes_are_config_errors(alerts: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, {"alerts": alerts})


def test_duplicate_notifier_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match="notifiers: two notifiers are named 'log'"):
        load_config(None, {"notifiers": [{"type": "log"}, {"type": "log"}]})
