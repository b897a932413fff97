"""`followerwatch report` on the real influxd: what the page says, what its charts draw, and the
page itself opened in Debian's chromium (headless)."""

from __future__ import annotations

import asyncio
import html
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from followerwatch.config.settings import load_config
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.models import Point
from followerwatch.store.influx_v1 import InfluxV1Store

if TYPE_CHECKING:
    from followerwatch.analysis.report_page import Section

CHROMIUM = "/usr/bin/chromium"
UNTIL = datetime(2026, 3, 1, tzinfo=UTC)
SOLO_AT = UNTIL - timedelta(days=3)
# The climber gains 50 an hour for ten days (plus a wobble of 0-2), from 980,000 up to 991,952:
# the 1,000,000 milestone is 8,048 ahead, just under 161 h away; it has no below/above line.
CLIMB = [(UNTIL - timedelta(hours=240 - h), 980_000 + 50 * h + (h % 3)) for h in range(240)]
EVENTS = [
    (UNTIL - timedelta(days=6), "milestone", 982_400),
    (UNTIL - timedelta(days=2), "window_rise", 987_200),
]
# The unusual rule scored the climber's counts after its first 3 days; the last count's score
# is -1.0. Its one event holds a rate per hour (-1,200/h), not a count.
SCORES = {t: ((h % 7) - 3) / 2 for h, (t, _) in enumerate(CLIMB) if h >= 72}
UNUSUAL = (UNTIL - timedelta(days=1), "unusual_drop", -1_200)


@dataclass(frozen=True)
class Page:
    """The seeded database, its config, and the report written from them."""

    url: str
    database: str
    config: Path
    html: str
    path: Path


def _points() -> list[Point]:
    climber = (("platform", "x"), ("account", "climber"))
    points = [
        Point(
            "followers",
            climber,
            (("followers", v),) + ((("unusual", SCORES[t]),) if t in SCORES else ()),
            t,
        )
        for t, v in CLIMB
    ]
    solo = (("platform", "x"), ("account", "solo"))
    points.append(Point("followers", solo, (("followers", 4_321),), SOLO_AT))
    for when, kind, value in EVENTS:
        tags = (*climber, ("rule", "test"), ("kind", kind))
        fields = (("message", f"{kind} at {value:,}"), ("value", value), ("threshold", 0))
        points.append(Point("followerwatch_events", tags, (*fields, ("id", kind)), when))
    when, kind, value = UNUSUAL
    tags = (*climber, ("rule", "unusual"), ("kind", kind))
    fields = (("message", "@climber is losing 1,200/h"), ("value", value), ("threshold", 50))
    points.append(Point("followerwatch_events", tags, (*fields, ("id", kind)), when))
    return points


