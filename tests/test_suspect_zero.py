"""A fall to exactly 0 is held as suspect until it has lasted `zero_confirm`, across runs too."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs

from fakes.fake_bluesky import FakeBluesky
from followerwatch.clock import ManualClock, SystemClock
from followerwatch.config.settings import load_config
from followerwatch.service.app import App
from followerwatch.service.metrics import Metrics
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from service_proc import run_cli

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HANDLE = "user1.bsky.social"
KEY = ("bluesky", HANDLE)


def glitch(profile: dict[str, Any]) -> None:
    """The profile as the AppView served it during the glitch: every count 0."""
    profile.update(followersCount=0, followsCount=0, postsCount=0)


async def followers(url: str, db: str) -> list[tuple[datetime, int]]:
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=url, database=db)
        series = await store.query("SELECT followers FROM followers", epoch=None)
    values = series[0]["values"] if series else []
    return [(datetime.fromisoformat(t.replace("Z", "+00:00")), n) for t, n in values]


@pytest.fixture
async def bluesky(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> AsyncIterator[tuple[App, FakeBluesky, dict[str, Any], ManualClock]]:
    """An App polling one Bluesky account at 250,000 on the fake AppView, on a manual clock."""
    clock = ManualClock(T0)
    fake = FakeBluesky(httpserver, clock)
    profile = FakeBluesky.make_profile(1, followersCount=250_000)
    fake.add(profile)
    config = load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path / "data")},
            "influxdb": {"url": influx_db[0], "database": influx_db[1]},
            "platforms": {"bluesky": {"base_url": fake.base_url, "interval": "1s"}},
            "watch": [{"platform": "bluesky", "handle": HANDLE, "below": 100_000}],
        },
    )
    async with App(config, clock=clock) as app:
        yield app, fake, profile, clock


def gauge(app: App) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = Metrics(app).render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("followerwatch_suspect")
    }


async def test_eight_seconds_of_zeros_are_held_then_dropped_when_the_count_returns(
    bluesky: tuple[App, FakeBluesky, dict[str, Any], ManualClock], influx_db: tuple[str, str]
) -> None:
    app, _, profile, clock = bluesky
    await app.poll_once()
    glitch(profile)
    held = []
    with capture_logs() as logs:
        for _ in range(8):  # the glitch as seen: 8 s of zeros, polled every second
            clock.advance(1)
            held += await app.poll_once()
    assert [e["event"] for e in logs if "suspect" in e["event"]] == ["fall to 0 held as suspect"]
    assert app.state.events.recent() == []
    assert await followers(*influx_db) == [(T0, 250_000)]  # no point of 0
    assert [(r.followers, r.suspect, r.events) for r in held] == [(0, True, ())] * 8
    assert app.state.accounts.last_seen(*KEY).followers == 250_000  # type: ignore[union-attr]
    assert (
        len(app.state.accounts.held_zeros()[KEY]) == 8
    )  # kept in state.sqlite3, not only in memory

    profile.update(followersCount=250_003, followsCount=40, postsCount=25)
    clock.advance(1)
    with capture_logs() as logs:
        back = await app.poll_once()
    assert [(e["event"], e["held"]) for e in logs] == [("suspect fall to 0 recovered", 8)]
    assert [(r.followers, r.change, r.suspect) for r in back] == [(250_003, 3, False)]
    assert [n for _, n in await followers(*influx_db)] == [250_000, 250_003]
    assert app.state.events.recent() == []
    assert app.state.accounts.held_zeros() == {}
    assert app.pipeline.suspects.outcomes == {("bluesky", "recovered"): 1}


async def test_zeros_that_last_the_window_are_written_at_their_own_times_and_alert_once(
    bluesky: tuple[App, FakeBluesky, dict[str, Any], ManualClock], influx_db: tuple[str, str]
) -> None:
    app, _, profile, clock = bluesky
    await app.poll_once()
    glitch(profile)
    zeros: list[datetime] = []
    # Polled every minute: 15 polls span 14 minutes, short of the default 15-minute window.
    for _ in range(15):
        clock.advance(60)
        zeros.append(clock.now())
        rows = await app.poll_once()
        assert not any(r.events for r in rows) and rows[0].suspect
    assert app.state.events.recent() == []
    clock.advance(60)
    zeros.append(clock.now())
    confirmed = await app.poll_once()
    assert [r.followers for r in confirmed] == [0] * 16
    assert [len(r.events) for r in confirmed] == [1] + [0] * 15
    clock.advance(60)
    assert [r.events for r in await app.poll_once()] == [()]  # confirmed zero: no second alert

    stored = await followers(*influx_db)
    assert stored == [(T0, 250_000)] + [(t, 0) for t in zeros] + [(clock.now(), 0)]
    events = [e for e, _ in app.state.events.recent()]
    assert [(e.kind, e.time, e.value) for e in events] == [("dropped_below", zeros[0], 0)]
    assert "dropped below 100,000" in events[0].message
    assert app.state.accounts.held_zeros() == {}
    assert app.pipeline.suspects.outcomes == {("bluesky", "confirmed"): 1}


async def test_metrics_count_suspect_accounts_per_platform_without_account_labels(
    bluesky: tuple[App, FakeBluesky, dict[str, Any], ManualClock],
) -> None:
    app, _, profile, clock = bluesky
    await app.poll_once()
    assert gauge(app)[("followerwatch_suspect_zero_accounts", (("platform", "bluesky"),))] == 0
    glitch(profile)
    clock.advance(1)
    await app.poll_once()
    held = gauge(app)
    assert held[("followerwatch_suspect_zero_accounts", (("platform", "bluesky"),))] == 1
    assert all(dict(labels).keys() <= {"platform", "outcome"} for _, labels in held)
    profile["followersCount"] = 250_000
    clock.advance(1)
    await app.poll_once()
    after = gauge(app)
    assert after[("followerwatch_suspect_zero_accounts", (("platform", "bluesky"),))] == 0
    recovered = (("outcome", "recovered"), ("platform", "bluesky"))
    assert after[("followerwatch_suspect_zeros_total", recovered)] == 1


def test_a_cron_poll_holds_a_zero_and_a_later_run_confirms_it(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    fake = FakeBluesky(httpserver, SystemClock())
    profile = FakeBluesky.make_profile(1, followersCount=250_000)
    fake.add(profile)
    config = tmp_path / "fw.toml"
    config.write_text(f"""
