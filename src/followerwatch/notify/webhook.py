"""The `webhook` notifier: POST the documented JSON payload, signed with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated, ClassVar, Literal

import httpx
from pydantic import BeforeValidator, Field, SecretStr

from followerwatch.clock import Clock, SystemClock
from followerwatch.config.base import StrictModel
from followerwatch.config.fields import HeaderName, HeaderText, PositiveDuration, url_validator
from followerwatch.errors import DeliveryError
from followerwatch.models import MAX_COUNT, Event
from followerwatch.notify.base import ConcurrentNotifier, event_payload

SIGNATURE_HEADER = "X-Followerwatch-Signature"
TIMESTAMP_HEADER = "X-Followerwatch-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookConfig(StrictModel):
    """`[[notifiers]] type = "webhook"`; optional `secret` signs, `bearer_token` authenticates."""

    type: Literal["webhook"]
    name: str = "webhook"
    url: Annotated[str, BeforeValidator(url_validator("bearer_token_file or headers"))]
    timeout: PositiveDuration = 10.0
    secret: SecretStr | None = None
    bearer_token: SecretStr | None = None
    headers: dict[HeaderName, HeaderText] = Field(default_factory=dict)
    # Deliveries (accounts) in flight at once; 1 sends one event at a time, in stored order.
    concurrency: int = Field(default=16, ge=1, le=MAX_COUNT)

    def secrets(self) -> list[str]:
        """The signing secret and bearer token, if any."""
        return [s.get_secret_value() for s in (self.secret, self.bearer_token) if s is not None]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: "sha256=" + hex HMAC-SHA256 of `timestamp.body`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookNotifier(ConcurrentNotifier):
    """POSTs each event; 5xx, 429 and network errors are retryable, other 4xx are permanent."""

    key: ClassVar[str] = "webhook"

    def __init__(
        self, config: WebhookConfig, client: httpx.AsyncClient, clock: Clock | None = None
    ) -> None:
        self.name = config.name
        self.concurrency = config.concurrency
        self._config = config
        self._client = client
        self._clock = clock or SystemClock()

    async def send(self, event: Event) -> None:
        """Deliver one event."""
        body = json.dumps(event_payload(event), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: event.id,
            **self._config.headers,
        }
        if self._config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self._config.bearer_token.get_secret_value()}"
        if self._config.secret is not None:
            timestamp = str(int(self._clock.now().timestamp()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(
                self._config.secret.get_secret_value(), timestamp, body
            )
        try:
            request = self._client.build_request(
                "POST",
                self._config.url,
                content=body,
                headers=headers,
                timeout=self._config.timeout,
            )
        except Exception as exc:  # a request that cannot be built never will be: not retried
            raise DeliveryError(
                f"webhook {self.name}: cannot build the request ({type(exc).__name__})",
                permanent=True,
            ) from None
        try:
            response = await self._client.send(request)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {self.name}: {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise DeliveryError(f"webhook {self.name}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise DeliveryError(f"webhook {self.name}: HTTP {response.status_code}", permanent=True)
