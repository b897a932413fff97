"""The one shared httpx.AsyncClient: explicit timeouts, pool limits, an honest User-Agent.

Requests go through httpx's API on aiohttp's engine (httpx-aiohttp, see http_aiohttp.py), which
costs less than half the CPU per request of httpx's own transport. The engine is imported on the
first request: aiohttp takes a tenth of a second to import, which commands that send nothing
should not pay. Proxies from the environment still work: httpx mounts its own transport for
proxied URLs, so only direct requests take the aiohttp path.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import httpx

from followerwatch import __version__

if TYPE_CHECKING:
    from followerwatch.net.http_aiohttp import AiohttpEngine

USER_AGENT = f"followerwatch/{__version__} (+https://github.com/followerwatch/followerwatch)"
CONNECT_TIMEOUT = 5.0
MAX_CONNECTIONS = 50
MAX_KEEPALIVE = 20


class FastTransport(httpx.AsyncBaseTransport):
    """The aiohttp engine, created (and aiohttp imported) when the first request is sent."""

    def __init__(
        self, limits: httpx.Limits, verify: ssl.SSLContext | str | bool = True, cert: Any = None
    ) -> None:
        self._args = (limits, verify, cert)
        self.engine: AiohttpEngine | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request on the engine."""
        if self._closed:
            raise httpx.TransportError("the HTTP client is closed")
        if self.engine is None:
            from followerwatch.net.http_aiohttp import AiohttpEngine

            self.engine = AiohttpEngine(*self._args)
        return await self.engine.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the engine (its session and connections), if one was started."""
        self._closed = True
        if self.engine is not None:
            await self.engine.aclose()


class _Cookies(httpx.Cookies):
    """httpx's cookies, with the jar consulted only for a response that sets a cookie."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep the cookies a response sets; one that sets none costs nothing."""
        # httpx hands every response to the stdlib jar through a urllib request re-parsing the
        # whole URL (a long query per group): a third of a millisecond for nothing to keep.
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class _Client(httpx.AsyncClient):
    """httpx's client with FastTransport as its default transport.

    The default is chosen here rather than passed as `transport=` because httpx ignores the
    environment's proxies when a transport is passed; this way proxied URLs still get httpx's
    own proxy transport, exactly as before.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _Cookies(self._cookies)

    def _init_transport(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx.Limits(),  # noqa: B008 (httpx passes it; never mutated)
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.AsyncBaseTransport:
        if transport is not None:
            return transport
        return FastTransport(limits, verify, cert)


def build_client(
    transport: httpx.AsyncBaseTransport | None = None, timeout: float = 15.0
) -> httpx.AsyncClient:
    """The client every source, store and notifier shares; `transport` is the test seam."""
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE)
    return _Client(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
        limits=limits,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )
