"""The operations endpoint: /healthz, /readyz and Prometheus /metrics over minimal HTTP/1.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from followerwatch.errors import StoreAuthError, StoreError
from followerwatch.models import Point
from followerwatch.store.schema import FOLLOWERS, POLLS
from followerwatch.store.writer import PollPoints

if TYPE_CHECKING:
    from followerwatch.service.app import App
    from followerwatch.store.writer import Writer

log = structlog.get_logger("followerwatch.ops")

READY_EVERY = 5.0
"""Seconds between readiness checks of InfluxDB (a ping and one cheap query)."""
READY_TIMEOUT = 5.0
REQUEST_TIMEOUT = 5.0
MAX_REQUEST = 16_384
# Every Prometheus version reads text format 0.0.4, and every name here is valid in it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SUCCESS = frozenset({"ok", "partial"})
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Prometheus metrics: poll results as they are written, the rest read at scrape time."""

    def __init__(self, app: App, now: Callable[[], float] = time.time) -> None:
        self.app = app
        self._now = now
        self._started = now()
        self.last_success: dict[str, float] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.polls = Counter(
            "followerwatch_polls",
            "Batch polls by platform and outcome (ok, partial, auth, rate_limited, error).",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.poll_seconds = Histogram(
            "followerwatch_poll_duration_seconds",
            "How long one batch poll took, request(s) included.",
            ["platform"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ratelimit = Gauge(
            "followerwatch_ratelimit_remaining",
            "Requests left in the platform's current rate-limit window, as last reported.",
            ["platform"],
            registry=self.registry,
        )
        self.followers = Gauge(
            "followerwatch_followers",
            "The last count read for each account.",
            ["platform", "account"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "followerwatch_ready",
            "1 while InfluxDB is reachable with the configured credentials and polling runs.",
            registry=self.registry,
        )
        self.registry.register(_Snapshot(self))

    def observe(self, points: Sequence[Point]) -> None:
        """Count what a batch of points says about polls and follower counts."""
        if isinstance(points, PollPoints):
            # A poll's counts straight from its observations: iterating would build the Points
            # the writer's line encoding exists to skip.
            for obs in points.observations:
                self.followers.labels(obs.account.platform, obs.account.name).set(obs.followers)
            points = points.points
        for point in points:
            tags = dict(point.tags)
            fields = dict(point.fields)
            if point.measurement == POLLS:
                platform, outcome = tags["platform"], tags["outcome"]
                self.polls.labels(platform, outcome).inc()
                duration = fields.get("duration_ms")
                if isinstance(duration, int):
                    self.poll_seconds.labels(platform).observe(duration / 1000)
                remaining = fields.get("ratelimit_remaining")
                if isinstance(remaining, int):
                    self.ratelimit.labels(platform).set(remaining)
                if outcome in _SUCCESS:
                    self.last_success[platform] = self._now()
            elif point.measurement == FOLLOWERS:
                count = fields.get("followers")
                if isinstance(count, int):
                    self.followers.labels(tags["platform"], tags["account"]).set(count)

    def attach(self, writer: Writer) -> None:
        """Observe every list of points the writer is handed."""
        original = writer.write

        async def write(points: Sequence[Point]) -> None:
            self.observe(points)
            await original(points)

        # Every poll's health point passes through the writer, so tapping it here sees each
        # poll without a metrics hook in the poll path itself.
        setattr(writer, "write", write)  # noqa: B010

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


class _Snapshot:
    """Metrics read from the service's own ledgers when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        # Nothing up front: collect() reads SQLite, which registration must not do.
        return []

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        app = m.app
        counts = app.writer.counts()
        spooled = GaugeMetricFamily(
            "followerwatch_spool_points", "Points waiting in the local spool for InfluxDB."
        )
        spooled.add_metric([], counts.spooled)
        yield spooled
        ledger = CounterMetricFamily(
            "followerwatch_spool",
            "The spool ledger: points added, written to InfluxDB, dropped (spool full), "
            "dropped_disk_full (disk and memory buffer full) and dead-lettered (rejected by "
            "InfluxDB).",
            labels=["state"],
        )
        for state, value in (
            ("added", counts.added),
            ("written", counts.written),
            ("dropped", counts.dropped),
            ("dead_lettered", counts.dead_lettered),
            ("dropped_disk_full", counts.dropped_disk_full),
        ):
            ledger.add_metric([state], value)
        yield ledger
        yield from _disk_metrics(app)
        pending = GaugeMetricFamily(
            "followerwatch_alerts_pending", "Alert deliveries waiting to be sent (or retried)."
        )
        pending.add_metric([], app.state.deliveries.delivery_counts().get("pending", 0))
        yield pending
        events = CounterMetricFamily(
            "followerwatch_events",
            "Events raised, by kind (kept in the state database).",
            labels=["kind"],
        )
        for kind, count in _events_by_kind(app):
            events.add_metric([kind], count)
        yield events
        yield from _suspects(app)
        age = GaugeMetricFamily(
            "followerwatch_last_successful_poll_age_seconds",
            "Seconds since a poll of the platform last succeeded (since start-up if none has).",
            labels=["platform"],
        )
        now = m._now()
        for platform in sorted({g.platform for g in app.groups}):
            age.add_metric([platform], now - m.last_success.get(platform, m._started))
        yield age
        yield from _account_failures(app)


def _account_failures(app: App) -> Iterator[Metric]:
    """Per-account failures by platform and kind: accounts failing now, and reads failed."""
    failures = app.account_failures
    failing = GaugeMetricFamily(
        "followerwatch_accounts_failing",
        "Accounts whose last answered poll failed, by platform and kind "
        "(not_found, suspended, malformed, ...).",
        labels=["platform", "kind"],
    )
    for (platform, kind), count in failures.failing().items():
        failing.add_metric([platform, kind], count)
    yield failing
    total = CounterMetricFamily(
        "followerwatch_account_failures",
        "Account reads that failed since start, by platform and kind.",
        labels=["platform", "kind"],
    )
    for (platform, kind), count in failures.totals().items():
        total.add_metric([platform, kind], count)
    yield total


def _suspects(app: App) -> Iterator[Metric]:
    """Accounts held on a suspect fall to 0 (per platform only: no per-account label)."""
    suspects = app.pipeline.suspects
    held = suspects.by_platform()
    platforms = sorted({g.platform for g in app.groups} | set(held))
    gauge = GaugeMetricFamily(
        "followerwatch_suspect_zero_accounts",
        "Accounts whose fall to exactly 0 is held as suspect until it has lasted zero_confirm.",
        labels=["platform"],
    )
    for platform in platforms:
        gauge.add_metric([platform], held.get(platform, 0))
    yield gauge
    ended = CounterMetricFamily(
        "followerwatch_suspect_zeros",
        "Suspect falls to 0 that ended: confirmed (written) or recovered (held zeros dropped).",
        labels=["platform", "outcome"],
    )
    for platform in sorted(set(platforms) | {p for p, _ in suspects.outcomes}):
        for outcome in ("confirmed", "recovered"):
            ended.add_metric([platform, outcome], suspects.outcomes[(platform, outcome)])
    yield ended


def _disk_metrics(app: App) -> Iterator[Metric]:
    """What a full disk keeps in memory, and the readings it made us drop."""
    held = GaugeMetricFamily(
        "followerwatch_memory_buffer_readings",
        "Readings held in memory because the data folder's disk is full (service.memory_buffer).",
    )
    held.add_metric([], app.buffer.held)
    yield held
    dropped = CounterMetricFamily(
        "followerwatch_readings_dropped_disk_full",
        "Readings dropped since start because the disk and the memory buffer were full.",
    )
    dropped.add_metric([], app.buffer.dropped)
    yield dropped


def disk_problem(app: App) -> str | None:
    """Why the data folder cannot be written now (readings wait in memory), if it cannot."""
    return app.pipeline.waiting.problem or app.writer.disk_problem


def _events_by_kind(app: App) -> list[tuple[str, int]]:
    # A separate read-only connection: the scrape must not share the service's transactions.
    uri = f"file:{app.state.path}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as db:
            rows = db.execute("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind")
            return [(str(kind), int(n)) for kind, n in rows.fetchall()]
    except sqlite3.Error as exc:
        log.warning("cannot count events for /metrics", error=str(exc))
        return []


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
        self.metrics.attach(self.app.writer)
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
