"""The operations endpoint: /healthz, /readyz and Prometheus /metrics over minimal HTTP/1.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from followerwatch.errors import StoreAuthError, StoreError
from followerwatch.service.metrics import Metrics

if TYPE_CHECKING:
    from followerwatch.service.app import App

log = structlog.get_logger("followerwatch.ops")

READY_EVERY = 5.0
"""Seconds between readiness checks of InfluxDB (a ping and one cheap query)."""
READY_TIMEOUT = 5.0
REQUEST_TIMEOUT = 5.0
MAX_REQUEST = 16_384
# Every Prometheus version reads text format 0.0.4, and every name here is valid in it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def disk_problem(app: App) -> str | None:
    """Why the data folder cannot be written now (readings wait in memory), if it cannot."""
    return app.pipeline.waiting.problem or app.writer.disk_problem


class OpsServer:
    """Serves /healthz, /readyz and /metrics; checks InfluxDB in the background."""

    def __init__(self, app: App, host: str, port: int, running: Callable[[], bool]) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.running = running
        self.metrics = Metrics(app)
        self.influx_problem: str | None = "not checked yet"
        self._server: asyncio.Server | None = None
        self._checker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen (raises OSError when the address is taken) and start the readiness checks."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_REQUEST
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._checker = asyncio.create_task(self._check_loop())

    async def stop(self) -> None:
        """Stop listening and checking."""
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def ready(self) -> bool:
        """Polling runs, InfluxDB checks out and takes our writes, and the disk takes them too."""
        return (
            self.running()
            and self.influx_problem is None
            and not self.app.writer.auth_failed
            and disk_problem(self.app) is None
        )

    async def check_influx(self) -> None:
        """One readiness check of InfluxDB: reachable, credentials accepted, database there."""
        try:
            await asyncio.wait_for(self.app.store.check(), READY_TIMEOUT)
        except TimeoutError:
            problem: str | None = f"no answer within {READY_TIMEOUT:.0f} s"
        except StoreAuthError as exc:
            problem = f"credentials refused: {exc}"
        except StoreError as exc:
            problem = str(exc)
        else:
            problem = None
        if problem != self.influx_problem:
            if problem is None:
                log.info("ready: influxdb reachable")
            else:
                log.warning("not ready: influxdb check failed", error=problem)
        self.influx_problem = problem
        self.metrics.ready.set(1 if self.ready else 0)

    async def _check_loop(self) -> None:
        while True:
            try:
                await self.check_influx()
            except Exception:  # the loop must outlive any one failure
                log.exception("readiness check error")
            await asyncio.sleep(READY_EVERY)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            method, path = _request_line(head)
            status, ctype, body = self._route(method, path)
            writer.write(_response(status, ctype, body, head_only=method == "HEAD"))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that sends no complete request gets no answer
        except ValueError:
            writer.write(_response(400, "text/plain", b"bad request\n"))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            self.metrics.ready.set(1 if self.ready else 0)
            return 200, CONTENT_TYPE, self.metrics.render()
        if path == "/healthz":
            alive = self.running()
            return _json(200 if alive else 503, {"alive": alive})
        if path == "/readyz":
            ready = self.ready
            detail = {
                "ready": ready,
                "polling": self.running(),
                "influxdb": self.influx_problem or "ok",
                "influxdb_auth_refused": self.app.writer.auth_failed,
                "disk": disk_problem(self.app) or "ok",
                "held_in_memory": self.app.buffer.held,
            }
            return _json(200 if ready else 503, detail)
        return 404, "text/plain", b"not found: try /healthz, /readyz or /metrics\n"


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json", (json.dumps(body) + "\n").encode()


def _request_line(head: bytes) -> tuple[str, str]:
    """(method, path without query) from a request head; ValueError when it is not HTTP."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(line)
    return parts[0], parts[1].split("?", 1)[0]


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def _response(status: int, ctype: str, body: bytes, *, head_only: bool = False) -> bytes:
    reason = _REASONS.get(status, "Service Unavailable")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + (b"" if head_only else body)


async def start_ops(app: App, running: Callable[[], bool]) -> OpsServer | None:
    """Start the endpoint at service.ops_address; None when it is off or cannot listen."""
    address = app.config.settings.service.ops_address
    if not address:
        return None
    host, _, port = address.rpartition(":")
    server = OpsServer(app, host.strip("[]"), int(port), running)
    try:
        await server.start()
    except OSError as exc:
        # Polling matters more than the endpoint; a failing health check makes this visible.
        log.error("ops endpoint cannot listen; running without it", address=address, error=str(exc))
        return None
    log.info("ops endpoint listening", address=f"{server.host}:{server.port}")
    return server
