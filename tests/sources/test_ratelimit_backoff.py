"""An absurd wait never stops polling: beyond `max_backoff` no reset is believed, the platform is
retried once per `max_backoff`, that is logged once, and other groups and platforms keep going."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from pytest_httpserver import HTTPServer

from fakes.fake_bluesky import FakeBluesky
from fakes.fake_x import START, TOKEN, FakeX, make_user
from followerwatch.clock import ManualClock
from followerwatch.config.settings import load_config
from followerwatch.errors import ConfigError
from followerwatch.service.app import App

YEAR_9999 = "253402300799"  # 9999-12-31 23:59:59 UTC
ABSURD = {
    "retry-after": {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},
    "x-rate-limit-reset": {
        "x-rate-limit-limit": "300",
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": YEAR_9999,
    },
}


@pytest.mark.parametrize("header", list(ABSURD))
async def test_an_absurd_wait_is_cut_to_max_backoff_and_logged_once(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer, header: str
) -> None:
    clock = ManualClock(START)
    x = FakeX(httpserver, clock)
    users = [make_user(i) for i in range(200)]  # two X batch groups
    x.add(*users)
    # The first two X answers name a wait until the year 9999; the third is a normal answer.
    for _ in range(2):
        x.serve(429, x.load("rate_limited_code88.json"), ABSURD[header])
    bluesky = FakeBluesky(httpserver, clock)
    bluesky.add(profile := bluesky.make_profile(1))
    config = load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path / "data")},
            "influxdb": {"url": influx_db[0], "database": influx_db[1]},
            "platforms": {
                "x": {"bearer_token": TOKEN, "base_url": x.base_url, "interval": "2m"},
                "bluesky": {"base_url": bluesky.base_url, "interval": "2m"},
            },
            "watch": [{"platform": "x", "handle": u["username"]} for u in users]
            + [{"platform": "bluesky", "handle": profile["handle"]}],
        },
    )
    polls = []
    with structlog.testing.capture_logs() as logs:
        async with App(config, clock=clock) as app:
            for _ in range(20):  # every 2 minutes for 40 minutes
                polls.append(await app.poll_once())
                clock.advance(120)
    x_times = [(s.time - START).total_seconds() for s in x.seen]
    # Once per max_backoff: at 0 s, then at the first poll after 900 s (+1 s margin) had passed,
    # then (the platform answering normally again) one request per group per poll.
    assert x_times[:3] == [0, 960, 1920]
    assert x_times[3:] == [t for t in range(1920, 2400, 120) for _ in range(2)][1:]
    for rows in polls[:16]:  # never stuck: every poll of both X groups said "rate_limited"
        x_rows = [r for r in rows if r.platform == "x"]
        assert len(x_rows) == 200
        assert all(r.followers is None and "rate_limited" in (r.failure or "") for r in x_rows)
    for rows in polls[16:]:
        assert all(r.followers is not None for r in rows)
    # Bluesky was polled on time throughout.
    assert len(bluesky.seen) == 20
    assert all([r.followers for r in rows if r.platform == "bluesky"] == [513] for rows in polls)
    cut = [e for e in logs if e["event"] == "rate-limit wait not believed"]
    assert len(cut) == 1
    assert cut[0]["platform"] == "x" and cut[0]["asked_until"].startswith("9999-12-31T23:59:59")
    assert cut[0]["retry_at"] == (START + timedelta(seconds=900)).isoformat()
    assert config.settings.platform("x").max_backoff == 900  # X's documented window


@pytest.mark.parametrize(
    ("platform", "window"),
    [
        ("x", 900),  # 300 per 15 min
        ("mastodon", 300),  # 300 per 5 min
        ("bluesky", 900),  # no published figure: the 15-minute default
        ("youtube", 86_400),  # a daily quota
        ("github", 3_600),  # 5,000 per hour
        ("twitch", 60),  # 800 points a minute
        ("reddit", 600),  # counted over 10-minute periods
        ("http_json", 900),  # unknown API: the 15-minute default
    ],
)
def test_max_backoff_defaults_to_the_documented_window(platform: str, window: int) -> None:
    config = load_config(None, {"platforms": {platform: {}}})
    assert config.settings.platform(platform).max_backoff == window
    changed = load_config(None, {"platforms": {platform: {"max_backoff": "1h"}}})
    assert changed.settings.platform(platform).max_backoff == 3_600


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0s", "at least 1s"), ("500ms", "at least 1s"), ("400d", "longer than 366 days")],
)
def test_max_backoff_out_of_range_is_refused(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"platforms\.x\.max_backoff: .*{problem}"):
        load_config(None, {"platforms": {"x": {"max_backoff": value}}})
