"""The shared client on the aiohttp engine: timeouts, errors, redirects, cookies, proxies."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from followerwatch.clock import ManualClock
from followerwatch.errors import TransientError
from followerwatch.models import Account
from followerwatch.net.http import USER_AGENT, FastTransport, build_client
from followerwatch.sources.common import MAX_BODY_BYTES
from followerwatch.sources.x import XSource

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP server running `handler` per connection; (base URL, one entry per connection)."""
    connections: list[int] = []
    tasks: list[asyncio.Task[None]] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        # Handlers still sleeping (the hanging servers) would leave their sockets open.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_the_default_transport_is_aiohttp_and_the_seam_overrides_it() -> None:
    async with build_client() as client:
        assert isinstance(client._transport, FastTransport)
    seam = httpx.MockTransport(lambda request: httpx.Response(204))
    async with build_client(seam) as client:
        assert (await client.get("http://example.invalid/")).status_code == 204


async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(30)

    async with raw_server(hang) as (url, _), build_client(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url + "/x")


async def test_a_body_that_stalls_is_a_read_timeout() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(30)

    async with raw_server(stall) as (url, _), build_client(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url + "/x")


async def test_a_trickled_body_is_a_read_timeout_at_the_requests_deadline() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"7")
            await writer.drain()
            await asyncio.sleep(0.05)  # never long enough for the 0.1 s read timeout

    async with raw_server(trickle) as (url, _), build_client() as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            # pool + connect + write + read: 0.4 s for the whole exchange, not 5 s of trickle.
            await client.get(url + "/x", timeout=0.1)
        assert asyncio.get_running_loop().time() - started < 1.5