async def _seed(url: str, database: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        store = InfluxV1Store(client, url=url, database=database)
        await store.create_database()
        await store.write(_points())


@pytest.fixture(scope="module")
def page(influxd: TempInfluxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """One report over a climber with milestones and events, and an account with one reading."""
    database = f"test_report_{uuid.uuid4().hex[:8]}"
    asyncio.run(_seed(influxd.url, database))
    folder = tmp_path_factory.mktemp("report")
    config = folder / "fw.toml"
    config.write_text(
        f'[service]\ndata_dir = "data"\n[influxdb]\nurl = "{influxd.url}"\n'
        f'database = "{database}"\n[platforms.x]\nbearer_token = "t"\n'
        '[[watch]]\nplatform = "x"\nhandle = "climber"\nmilestones = [1_000_000, 2_000_000]\n'
        '[[watch]]\nplatform = "x"\nhandle = "solo"\nbelow = 1_000\n'
    )
    out = folder / "report.html"
    args = ["report", "-o", str(out), "--since", "30d", "--until", UNTIL.isoformat()]
    run = subprocess.run(
        [sys.executable, "-m", "followerwatch", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=folder,
        env={**os.environ},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    yield Page(influxd.url, database, config, out.read_text(), out)


def _summaries(text: str) -> dict[str, str]:
    """Heading → the paragraph under it."""
    found = re.findall(r"<h2>(.*?)</h2><p>(.*?)</p>", text)
    return {html.unescape(h): html.unescape(p) for h, p in found}


async def _sections(page: Page) -> list[Section]:
    # Imported here, so the tests of the page's text run (and fail) on code without this module.
    from followerwatch.analysis.report_page import load, sections

    cfg = load_config(page.config)
    async with httpx.AsyncClient(timeout=10) as client:
        store = InfluxV1Store(client, url=page.url, database=page.database)
        readings = await load(store, cfg.accounts, UNTIL - timedelta(days=30), UNTIL)
    return sections(readings, cfg.rules)


def test_summary_does_not_repeat_the_heading(page: Page) -> None:
    summaries = _summaries(page.html)
    assert set(summaries) == {"@climber (x)", "@solo (x)"}
    for heading, summary in summaries.items():
        assert heading.split()[0] not in summary, summary
    assert summaries["@climber (x)"].startswith("991,952 followers on 2026-02-28 23:00 UTC")


def test_the_score_stands_beside_the_count(page: Page) -> None:
    summaries = _summaries(page.html)
    assert summaries["@climber (x)"].startswith(
        "991,952 followers on 2026-02-28 23:00 UTC (240 readings in this range), "
        "unusual score -1.0; 24 h +"
    ), summaries["@climber (x)"]
    # No score stored for @solo: nothing said about one (test_one_reading_is_one_reading).
    assert "score" not in summaries["@solo (x)"]


def test_one_reading_is_one_reading(page: Page) -> None:
    assert _summaries(page.html)["@solo (x)"] == (
        "4,321 followers on 2026-02-26 00:00 UTC (1 reading in this range); "
        "no projection: only 1 reading in the last 1 d (need 5)"
    )
    assert "(240 readings in this range)" in _summaries(page.html)["@climber (x)"]


async def test_one_reading_gets_a_day_around_it(page: Page) -> None:
    from matplotlib.dates import num2date

    solo = next(s for s in await _sections(page) if s.heading == "@solo (x)")
    assert solo.figure is not None
    low, high = (num2date(x) for x in solo.figure.axes[0].get_xlim())
    # Not years of empty axis around a single dot (matplotlib's default for a zero-width range).
    assert low < SOLO_AT < high
    assert high - low == timedelta(days=1)


def test_milestones_give_a_projection(page: Page) -> None:
    summary = _summaries(page.html)["@climber (x)"]
    # 8,048 to go at 50/h: 160.96 h. The 2,000,000 milestone is further; nothing is below.
    assert summary.endswith(
        "at the current rate the count reaches the 1,000,000 milestone in about 6 d 16 h"
    ), summary


async def test_events_are_listed_and_marked_on_the_chart(page: Page) -> None:
    from followerwatch.analysis.charts import event_markers

    for when, kind, value in EVENTS:
        line = f"{when:%Y-%m-%d %H:%M} UTC: {kind.replace('_', ' ')} at {value:,}"
        assert line in page.html
    when, _, _ = UNUSUAL
    assert f"{when:%Y-%m-%d %H:%M} UTC: unusual drop (-1,200/h)" in page.html
    climber = next(s for s in await _sections(page) if s.heading == "@climber (x)")
    assert climber.figure is not None
    # Read back from the figure's own drawing, not from what was passed in. The unusual
    # event's value is a rate: it sits on the count of its moment, not at -1,200.
    count_then = [v for t, v in CLIMB if t <= when][-1]
    assert event_markers(climber.figure) == [(t, float(v)) for t, _, v in EVENTS] + [
        (when, float(count_then))
    ]


def test_the_page_in_a_real_browser(page: Page) -> None:
    from playwright.sync_api import sync_playwright

    # Debian's chromium, never a downloaded one; missing is a failure with the fix, not a skip.
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no {CHROMIUM}; install it with `apt-get install -y chromium`", pytrace=False)

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--headless",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            tab = browser.new_page()
            tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: problems.append(str(e)))
            tab.goto(page.path.as_uri(), wait_until="load")
            widths = tab.eval_on_selector_all(
                "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
            )
            text = tab.inner_text("body")
        finally:
            browser.close()
    assert problems == []
    # One chart per account with counts, each decoded by the browser.
    assert len(widths) == 2 and all(w > 0 for w in widths), widths
    for expected in ("@climber (x)", "@solo (x)", "milestone at 982,400", "window rise at 987,200"):
        assert expected in text
