"""A request a notifier cannot even build is a permanent DeliveryError, never a retry for ever.

Config validation refuses these values at load; the configs here are constructed without it,
as values that slip past validation would reach the notifier.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from followerwatch.errors import DeliveryError
from followerwatch.models import EventStatus
from followerwatch.notify.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from followerwatch.notify.webhook import WebhookConfig, WebhookNotifier
from test_notify_alertmanager import make_event

UNBUILDABLE: list[dict[str, Any]] = [
    {"url": "http://h/x", "headers": {"X-Team": "équipe"}},
    {"url": "http://h/x", "bearer_token": SecretStr("tökén")},
    {"url": "http://h:abc/x"},
]


def _client(sent: list[httpx.Request]) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


@pytest.mark.parametrize("fields", UNBUILDABLE, ids=["header", "bearer", "port"])
async def test_a_webhook_request_that_cannot_be_built_fails_permanently(
    fields: dict[str, Any],
) -> None:
    sent: list[httpx.Request] = []
    config = WebhookConfig.model_construct(type="webhook", **fields)
    async with _client(sent) as client:
        with pytest.raises(DeliveryError, match="cannot build the request") as err:
            await WebhookNotifier(config, client).send(make_event(EventStatus.FIRING))
    assert err.value.permanent and sent == []
    assert "tökén" not in str(err.value)


@pytest.mark.parametrize("fields", UNBUILDABLE[1:], ids=["bearer", "port"])
async def test_an_alertmanager_request_that_cannot_be_built_fails_permanently(
    fields: dict[str, Any],
) -> None:
    sent: list[httpx.Request] = []
    config = AlertmanagerConfig.model_construct(type="alertmanager", **fields)
    async with _client(sent) as client:
        with pytest.raises(DeliveryError, match="cannot build the request") as err:
            await AlertmanagerNotifier(config, client).send(make_event(EventStatus.FIRING))
    assert err.value.permanent and sent == []