async def test_refused_disconnected_and_malformed_answers_are_httpx_errors() -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}")
        await writer.drain()

    async with build_client(timeout=2) as client:
        server = await asyncio.start_server(close, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")
        async with raw_server(close) as (url, _):
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(url + "/")
        async with raw_server(garbage) as (url, _):
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(url + "/")
        async with raw_server(truncated) as (url, _):
            with pytest.raises(httpx.ReadError):
                await client.get(url + "/")


async def test_connections_are_kept_alive_between_requests() -> None:
    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_head(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with raw_server(keep) as (url, connections), build_client() as client:
        for _ in range(5):
            assert (await client.get(url + "/")).text == "ok"
        assert len(connections) == 1


async def test_redirects_are_not_followed_and_headers_arrive(httpserver: HTTPServer) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response("", status=302, headers={"Location": "/elsewhere"})

    httpserver.expect_request("/start").respond_with_handler(handler)
    async with build_client() as client:
        response = await client.get(httpserver.url_for("/start"), headers={"X-Test": "1"})
    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere"
    assert len(seen) == 1
    assert seen[0].headers["User-Agent"] == USER_AGENT
    assert seen[0].headers["X-Test"] == "1"


async def test_a_cookie_is_sent_once_not_by_both_jars(httpserver: HTTPServer) -> None:
    cookies: list[str | None] = []

    def handler(request: Request) -> Response:
        cookies.append(request.headers.get("Cookie"))
        return Response("", headers={"Set-Cookie": "session=abc; Path=/"})

    httpserver.expect_request("/c").respond_with_handler(handler)
    async with build_client() as client:
        await client.get(httpserver.url_for("/c"))
        await client.get(httpserver.url_for("/c"))
    assert cookies == [None, "session=abc"]


async def test_a_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        lines.append(head.split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nproxied")
        await writer.drain()

    async with raw_server(proxy) as (url, _):
        monkeypatch.setenv("HTTP_PROXY", url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with build_client() as client:
            response = await client.get("http://api.example.invalid/v1/x")
    assert response.text == "proxied"
    assert lines == [b"GET http://api.example.invalid/v1/x HTTP/1.1"]


async def test_closing_closes_the_session_without_warnings(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("ok")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = build_client()
        assert (await client.get(httpserver.url_for("/"))).text == "ok"
        transport = client._transport
        assert isinstance(transport, FastTransport)
        assert transport.engine is not None
        session = transport.engine.client
        await client.aclose()
        del client, transport
        gc.collect()
    assert getattr(session, "closed", False) is True
    assert [str(w.message) for w in caught if "nclosed" in str(w.message)] == []


async def test_the_body_cap_holds_on_this_transport(httpserver: HTTPServer) -> None:
    accounts = [Account("x", "user_0", "user_0")]
    httpserver.expect_request("/2/users/by").respond_with_data(
        "[" + "1," * (MAX_BODY_BYTES // 2) + "1]", content_type="application/json"
    )
    async with build_client() as client:
        source = XSource(
            client,
            bearer_token="t",
            clock=ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
            base_url=httpserver.url_for("").rstrip("/"),
            max_wait=0,
        )
        with pytest.raises(TransientError, match="oversized"):
            await source.fetch(accounts)


async def test_a_long_header_is_read_as_httpx_read_it() -> None:
    cookie = "a" * 20_000

    async def long_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nX-Long: {cookie}\r\nContent-Length: 2\r\n\r\nok".encode())
        await writer.drain()

    async with raw_server(long_header) as (url, _), build_client() as client:
        response = await client.get(url + "/")
    assert response.headers["x-long"] == cookie and response.text == "ok"


async def test_a_server_that_stops_reading_the_body_times_out() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(30)  # never reads the body: the client's writes back up

    async with raw_server(deaf) as (url, _), build_client(timeout=0.3) as client:
        with pytest.raises(httpx.WriteTimeout):
            await asyncio.wait_for(client.post(url + "/write", content=b"x" * 64_000_000), 20)


async def test_a_big_body_arrives_whole_and_unchunked(httpserver: HTTPServer) -> None:
    body = bytes(range(256)) * 20_000  # 5 MB, past aiohttp's 1 MiB warning
    seen: list[tuple[bytes, str | None, str | None]] = []

    def handler(request: Request) -> Response:
        seen.append(
            (
                request.get_data(),
                request.headers.get("Content-Length"),
                request.headers.get("Transfer-Encoding"),
            )
        )
        return Response("ok")

    httpserver.expect_request("/write", method="POST").respond_with_handler(handler)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        async with build_client() as client:
            response = await client.post(httpserver.url_for("/write"), content=body)
    assert response.text == "ok"
    assert seen == [(body, str(len(body)), None)]


def test_aiohttp_is_imported_only_by_a_request() -> None:
    probe = (
        "import sys, followerwatch.cli.main\n"
        "import followerwatch.service.app, followerwatch.service.serve\n"
        "from followerwatch.net.http import build_client\n"
        "build_client()\n"
        "print('aiohttp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class CountingJar(CookieJar):
    """The stdlib jar, counting the responses it was asked to read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def extract_cookies(self, response: Any, request: Any) -> None:
        self.reads += 1
        super().extract_cookies(response, request)


async def test_only_a_response_that_sets_a_cookie_goes_to_the_jar(httpserver: HTTPServer) -> None:
    cookies: list[str | None] = []

    def handler(request: Request) -> Response:
        cookies.append(request.headers.get("Cookie"))
        if request.args.get("set"):
            return Response("", headers={"Set-Cookie": f"session={request.args['set']}; Path=/"})
        return Response("")

    httpserver.expect_request("/c").respond_with_handler(handler)
    jar = CountingJar()
    async with build_client() as client:
        client.cookies.jar = jar
        for query in ("", "?set=abc", "", "?set=def", ""):
            await client.get(httpserver.url_for("/c") + query)
    # The cookie a response set is sent, replaced when reset, and kept over responses without.
    assert cookies == [None, None, "session=abc", "session=abc", "session=def"]
    assert jar.reads == 2
