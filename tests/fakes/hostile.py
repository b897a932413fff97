"""A raw local HTTP server giving every request the same hostile answer (asyncio, no framework).

pytest-httpserver (werkzeug) answers in its own thread and cannot trickle a body byte by byte
or stream one for ever; this one runs in the test's event loop and can.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """What the server sends: a status, headers and a body, whole, trickled or endless."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    # Seconds between single bytes of the body, when it trickles.
    trickle: float | None = None
    # Chunks of CHUNK bytes for ever (chunked encoding) instead of `body`.
    endless: bool = False


@dataclass
class RawServer:
    """Answers every request on 127.0.0.1 with `answer`; counts requests and body bytes sent."""

    answer: Answer = field(default_factory=Answer)
    requests: int = 0
    sent: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            # Cancelled by __aexit__ when a client gave up on a trickle: that is the end of it.
            with contextlib.suppress(
                ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError
            ):
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        await reader.readexactly(int(value))
                self.requests += 1
                await self._answer(writer)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _answer(self, writer: asyncio.StreamWriter) -> None:
        a = self.answer
        lines = [f"HTTP/1.1 {a.status} Hostile", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in a.headers]
        lines.append(
            "Transfer-Encoding: chunked" if a.endless else f"Content-Length: {len(a.body)}"
        )
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        if a.endless:
            chunk = f"{CHUNK:x}\r\n".encode() + b"7" * CHUNK + b"\r\n"
            while True:
                writer.write(chunk)
                await writer.drain()
                self.sent += CHUNK
        elif a.trickle is not None:
            for i in range(len(a.body)):
                writer.write(a.body[i : i + 1])
                await writer.drain()
                self.sent += 1
                await asyncio.sleep(a.trickle)
        else:
            writer.write(a.body)
            await writer.drain()
            self.sent += len(a.body)
