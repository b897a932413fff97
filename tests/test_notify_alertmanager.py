"""The `alertmanager` notifier against a real Prometheus Alertmanager (no mocks)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from alertmanager_fixture import Alertmanager, StartAlertmanager
from followerwatch.clock import ManualClock
from followerwatch.demo.influxd import free_port
from followerwatch.errors import DeliveryError
from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.notify import build_notifier
from followerwatch.notify.alertmanager import (
    AlertmanagerConfig,
    AlertmanagerNotifier,
    alertname,
    check_response,
    label_name,
)

# bcrypt (cost 4) of BASIC_PASSWORD, for Alertmanager's --web.config.file.
BASIC_USER = "followerwatch"
BASIC_PASSWORD = "am-Pa55-word"
BASIC_HASH = "$2b$04$OL7BSyX4Mb9/G5j375K71Ou.8QLUumU.SDavYo1z2wf53mrGRvN66"


def close(stamp: str, expected: datetime) -> bool:
    """Whether an Alertmanager timestamp (milliseconds, sometimes 1 ms off) is `expected`."""
    return abs(datetime.fromisoformat(stamp) - expected) < timedelta(milliseconds=2)


def when(value: str) -> datetime:
    """An Alertmanager timestamp as a datetime."""
    return datetime.fromisoformat(value)


def make_event(
    status: EventStatus,
    *,
    severity: Severity = Severity.WARNING,
    kind: EventKind = EventKind.DROPPED_BELOW,
    rule: str = "below:1000000",
    time: datetime | None = None,
    account: str = "aplusk",
    message: str = "@aplusk on x dropped below 1,000,000 followers: now 999,990",
    labels: tuple[tuple[str, str], ...] = (),
) -> Event:
    return Event(
        id=str(uuid.uuid4()),
        time=time or datetime.now(UTC),
        platform="x",
        account=account,
        rule=rule,
        kind=kind,
        value=999_990,
        threshold=1_000_000,
        message=message,
        severity=severity,
        status=status,
        labels=labels,
    )


def notifier_for(
    url: str, client: httpx.AsyncClient, clock: ManualClock | None = None, **extra: Any
) -> AlertmanagerNotifier:
    config = AlertmanagerConfig.model_validate({"type": "alertmanager", "url": url, **extra})
    return AlertmanagerNotifier(config, client, clock or ManualClock(datetime.now(UTC)))


def resolved_alerts(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in payload["alerts"] if a["status"] == "resolved"]


async def test_firing_event_becomes_an_alert_with_the_documented_labels(
    alertmanager: Alertmanager, http_client: httpx.AsyncClient
) -> None:
    notifier = notifier_for(
        alertmanager.url,
        http_client,
        labels={"env": "test", "team": "static"},
        generator_url="http://followerwatch.local:8080",
    )
    fired = make_event(
        EventStatus.FIRING, labels=(("team", "growth"), ("tier-1", "yes")), time=datetime.now(UTC)
    )
    await notifier.send(fired)

    [alert] = alertmanager.alerts()
    assert alert["labels"] == {
        "alertname": "FollowerwatchBelow",
        "platform": "x",
        "account": "aplusk",
        "rule": "below:1000000",
        "severity": "warning",
        "team": "growth",  # the account's label wins over the static one
        "tier_1": "yes",
        "env": "test",
    }
    assert alert["annotations"] == {
        "summary": fired.message,
        "value": "999990",
        "threshold": "1000000",
        "kind": "dropped_below",
        "event_id": fired.id,
    }
    assert alert["generatorURL"] == "http://followerwatch.local:8080"
    assert close(alert["startsAt"], fired.time)
    payload = alertmanager.wait_for_notification(lambda p: p["status"] == "firing")
    assert [a["labels"] for a in payload["alerts"]] == [alert["labels"]]


async def test_resolved_event_resolves_the_same_alert(
    alertmanager: Alertmanager, http_client: httpx.AsyncClient
) -> None:
    notifier = notifier_for(alertmanager.url, http_client)
    start = datetime.now(UTC) - timedelta(minutes=5)
    await notifier.send(make_event(EventStatus.FIRING, time=start))
    [fired] = alertmanager.alerts()
    alertmanager.wait_for_notification(lambda p: p["status"] == "firing")

    back = make_event(
        EventStatus.RESOLVED,
        severity=Severity.INFO,  # what the threshold rule gives a resolution
        kind=EventKind.BACK_ABOVE,
        time=start + timedelta(minutes=2),
        message="@aplusk on x is back above 1,000,000 followers: now 1,000,020",
    )
    await notifier.send(back)

    assert alertmanager.alerts() == []
    payload = alertmanager.wait_for_notification(lambda p: p["status"] == "resolved")
    [resolved] = resolved_alerts(payload)
    assert resolved["fingerprint"] == fired["fingerprint"]
    assert resolved["labels"]["severity"] == "warning"
    assert resolved["annotations"]["summary"] == back.message
    assert close(resolved["endsAt"], back.time)
    assert close(resolved["startsAt"], start)

    # At-least-once delivery may repeat the resolution: nothing active, so nothing is posted.
    await notifier.send(back)
    assert alertmanager.alerts() == []


async def test_escalated_severity_replaces_the_earlier_alert(
    alertmanager: Alertmanager, http_client: httpx.AsyncClient
) -> None:
    notifier = notifier_for(alertmanager.url, http_client)
    hidden = make_event(
        EventStatus.FIRING, kind=EventKind.COUNT_HIDDEN, rule="lifecycle", message="hides"
    )
    await notifier.send(hidden)
    alertmanager.wait_for_notification(lambda p: p["status"] == "firing")
    suspended = make_event(
        EventStatus.FIRING,
        severity=Severity.CRITICAL,
        kind=EventKind.SUSPENDED,
        rule="lifecycle",
        message="suspended",
    )
    await notifier.send(suspended)

    [alert] = alertmanager.alerts()
    assert alert["labels"]["alertname"] == "FollowerwatchLifecycle"
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == "suspended"
    payload = alertmanager.wait_for_notification(lambda p: p["status"] == "resolved")
    [old] = resolved_alerts(payload)
    assert old["labels"]["severity"] == "warning" and old["annotations"]["summary"] == "hides"


async def test_historical_once_event_expires_after_the_ttl_from_now(
    alertmanager: Alertmanager, http_client: httpx.AsyncClient
) -> None:
    clock = ManualClock(datetime.now(UTC))
    notifier = notifier_for(alertmanager.url, http_client, clock, point_event_ttl="30m")
    replayed = make_event(
        EventStatus.ONCE,
        severity=Severity.INFO,
        kind=EventKind.MILESTONE,
        rule="milestones:every:100000",
        time=datetime(2009, 4, 17, 3, 0, tzinfo=UTC),
    )
    await notifier.send(replayed)

    [alert] = alertmanager.alerts()
    assert alert["labels"]["alertname"] == "FollowerwatchMilestones"
    assert alert["labels"]["event_id"] == replayed.id
    assert when(alert["startsAt"]) == replayed.time
    assert close(alert["endsAt"], (clock.now() + timedelta(minutes=30)))


async def test_event_from_the_future_starts_at_the_clock(
    alertmanager: Alertmanager, http_client: httpx.AsyncClient
) -> None:
    clock = ManualClock(datetime.now(UTC))
    notifier = notifier_for(alertmanager.url, http_client, clock)
    await notifier.send(make_event(EventStatus.FIRING, time=clock.now() + timedelta(hours=1)))

    [alert] = alertmanager.alerts()
    assert close(alert["startsAt"], clock.now())


async def test_refresh_reposts_only_firing_conditions(
    alertmanager: Alertmanager, http_client: httpx.AsyncClient
) -> None:
    # A fresh Alertmanager stands for one that restarted and forgot its alerts.
    notifier = notifier_for(alertmanager.url, http_client, resend_interval="30s")
    assert notifier.resend_interval == 30.0
    firing = make_event(EventStatus.FIRING, account="still_down")
    others = [
        make_event(EventStatus.ONCE, account="milestone", rule="milestones"),
        make_event(EventStatus.RESOLVED, account="recovered"),
    ]
    await notifier.refresh([firing, *others])

    [alert] = alertmanager.alerts()
    assert alert["labels"]["account"] == "still_down"
    first_end = when(alert["endsAt"])

    await notifier.refresh([firing])
    [alert] = alertmanager.alerts()
    # Alertmanager sets endsAt to now + resolve_timeout on every post: it moved on.
    assert when(alert["endsAt"]) > first_end


async def test_rejected_alert_is_a_permanent_error(
    alertmanager: Alertmanager, http_client: httpx.AsyncClient
) -> None:
    # model_construct skips the config validation that would refuse this label name, so the
    # real Alertmanager gets to reject it.
    config = AlertmanagerConfig.model_construct(
        type="alertmanager",
        name="am",
        url=alertmanager.url,
        timeout=5.0,
        bearer_token=None,
        username=None,
        password=None,
        resend_interval=60.0,
        point_event_ttl=3600.0,
        generator_url=None,
        labels={"bad-name": "x"},
    )
    notifier = AlertmanagerNotifier(config, http_client, ManualClock(datetime.now(UTC)))
    with pytest.raises(DeliveryError) as err:
        await notifier.send(make_event(EventStatus.ONCE))
    assert err.value.permanent
    assert "HTTP 400" in str(err.value) and "bad-name" in str(err.value)


async def test_basic_auth_is_sent_and_a_refusal_is_permanent(
    alertmanager_factory: StartAlertmanager, http_client: httpx.AsyncClient
) -> None:
    server = alertmanager_factory(basic_auth=(BASIC_USER, BASIC_PASSWORD, BASIC_HASH))
    good = notifier_for(server.url, http_client, username=BASIC_USER, password=BASIC_PASSWORD)
    await good.send(make_event(EventStatus.FIRING))
    assert [a["labels"]["account"] for a in server.alerts()] == ["aplusk"]

    bad = notifier_for(server.url, http_client, username=BASIC_USER, password="wrong-password")
    with pytest.raises(DeliveryError) as err:
        await bad.send(make_event(EventStatus.FIRING, account="other"))
    assert err.value.permanent and "401" in str(err.value)


async def test_bearer_token_passes_an_authenticating_proxy(
    alertmanager: Alertmanager, http_client: httpx.AsyncClient, httpserver: HTTPServer
) -> None:
    # Alertmanager has no bearer auth of its own; deployments put a proxy in front of it.
    def proxy(request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer proxy-t0ken":
            return Response("unauthorized", status=401)
        upstream = httpx.request(
            request.method,
            alertmanager.url + request.path,
            params=list(request.args.items(multi=True)),
            content=request.get_data(),
            headers={"Content-Type": request.content_type or "application/json"},
        )
        return Response(upstream.content, status=upstream.status_code)

    httpserver.expect_request("/api/v2/alerts").respond_with_handler(proxy)
    url = httpserver.url_for("/").rstrip("/")
    await notifier_for(url, http_client, bearer_token="proxy-t0ken").send(
        make_event(EventStatus.FIRING)
    )
    assert [a["labels"]["account"] for a in alertmanager.alerts()] == ["aplusk"]

    with pytest.raises(DeliveryError) as err:
        await notifier_for(url, http_client, bearer_token="stale").send(
            make_event(EventStatus.FIRING, account="other")
        )
    assert err.value.permanent


async def test_unreachable_alertmanager_is_a_retryable_error(
    http_client: httpx.AsyncClient,
) -> None:
    notifier = notifier_for(f"http://127.0.0.1:{free_port()}", http_client, timeout="2s")
    with pytest.raises(DeliveryError) as err:
        await notifier.send(make_event(EventStatus.FIRING))
    assert not err.value.permanent and "ConnectError" in str(err.value)


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(500, False), (503, False), (429, False), (400, True), (401, True), (403, True), (404, True)],
)
def test_error_statuses_map_to_retryable_or_permanent(status: int, permanent: bool) -> None:
    response = httpx.Response(status, text="reason")
    with pytest.raises(DeliveryError) as err:
        check_response("am", response)
    assert err.value.permanent is permanent


def test_success_statuses_raise_nothing() -> None:
    check_response("am", httpx.Response(200))
    check_response("am", httpx.Response(204))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("below:1000000", "FollowerwatchBelow"),
        ("above:5000", "FollowerwatchAbove"),
        ("drop:5%/24h", "FollowerwatchDrop"),
        ("milestones:every:100000", "FollowerwatchMilestones"),
        ("stale:2h", "FollowerwatchStale"),
        ("lifecycle", "FollowerwatchLifecycle"),
        ("window-drop_x:1", "FollowerwatchWindowDropX"),
    ],
)
def test_alertname_comes_from_the_rule_family(rule: str, expected: str) -> None:
    assert alertname(rule) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [("team", "team"), ("tier-1", "tier_1"), ("1st", "_1st"), ("région", "r_gion")],
)
def test_label_names_are_sanitised(key: str, expected: str) -> None:
    assert label_name(key) == expected


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"labels": {"severity": "page"}}, "label 'severity'"),
        ({"labels": {"bad-name": "x"}}, "label 'bad-name'"),
        ({"username": "u"}, "both username and password"),
        ({"username": "u", "password": "p", "bearer_token": "t"}, "not both"),
        ({"resend_interval": 0}, "greater than 0"),
    ],
)
def test_invalid_config_is_refused(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        AlertmanagerConfig.model_validate(
            {"type": "alertmanager", "url": "http://am:9093", **extra}
        )


async def test_secrets_and_registry(tmp_path: Path, http_client: httpx.AsyncClient) -> None:
    token = tmp_path / "token"
    token.write_text("bearer-from-file\n")
    config = AlertmanagerConfig.model_validate(
        {"type": "alertmanager", "url": "http://am:9093/", "bearer_token_file": str(token)}
    )
    assert config.url == "http://am:9093"
    assert config.secrets() == ["bearer-from-file"]
    notifier = build_notifier(config, http_client, ManualClock(datetime.now(UTC)))
    assert isinstance(notifier, AlertmanagerNotifier) and notifier.name == "alertmanager"