[service]
data_dir = "data"
[influxdb]
url = "{influx_db[0]}"
database = "{influx_db[1]}"
precision = "ms"  # two runs may fall in one second
[platforms.bluesky]
base_url = "{fake.base_url}"
zero_confirm = "2s"
[[watch]]
platform = "bluesky"
handle = "{HANDLE}"
below = 100_000
""")
    first = run_cli("poll", "--config", str(config))
    assert first.returncode == 0, first.stdout + first.stderr
    glitch(profile)
    held = run_cli("poll", "--config", str(config))
    held_at = time.monotonic()
    assert held.returncode == 0, held.stdout + held.stderr  # held is not a failure
    row = next(line for line in held.stdout.splitlines() if HANDLE in line)
    assert "suspect" in row
    assert (held.stdout + held.stderr).count("fall to 0 held as suspect") == 1
    assert [n for _, n in asyncio.run(followers(*influx_db))] == [250_000]
    # The next cron run comes after the window: this process has only state.sqlite3 to go on.
    time.sleep(max(0.0, 2.1 - (time.monotonic() - held_at)))
    confirmed = run_cli("poll", "--config", str(config))
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert "dropped below 100,000" in confirmed.stdout
    assert "suspect fall to 0 confirmed" in confirmed.stdout + confirmed.stderr
    stored = asyncio.run(followers(*influx_db))
    assert [n for _, n in stored] == [250_000, 0, 0]
    assert stored[2][0] - stored[1][0] >= timedelta(seconds=2)


def test_a_state_file_from_before_suspect_zeros_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    StateDB(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP TABLE suspect_zeros")  # as a file written by an older version
    state = StateDB(path)
    try:
        assert state.accounts.held_zeros() == {}
    finally:
        state.close()


async def test_a_reload_that_removes_an_account_forgets_its_suspect_zeros(
    bluesky: tuple[App, FakeBluesky, dict[str, Any], ManualClock],
    tmp_path: Path,
    influx_db: tuple[str, str],
) -> None:
    app, fake, profile, clock = bluesky
    await app.poll_once()
    glitch(profile)
    clock.advance(1)
    await app.poll_once()
    assert KEY in app.state.accounts.held_zeros()
    other = FakeBluesky.make_profile(2, followersCount=5_000)
    fake.add(other)
    app.apply_config(
        load_config(
            None,
            {
                "service": {"data_dir": str(tmp_path / "data")},
                "influxdb": {"url": influx_db[0], "database": influx_db[1]},
                "platforms": {"bluesky": {"base_url": fake.base_url, "interval": "1s"}},
                "watch": [{"platform": "bluesky", "handle": other["handle"], "below": 1_000}],
            },
        )
    )
    held = gauge(app)[("followerwatch_suspect_zero_accounts", (("platform", "bluesky"),))]
    deadline = time.monotonic() + 5
    while app.state.accounts.held_zeros() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # the release is committed by the state's committer thread
    assert held == 0
    assert app.state.accounts.held_zeros() == {}
