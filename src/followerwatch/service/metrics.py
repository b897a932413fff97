"""Prometheus /metrics: every value read when Prometheus scrapes, from the parts that keep it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from followerwatch.poll.stats import LATENCY_BUCKETS, PollStats

if TYPE_CHECKING:
    from followerwatch.service.app import App

log = structlog.get_logger("followerwatch.ops")


class Metrics:
    """Prometheus metrics: read at scrape time, but for readiness, which the ops server sets."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.registry = CollectorRegistry(auto_describe=True)
        self.ready = Gauge(
            "followerwatch_ready",
            "1 while InfluxDB is reachable with the configured credentials and polling runs.",
            registry=self.registry,
        )
        self.registry.register(PollCollector(app.poll_stats))
        self.registry.register(_Snapshot(app))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


class PollCollector:
    """What stored polls said (the pipeline's PollStats), read when Prometheus scrapes."""

    def __init__(self, stats: PollStats) -> None:
        self.stats = stats

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        polls = CounterMetricFamily(
            "followerwatch_polls",
            "Batch polls by platform and outcome (ok, partial, auth, rate_limited, error).",
            labels=["platform", "outcome"],
        )
        for (platform, outcome), count in sorted(stats.polls.items()):
            polls.add_metric([platform, outcome], count)
        yield polls
        seconds = HistogramMetricFamily(
            "followerwatch_poll_duration_seconds",
            "How long one batch poll took, request(s) included.",
            labels=["platform"],
        )
        # `le` as prometheus_client's Histogram writes it ("1.0", "0.05"): Python's float repr.
        bounds = [repr(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]
        for platform, durations in sorted(stats.durations.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, durations.counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            seconds.add_metric([platform], buckets, durations.total)
        yield seconds
        ratelimit = GaugeMetricFamily(
            "followerwatch_ratelimit_remaining",
            "Requests left in the platform's current rate-limit window, as last reported.",
            labels=["platform"],
        )
        for platform, remaining in sorted(stats.ratelimit.items()):
            ratelimit.add_metric([platform], remaining)
        yield ratelimit
        followers = GaugeMetricFamily(
            "followerwatch_followers",
            "The last count read for each account.",
            labels=["platform", "account"],
        )
        for (platform, account), count in sorted(stats.followers.items()):
            followers.add_metric([platform, account], count)
        yield followers


class _Snapshot:
    """Metrics read from the service's own ledgers when Prometheus scrapes."""

    def __init__(self, app: App) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        # Nothing up front: collect() reads SQLite, which registration must not do.
        return []

    def collect(self) -> Iterator[Metric]:
        app = self.app
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
        for platform in sorted({g.platform for g in app.groups}):
            age.add_metric([platform], app.poll_stats.since_success(platform))
        yield age
        yield from _account_failures(app)
        yield from _replica_metrics(app)


def _replica_metrics(app: App) -> Iterator[Metric]:
    """The PostgreSQL backend: leases, handovers, renewal failures, and state work held."""
    replica = app.replica
    if replica is None:
        return
    leases = replica.leases
    held = GaugeMetricFamily(
        "followerwatch_leases_held", "Virtual shards this replica holds a lease on and polls."
    )
    held.add_metric([], len(replica.loaded))
    yield held
    for name, text, value in (
        ("handovers", "Shards this replica took over from another replica.", leases.handovers),
        (
            "lease_renewal_failures",
            "Lease renewals that could not reach PostgreSQL.",
            leases.renewal_failures,
        ),
        ("lease_claims", "Shard leases this replica claimed.", leases.claims),
    ):
        counter = CounterMetricFamily(f"followerwatch_{name}", text)
        counter.add_metric([], value)
        yield counter
    committer = replica.state.committer
    pending = GaugeMetricFamily(
        "followerwatch_state_pending",
        "Rule-state commits held in memory for PostgreSQL (bounded by state.max_pending).",
    )
    pending.add_metric([], committer.pending)
    yield pending
    lost = CounterMetricFamily(
        "followerwatch_state_dropped",
        "Rule-state commits not written: over max_pending (dropped) or for a shard whose lease "
        "was gone (fenced).",
        labels=["reason"],
    )
    lost.add_metric(["dropped"], committer.dropped)
    lost.add_metric(["fenced"], committer.fenced_drops)
    yield lost


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


def _events_by_kind(app: App) -> list[tuple[str, int]]:
    if app.replica is not None:
        return app.replica.state.event_kinds()
    # A separate read-only connection: the scrape must not share the service's transactions.
    uri = f"file:{app.config.settings.service.data_dir / 'state.sqlite3'}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as db:
            rows = db.execute("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind")
            return [(str(kind), int(n)) for kind, n in rows.fetchall()]
    except sqlite3.Error as exc:
        log.warning("cannot count events for /metrics", error=str(exc))
        return []
