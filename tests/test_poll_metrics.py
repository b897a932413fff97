"""/metrics reads the poll counts from the pipeline's PollStats when Prometheus scrapes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from fakes.fake_bluesky import FakeBluesky
from followerwatch.clock import ManualClock
from followerwatch.config.settings import Config, load_config
from followerwatch.models import Account, Observation, Point
from followerwatch.poll.stats import LATENCY_BUCKETS, PollStats
from followerwatch.service import app as app_module
from followerwatch.service.app import App, account_metrics
from followerwatch.service.metrics import Metrics, PollCollector
from followerwatch.store.pollpoints import PollPoints
from followerwatch.store.schema import poll_point

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: bytes) -> Samples:
    # `_created` is the time a prometheus_client metric object first saw a label set: not a count.
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def poll(platform: str, outcome: str, ms: int, remaining: int | None) -> Point:
    return poll_point(
        platform=platform,
        group="0",
        outcome=outcome,
        time=T0,
        accounts=1,
        observations=1,
        failures=0,
        requests=1,
        duration_ms=ms,
        ratelimit_remaining=remaining,
    )


def batches() -> list[PollPoints]:
    a, b = Account("x", "a", "a"), Account("bluesky", "b.bsky.social", "b.bsky.social")
    return [
        PollPoints([Observation(a, T0, 10)], {}, [poll("x", "ok", 40, 99)]),
        PollPoints([Observation(a, T0, 12)], {}, [poll("x", "partial", 1000, 98)]),
        PollPoints([], {}, [poll("x", "auth", 300_000, None)]),
        PollPoints([Observation(b, T0, 7)], {}, [poll("bluesky", "ok", 301_000, None)]),
        PollPoints([], {}, [poll("bluesky", "error", 2_600, None)]),
    ]


def reference(points: list[PollPoints]) -> bytes:
    """The same polls counted by prometheus_client's own metric objects."""
    registry = CollectorRegistry()
    polls = Counter("followerwatch_polls", "", ["platform", "outcome"], registry=registry)
    seconds = Histogram(
        "followerwatch_poll_duration_seconds",
        "",
        ["platform"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    ratelimit = Gauge("followerwatch_ratelimit_remaining", "", ["platform"], registry=registry)
    followers = Gauge("followerwatch_followers", "", ["platform", "account"], registry=registry)
    for batch in points:
        for obs in batch.observations:
            followers.labels(*obs.account.key).set(obs.followers)
        for point in batch.points:
            tags, fields = dict(point.tags), dict(point.fields)
            polls.labels(tags["platform"], tags["outcome"]).inc()
            duration = fields["duration_ms"]
            assert isinstance(duration, int)
            seconds.labels(tags["platform"]).observe(duration / 1000)
            remaining = fields.get("ratelimit_remaining")
            if isinstance(remaining, int):
                ratelimit.labels(tags["platform"]).set(remaining)
    return generate_latest(registry)


def test_the_poll_collector_reads_what_prometheus_client_would_have_counted() -> None:
    stats = PollStats(now=lambda: 0.0)
    registry = CollectorRegistry()
    registry.register(PollCollector(stats))
    assert samples(generate_latest(registry)) == {}
    for batch in batches():
        stats.stored(batch)
    ours = samples(generate_latest(registry))
    assert ours == samples(reference(batches()))
    assert ours[("followerwatch_polls_total", (("outcome", "ok"), ("platform", "x")))] == 1
    inf = (("le", "+Inf"), ("platform", "bluesky"))
    assert ours[("followerwatch_poll_duration_seconds_bucket", inf)] == 2


def test_the_age_of_the_last_successful_poll() -> None:
    now = [100.0]
    stats = PollStats(now=lambda: now[0])
    now[0] = 130.0
    assert stats.since_success("x") == 30.0  # none yet: since start-up
    stats.stored(PollPoints([], {}, [poll("x", "error", 5, None)]))
    assert stats.since_success("x") == 30.0  # a failed poll is no success
    stats.stored(PollPoints([], {}, [poll("x", "partial", 5, None)]))
    now[0] = 135.0
    assert stats.since_success("x") == 5.0


@pytest.mark.parametrize("account_metrics", ["auto", "off"])
async def test_a_poll_of_the_app_shows_in_its_metrics(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer, account_metrics: str
) -> None:
    clock = ManualClock(T0)
    fake = FakeBluesky(httpserver, clock)
    fake.add(FakeBluesky.make_profile(1, followersCount=250_000))
    handle = "user1.bsky.social"
    config = load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path / "data"), "account_metrics": account_metrics},
            "influxdb": {"url": influx_db[0], "database": influx_db[1]},
            "platforms": {"bluesky": {"base_url": fake.base_url, "interval": "1s"}},
            "watch": [{"platform": "bluesky", "handle": handle}],
        },
    )
    async with App(config, clock=clock) as app:
        metrics = Metrics(app)  # made before the poll: the values are read when rendered
        await app.poll_once()
        m = samples(metrics.render())
    assert m[("followerwatch_polls_total", (("outcome", "ok"), ("platform", "bluesky")))] == 1
    series = ("followerwatch_followers", (("account", handle), ("platform", "bluesky")))
    if account_metrics == "auto":
        assert m[series] == 250_000
    else:
        assert not any(name == "followerwatch_followers" for name, _ in m)
    assert m[("followerwatch_poll_duration_seconds_count", (("platform", "bluesky"),))] == 1
    assert m[("followerwatch_last_successful_poll_age_seconds", (("platform", "bluesky"),))] < 5


def test_per_account_series_are_served_up_to_a_watchlist_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def config(service: dict[str, str], accounts: int = 3) -> Config:
        watch = [{"platform": "bluesky", "handle": f"u{i}.bsky.social"} for i in range(accounts)]
        data = {"data_dir": str(tmp_path / "data")}
        return load_config(None, {"service": data | service, "watch": watch})

    monkeypatch.setattr(app_module, "ACCOUNT_METRICS_AUTO", 3)
    assert account_metrics(config({}))
    assert not account_metrics(config({}, accounts=4))
    assert account_metrics(config({"account_metrics": "on"}, accounts=4))
    assert not account_metrics(config({"account_metrics": "off"}))
    # No /metrics, nobody to read them: not kept at all.
    assert not account_metrics(config({"account_metrics": "on", "ops_address": ""}))
    stats = PollStats(per_account=False)
    for batch in batches():
        stats.stored(batch)
    assert stats.followers == {} and stats.polls[("x", "ok")] == 1
    stats.keep_per_account(True)
    stats.stored(batches()[0])
    assert stats.followers == {("x", "a"): 10}
    stats.keep_per_account(False)
    assert stats.followers == {}
