"""Campaign impact on synthetic histories with known answers, stored in and read from influxd."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from followerwatch.analysis.impact import analyse, load_series
from followerwatch.models import Point
from followerwatch.store.influx_v1 import InfluxV1Store

START = datetime(2009, 4, 27, tzinfo=UTC)
END = START + timedelta(days=1)


def history(
    per_hour: float,
    noise: float,
    seed: int,
    *,
    drop: int = 0,
    dip: float = 0.0,
    freeze: tuple[int, int] | None = None,
    base: int = 1_000_000,
) -> list[tuple[datetime, int]]:
    """Hourly counts for 8 days before START and the day of the window (plus one after)."""
    rng = random.Random(seed)
    out = []
    for h in range(-8 * 24, 26):
        when = START + timedelta(hours=h)
        value = base + per_hour * (h + 8 * 24) + rng.gauss(0, noise)
        # A campaign drop is absolute; a platform-wide dip takes the same share from everyone.
        share = min(max(h, 0), 24) / 24
        value = value * (1 - dip * share) - drop * share
        out.append((when, round(value)))
    if freeze is not None:
        a, b = freeze
        frozen = out[8 * 24 + a][1]
        for i in range(8 * 24 + a, 8 * 24 + b + 1):
            out[i] = (out[i][0], frozen)
    return out


async def stored(
    influx_db: tuple[str, str], account: str, series: list[tuple[datetime, int]]
) -> list[tuple[datetime, int]]:
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        await store.write(
            [
                Point(
                    "followers", (("platform", "x"), ("account", account)), (("followers", v),), t
                )
                for t, v in series
            ]
        )
        return await load_series(
            store, "x", account, START - timedelta(days=8), END + timedelta(hours=2)
        )


async def test_steady_trend_no_campaign_effect(influx_db: tuple[str, str]) -> None:
    series = await stored(influx_db, "steady", history(400, 150, 1))
    report = analyse("@steady", series, START, END)
    assert report is not None
    assert report.expected == pytest.approx(24 * 400, rel=0.05)
    # A 95 % band: over many quiet histories, about one in twenty looks like an effect.
    flagged = 0
    for seed in range(40):
        quiet = analyse("@q", history(400, 150, 100 + seed), START, END)
        assert quiet is not None
        flagged += quiet.significant
        if not quiet.significant:
            assert quiet.verdict().startswith("no effect on @q distinguishable")
    assert flagged <= 6


async def test_known_drop_is_estimated_within_its_band(influx_db: tuple[str, str]) -> None:
    series = await stored(influx_db, "dropped", history(400, 150, 2, drop=18_000))
    report = analyse("@dropped", series, START, END, goal=("below", 1_070_000))
    assert report is not None and report.significant
    assert abs(report.effect - (-18_000)) <= report.band
    assert report.verdict().startswith("the campaign cost @dropped about 1")
    assert f"against an expected gain of {report._round(report.expected)}" in report.verdict()
    worst = report.worst_hour
    assert worst is not None and worst[1] < report.baseline_per_hour
    # 1,076,800 + 400/h − 750/h crosses 1,070,000 about 19.4 h in.
    assert report.goal_reached_at is not None
    assert abs(report.goal_reached_at - (START + timedelta(hours=19.4))) <= timedelta(hours=2)


async def test_a_platform_wide_dip_is_attributed_to_the_platform(
    influx_db: tuple[str, str],
) -> None:
    target = await stored(influx_db, "target", history(400, 150, 3, dip=0.02))
    control = await stored(influx_db, "control", history(300, 150, 4, dip=0.02, base=800_000))
    corrected = analyse("@target", target, START, END, controls=[control])
    assert corrected is not None
    assert corrected.control_swing == pytest.approx(-0.02, abs=0.002)
    # Over many histories: alone, the 2 % dip always looks like a campaign; with a control,
    # it is explained as the platform's (all but the band's expected few).
    alone_flagged = corrected_flagged = 0
    for seed in range(20):
        t = history(400, 150, 200 + seed, dip=0.02)
        c = history(300, 150, 300 + seed, dip=0.02, base=800_000)
        alone_flagged += analyse("@t", t, START, END).significant  # type: ignore[union-attr]
        corrected_flagged += analyse(  # type: ignore[union-attr]
            "@t", t, START, END, controls=[c]
        ).significant
    assert alone_flagged == 20 and corrected_flagged <= 3


async def test_frozen_stretch_inside_the_window(influx_db: tuple[str, str]) -> None:
    series = await stored(influx_db, "frozen", history(400, 150, 5, freeze=(6, 11)))
    report = analyse("@frozen", series, START, END)
    assert report is not None
    [stretch] = report.frozen
    assert (stretch.start, stretch.end) == (START + timedelta(hours=6), START + timedelta(hours=11))
    assert any("frozen at" in line for line in report.lines())


def test_no_report_without_data_at_the_window() -> None:
    assert analyse("@nobody", [], START, END) is None


async def test_the_headline_and_the_lines_below_it_agree(influx_db: tuple[str, str]) -> None:
    # -62/h with a wide band: the expected -1,482 is printed as the band allows, -1,000, in
    # the headline and in the line below alike; the effect is what those printed figures give.
    series = await stored(influx_db, "agree", history(-62, 400, 0, drop=20_000))
    report = analyse("@agree", series, START, END)
    assert report is not None and report.significant
    assert report.expected == pytest.approx(-1_482, abs=20)
    headline, count, trend, *_ = report.lines()
    assert headline == (
        "the campaign cost @agree about 21,000 followers (± 1,000)"
        " against an expected loss of 1,000"
    )
    assert count.startswith("count 988,464 → 966,496 (-21,968)")
    assert trend == "baseline trend -61.7/h; expected -1,000 (± 1,000)"


async def test_a_zero_never_carries_a_sign(influx_db: tuple[str, str]) -> None:
    signed_zero = re.compile(r"[-+]0(?:\.0+)?(?![\d,.])")
    # A control 3 followers off its exact trend at the end: -0.0003 %, printed as 0.00%.
    control = [(t, 800_000 + 300 * i) for i, (t, _) in enumerate(history(0, 0, 7))]
    control = [(t, v - 3 if t >= END else v) for t, v in control]
    target = await stored(influx_db, "target", history(400, 150, 6))
    report = analyse("@target", target, START, END, controls=[control])
    assert report is not None and report.control_swing is not None
    assert -0.00005 < report.control_swing < 0
    assert "control accounts moved 0.00% against their trend" in report.lines()
    # A flat account: no change observed, none expected, none in its worst hour.
    flat = await stored(influx_db, "flat", [(t, 500_000) for t, _ in history(0, 0, 6)])
    still = analyse("@flat", flat, START, END)
    assert still is not None
    assert still.lines()[0] == (
        "no effect on @flat distinguishable from normal variation: 0 against an expected 0 (± 0)"
    )
    assert "baseline trend 0.0/h; expected 0 (± 0)" in still.lines()
    for line in report.lines() + still.lines():
        assert signed_zero.search(line) is None, line


async def test_too_little_data_before_the_window(
    influx_db: tuple[str, str], tmp_path: Path
) -> None:
    # Three hours of readings before a one-day window with a 7-day baseline.
    series = await stored(influx_db, "newcomer", history(400, 150, 8)[8 * 24 - 3 :])
    report = analyse("@newcomer", series, START, END)
    assert report is not None and not report.estimable and not report.significant
    assert report.verdict() == (
        "too little data before the window to expect anything of @newcomer: 4 readings over 3 h"
        f" of the 7 d baseline (at least 5 over 3 d 12 h needed); observed {report.observed:+,}"
    )
    assert not any("expected" in line for line in report.lines()[1:])
    config = tmp_path / "fw.toml"
    config.write_text(
        f'[influxdb]\nurl = "{influx_db[0]}"\ndatabase = "{influx_db[1]}"\n'
        '[platforms.x]\nbearer_token = "t"\n[[watch]]\nplatform = "x"\nhandle = "newcomer"\n'
        "below = 1\n"
    )
    window = ["--from", START.isoformat(), "--to", END.isoformat()]
    run = subprocess.run(
        [sys.executable, "-m", "followerwatch", "impact", "x/newcomer", *window, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.startswith("too little data before the window to expect anything of")
    assert "expected -" not in run.stdout and "expected +" not in run.stdout


async def test_goal_counts_take_suffixes_and_zero_and_refuse_huge_values(
    influx_db: tuple[str, str], tmp_path: Path
) -> None:
    from service_proc import run_cli

    await stored(influx_db, "goalie", history(400, 150, 9))
    config = tmp_path / "fw.toml"
    config.write_text(
        f'[influxdb]\nurl = "{influx_db[0]}"\ndatabase = "{influx_db[1]}"\n'
        '[platforms.x]\nbearer_token = "t"\n[[watch]]\nplatform = "x"\nhandle = "goalie"\n'
    )
    base = ["impact", "x/goalie", "--from", START.isoformat(), "--to", END.isoformat()]
    below = run_cli(*base, "--below", "1.07M", "-c", str(config))
    assert below.returncode == 0, below.stdout + below.stderr
    assert "goal below 1,070,000: not reached" in below.stdout
    above = run_cli(*base, "--above", "0", "-c", str(config))
    assert above.returncode == 0, above.stdout + above.stderr
    assert "goal above 0: reached at 2009-04-27 00:00 UTC" in above.stdout
    huge = run_cli(*base, "--below", "9" * 30, "-c", str(config))
    assert huge.returncode == 2 and len(huge.stderr.splitlines()) == 1, huge.stderr
    assert huge.stderr.startswith("followerwatch: --below: a count cannot be larger than")


async def test_a_window_past_the_last_reading_ends_at_that_reading(
    influx_db: tuple[str, str], tmp_path: Path
) -> None:
    from service_proc import run_cli

    # Readings stop 10 h into the window; --to asks for days (and decades) more.
    series = await stored(influx_db, "stopped", history(400, 150, 11)[: 8 * 24 + 11])
    last = START + timedelta(hours=10)
    for asked in (END + timedelta(days=9), datetime(2100, 1, 5, tzinfo=UTC)):
        report = analyse("@stopped", series, START, asked)
        assert report is not None and report.end == last and report.asked_end == asked
        # The trend times the 10 h that have readings, not times the whole asked window.
        assert report.expected == pytest.approx(report.baseline_per_hour * 10)
        assert not report.significant, report.verdict()
        assert f"readings end at {last:%Y-%m-%d %H:%M} UTC" in report.lines()[2]
    config = tmp_path / "fw.toml"
    config.write_text(
        f'[influxdb]\nurl = "{influx_db[0]}"\ndatabase = "{influx_db[1]}"\n'
        '[platforms.x]\nbearer_token = "t"\n[[watch]]\nplatform = "x"\nhandle = "stopped"\n'
    )
    run = run_cli(
        "impact", "x/stopped", "--from", START.isoformat(), "--to", "2100-01-05", "-c", str(config)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("no effect on @stopped"), run.stdout
    assert "readings end at 2009-04-27 10:00 UTC, before --to 2100-01-05" in run.stdout
    # No reading after the start at all: too little data, exit 1.
    late = ["--from", (last + timedelta(minutes=30)).isoformat(), "--to", "2100-01-05"]
    run = run_cli("impact", "x/stopped", *late, "-c", str(config))
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.startswith("too little data in the window to say anything of @stopped")


def test_an_effect_that_rounds_to_zero_is_not_significant() -> None:
    # A noiseless trend (band 0) and a one-second window: expected +0.1, observed 0.
    series = [(START - timedelta(hours=h), 1_000_000 - 400 * h) for h in range(8 * 24, 0, -1)]
    series += [(START, 1_000_000), (START + timedelta(seconds=1), 1_000_000)]
    report = analyse("@still", series, START, START + timedelta(seconds=1))
    assert report is not None and report.estimable and report.band < 0.5
    assert not report.significant
    assert report.verdict().startswith("no effect on @still distinguishable")
