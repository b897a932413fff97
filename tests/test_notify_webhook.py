"""The webhook notifier: documented payload, idempotency key, verifiable HMAC-SHA256 signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from pytest_httpserver import HTTPServer

from followerwatch.clock import ManualClock
from followerwatch.errors import DeliveryError
from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.notify.webhook import WebhookConfig, WebhookNotifier

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
EVENT = Event(
    id="0b5e3f9c-0000-5000-8000-000000000001",
    time=datetime(2009, 4, 27, 18, tzinfo=UTC),
    platform="x",
    account="aplusk",
    rule="below:1000000",
    kind=EventKind.DROPPED_BELOW,
    value=999_652,
    threshold=1_000_000,
    severity=Severity.WARNING,
    status=EventStatus.FIRING,
    message="@aplusk on x dropped below 1,000,000 followers: now 999,652",
    labels=(("campaign", "unfollow-day"),),
)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does, written from the README alone."""
    timestamp = headers["X-Followerwatch-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(
        headers["X-Followerwatch-Signature"], "sha256=" + expected.hexdigest()
    )


async def test_signed_payload_is_verifiable(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=200)
    config = WebhookConfig.model_validate(
        {
            "type": "webhook",
            "url": httpserver.url_for("/hook"),
            "secret": "s3cr3t-key",
            "bearer_token": "tok-abcdef",
        }
    )
    async with httpx.AsyncClient() as client:
        await WebhookNotifier(config, client, ManualClock(NOW)).send(EVENT)
    [(request, _)] = httpserver.log
    body = request.get_data()
    headers = dict(request.headers)
    assert verify("s3cr3t-key", headers, body)
    assert not verify("wrong-key", headers, body)
    assert not verify("s3cr3t-key", headers, body.replace(b"999652", b"999653"))
    assert headers["X-Followerwatch-Timestamp"] == str(int(NOW.timestamp()))
    assert headers["Idempotency-Key"] == EVENT.id
    assert headers["Authorization"] == "Bearer tok-abcdef"
    payload = json.loads(body)
    assert payload["event"]["labels"] == {"campaign": "unfollow-day"}
    assert payload["event"]["time"] == "2009-04-27T18:00:00Z"


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(500, False), (503, False), (429, False), (400, True), (404, True), (410, True)],
)
async def test_status_classification(httpserver: HTTPServer, status: int, permanent: bool) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=status)
    config = WebhookConfig.model_validate({"type": "webhook", "url": httpserver.url_for("/hook")})
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError) as exc:
            await WebhookNotifier(config, client).send(EVENT)
    assert exc.value.permanent is permanent


async def test_network_error_is_retryable() -> None:
    from followerwatch.demo.influxd import free_port

    config = WebhookConfig.model_validate(
        {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook", "timeout": 2}
    )
    async with httpx.AsyncClient() as client:
        with pytest.raises(DeliveryError) as exc:
            await WebhookNotifier(config, client).send(EVENT)
    assert not exc.value.permanent


async def test_the_payload_carries_the_score_as_a_number_or_null(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=200)
    config = WebhookConfig.model_validate({"type": "webhook", "url": httpserver.url_for("/hook")})
    unusual = replace(
        EVENT,
        rule="unusual",
        kind=EventKind.UNUSUAL_DROP,
        value=-4_200,
        threshold=120,
        message="@aplusk on x is losing 4,200/h; typical lately is +120 ± 90/h (score -48)",
        score=-48.0,
    )
    async with httpx.AsyncClient() as client:
        notifier = WebhookNotifier(config, client, ManualClock(NOW))
        await notifier.send(unusual)
        await notifier.send(EVENT)
    sent, plain = (json.loads(request.get_data()) for request, _ in httpserver.log)
    # A number (a whole one stays a float in JSON), and null for the events of other rules.
    assert sent["event"]["score"] == -48.0 and isinstance(sent["event"]["score"], float)
    assert plain["event"]["score"] is None
    # No existing field changed type: value and threshold are still integers.
    assert (sent["event"]["value"], sent["event"]["threshold"]) == (-4_200, 120)
    assert set(sent["event"]) == set(plain["event"])
