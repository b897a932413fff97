"""The aiohttp engine under the shared httpx client (imported on the first request only).

httpx-aiohttp maps some aiohttp errors loosely and lets others escape, has no write timeout and
hands big bodies to aiohttp as raw bytes; this module fills those gaps.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

MAX_HEADER_BYTES = 100 * 1024
# aiohttp sends bigger bodies in slices of this (it warns about raw bytes over 1 MiB).
BODY_SLICE = 256 * 1024


def _mapped(exc: BaseException) -> httpx.HTTPError | None:
    """The httpx error an aiohttp (or socket) error stands for; None when it is neither."""
    message = str(exc) or type(exc).__name__
    table: tuple[tuple[type[BaseException], type[httpx.HTTPError]], ...] = (
        (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
        (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
        (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
        (aiohttp.ClientConnectorError, httpx.ConnectError),
        (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
        (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError, httpx.ReadError),
        (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
        (TimeoutError, httpx.ReadTimeout),
        (aiohttp.ClientError, httpx.NetworkError),
        (OSError, httpx.NetworkError),
    )
    for source, target in table:
        if isinstance(exc, source):
            return target(message)
    return None


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """Every aiohttp error as the httpx error it stands for.

    Sources, notifiers and the store classify httpx errors (a timeout is not a refused
    connection); httpx-aiohttp maps some errors loosely (a disconnect becomes ConnectTimeout)
    and lets others escape (a malformed response), so the original error decides here.
    """
    try:
        yield
    except httpx.HTTPError as exc:
        better = _mapped(exc.__cause__) if exc.__cause__ is not None else None
        if better is None:
            raise
        raise better from exc.__cause__
    except (aiohttp.ClientError, OSError) as exc:
        better = _mapped(exc)
        assert better is not None
        raise better from exc


class _Stream(httpx.AsyncByteStream):
    """A response body whose read errors are httpx errors too, read by the request's deadline."""

    def __init__(self, inner: httpx.AsyncByteStream, deadline: float | None) -> None:
        self._inner = inner
        # A loop time: a body trickled a byte at a time never trips the per-read timeout.
        self._deadline = deadline

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            chunks = aiter(self._inner)
            while True:
                try:
                    # Only the wait for a chunk is timed, never the reader's work between them.
                    async with asyncio.timeout_at(self._deadline):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise httpx.ReadTimeout("the body did not arrive by the deadline") from None
                yield chunk

    async def aclose(self) -> None:
        with _as_httpx_errors():
            await self._inner.aclose()


class _Chunks(httpx.AsyncByteStream):
    """A body handed to aiohttp in slices."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        view = memoryview(self._body)
        for start in range(0, len(view), BODY_SLICE):
            yield bytes(view[start : start + BODY_SLICE])


def _streamed(request: httpx.Request) -> httpx.Request:
    """`request` with a big body as a stream: aiohttp warns of (and blocks on) big raw bytes."""
    try:
        body = request.content
    except httpx.RequestNotRead:
        return request
    if len(body) <= BODY_SLICE:
        return request
    # The headers keep the Content-Length httpx set, so the body is not sent chunked.
    return httpx.Request(
        request.method,
        request.url,
        headers=request.headers,
        stream=_Chunks(body),
        extensions=request.extensions,
    )


class AiohttpEngine(AiohttpTransport):
    """httpx-aiohttp's transport with every aiohttp error mapped and no second cookie jar."""

    def __init__(
        self, limits: httpx.Limits, verify: ssl.SSLContext | str | bool = True, cert: Any = None
    ) -> None:
        super().__init__(verify=verify, cert=cert, limits=limits, client=self._session)

    def _session(self) -> aiohttp.ClientSession:
        # Created on the first request, inside the running loop (aiohttp requires one).
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry or 0,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # httpx keeps the cookies; aiohttp's own jar would send them a second time.
            cookie_jar=aiohttp.DummyCookieJar(),
            # aiohttp refuses a header line over 8 KiB; httpx's own transport took 100 KiB.
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request on the aiohttp session."""
        # aiohttp has no write timeout: a server that stops reading a big body (an InfluxDB
        # batch) would hold the request forever. Bound the whole exchange up to the response
        # head by the sum of httpx's timeouts instead; the body must have arrived by then too.
        request = _streamed(request)
        phases = request.extensions.get("timeout", {})
        values = [phases.get(k) for k in ("pool", "connect", "write", "read")]
        bound = sum(v for v in values if v is not None) if None not in values else None
        deadline = None if bound is None else asyncio.get_running_loop().time() + bound
        try:
            async with asyncio.timeout(bound):
                with _as_httpx_errors():
                    response = await super().handle_async_request(request)
        except TimeoutError:
            raise httpx.WriteTimeout(f"no response within {bound} s") from None
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Stream(response.stream, deadline)
        return response

    async def aclose(self) -> None:
        """Close the aiohttp session (and its connections), if one was opened."""
        if isinstance(self.client, aiohttp.ClientSession):
            await self.client.close()
        # Without a session yet, nothing is open; and none may be opened after closing.
        self.client = _closed


def _closed() -> aiohttp.ClientSession:
    raise httpx.TransportError("the HTTP client is closed")
