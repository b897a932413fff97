"""The `webhook` notifier: POST the documented JSON payload."""

from __future__ import annotations

from typing import ClassVar, Literal

import httpx
from pydantic import Field, SecretStr

from followerwatch.configbase import Duration, HttpUrl, StrictModel
from followerwatch.errors import DeliveryError
from followerwatch.models import Event
from followerwatch.notify.base import event_payload


class WebhookConfig(StrictModel):
    """`[[notifiers]] type = "webhook"`; `bearer_token` (or `bearer_token_file`) is optional."""

    type: Literal["webhook"]
    name: str = "webhook"
    url: HttpUrl
    timeout: Duration = 10.0
    retries: int = Field(default=3, ge=0, le=10)
    bearer_token: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    def secrets(self) -> list[str]:
        """The bearer token, if any."""
        return [self.bearer_token.get_secret_value()] if self.bearer_token else []


class WebhookNotifier:
    """POSTs each event as JSON; 5xx and network errors are retryable, 4xx are permanent."""

    key: ClassVar[str] = "webhook"

    def __init__(self, config: WebhookConfig, client: httpx.AsyncClient) -> None:
        self.name = config.name
        self.retries = config.retries
        self._config = config
        self._client = client

    async def send(self, event: Event) -> None:
        headers = {"Content-Type": "application/json", **self._config.headers}
        if self._config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self._config.bearer_token.get_secret_value()}"
        try:
            response = await self._client.post(
                self._config.url,
                json=event_payload(event),
                headers=headers,
                timeout=self._config.timeout,
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {self.name}: {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise DeliveryError(f"webhook {self.name}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise DeliveryError(f"webhook {self.name}: HTTP {response.status_code}", permanent=True)
