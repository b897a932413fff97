"""The one shared httpx.AsyncClient: explicit timeouts, pool limits, an honest User-Agent."""

from __future__ import annotations

import httpx

from followerwatch import __version__

USER_AGENT = f"followerwatch/{__version__} (+https://github.com/followerwatch/followerwatch)"


def build_client(
    transport: httpx.AsyncBaseTransport | None = None, timeout: float = 15.0
) -> httpx.AsyncClient:
    """The client every source, store and notifier shares; `transport` is the test seam."""
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=5.0),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )
