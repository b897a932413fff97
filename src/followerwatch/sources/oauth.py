"""App-only OAuth tokens (client-credentials grant), fetched lazily and refreshed before expiry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from followerwatch.clock import Clock
from followerwatch.errors import AuthError, TransientError
from followerwatch.sources.common import Requester, Tally, json_object

# Stop using a token this long before its stated expiry, so no request races the deadline.
REFRESH_MARGIN = 300.0
MAX_LIFETIME = 86_400.0
"""The longest token lifetime believed, in seconds; the token is fetched again after it."""
_MASK = "***"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced, for messages built from what a server said."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _MASK)
    return text


def server_message(body: Mapping[str, Any], secrets: Iterable[str] = ()) -> str:
    """The first explanatory string of an error body, short and with secrets masked."""
    for name in ("message", "error_description", "reason", "error"):
        value = body.get(name)
        if isinstance(value, str) and value:
            return scrub(value[:200], secrets)
    return ""


class ClientCredentials:
    """One app access token: asked for on first use, again before it expires or when refused."""

    def __init__(
        self,
        requester: Requester,
        clock: Clock,
        url: str,
        *,
        platform: str,
        data: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self._requester = requester
        self._clock = clock
        self._url = url
        self._platform = platform
        self._data = dict(data)
        self._headers = dict(headers or {})
        self._auth = auth
        self._secrets = tuple(secrets)
        self._token: str | None = None
        self._refresh_at: datetime | None = None

    def invalidate(self) -> None:
        """Forget the token, e.g. after the API refused it; the next use fetches a new one."""
        self._token = None
        self._refresh_at = None

    async def token(self, tally: Tally) -> str:
        """A token that is not about to expire, fetching one if needed."""
        if (
            self._token is not None
            and self._refresh_at is not None
            and self._clock.now() < self._refresh_at
        ):
            return self._token
        self.invalidate()
        kwargs: dict[str, Any] = {"data": self._data, "headers": self._headers}
        if self._auth is not None:
            kwargs["auth"] = httpx.BasicAuth(*self._auth)
        # The secret travels in the form body or Basic auth, never in the URL, so it can't leak
        # through a logged URL.
        response, received = await self._requester.send(
            "POST", self._url, tally, bucket="token", **kwargs
        )
        body = json_object(response)
        if response.status_code in (400, 401, 403) or (
            response.status_code == 200 and "error" in body and "access_token" not in body
        ):
            detail = server_message(body, self._secrets)
            suffix = f": {detail}" if detail else ""
            raise AuthError(
                f"{self._platform} refused the client credentials "
                f"(HTTP {response.status_code}{suffix})"
            )
        if response.status_code != 200:
            raise TransientError(
                f"{self._platform} token endpoint answered HTTP {response.status_code}"
            )
        value = body.get("access_token")
        expires_in = body.get("expires_in")
        if not isinstance(value, str) or not value:
            raise TransientError(f"{self._platform} token endpoint answered without access_token")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            raise TransientError(f"{self._platform} token endpoint answered without expires_in")
        # A lifetime past a day is not believed (1e300 would overflow the refresh stamp).
        lifetime = min(max(0.0, float(expires_in)), MAX_LIFETIME)
        margin = min(REFRESH_MARGIN, lifetime / 2)
        self._token = value
        self._refresh_at = received + timedelta(seconds=lifetime - margin)
        return value
