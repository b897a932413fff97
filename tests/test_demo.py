"""`followerwatch demo` end to end against the real influxd, as the README runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from followerwatch.demo.influxd import TempInfluxd
from followerwatch.demo.replay import DATABASE, replay_file
from followerwatch.demo.story import story
from followerwatch.sources.replay import read_replay

MILLION = 1_000_000


def first_row(series: list[tuple[datetime, int]], below: bool, after: datetime) -> datetime:
    """Straight from the CSV: the first row after `after` above (or below) the million."""
    return next(t for t, v in series if t > after and (v < MILLION if below else v >= MILLION))


def test_demo_replays_alerts_and_lands_points(influxd: TempInfluxd, tmp_path: Path) -> None:
    httpx.post(f"{influxd.url}/query", params={"q": f'DROP DATABASE "{DATABASE}"'})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "followerwatch",
            "demo",
            "--influx-url",
            influxd.url,
            "--seconds",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert "illustrative, not historical" in out
    assert "@aplusk on x crossed above 1,000,000 followers" in out
    assert "@aplusk on x dropped below 1,000,000 followers" in out
    assert "@cnnbrk on x crossed above 1,000,000 followers" in out
    summary = next(line for line in result.stdout.splitlines() if "│ @aplusk" in line)
    assert summary.split("│")[5].strip() == "360"  # every replayed hour landed in InfluxDB
    assert "@aplusk on x lost" in out and "followers (-" in out and "within 1d" in out
    # Crossings, the window drop and its clearing, and three projections before crossings.
    assert "Webhook receiver got 8 alert(s)" in out
    assert "at the current rate @aplusk reaches 1,000,000 in about" in out
    assert "See it in Grafana" in out and "--keep-running" not in out
    # The replay ends with the Unfollow Day impact report (control: @cnnbrk).
    assert "the campaign cost @aplusk about" in out and "goal below 1,000,000: reached at" in out
    assert "chart: " in out and (tmp_path / "unfollow-day.png").stat().st_size > 20_000

    # The narration, merged with the alerts in replay time; its crossing times are the CSV's.
    rows = read_replay(replay_file(), "x")
    start = rows["aplusk"][0][0]
    up = first_row(rows["aplusk"], False, start)
    cnn_up = first_row(rows["cnnbrk"], False, start)
    down = first_row(rows["aplusk"], True, up)
    assert (up, cnn_up - up) == (datetime(2009, 4, 17, 6, tzinfo=UTC), timedelta(hours=2))

    def at(text: str) -> int:
        assert text in out, text
        return out.index(text)

    order = [
        at("▶ 14 Apr 2009 — Ashton Kutcher (@aplusk) challenges CNN (@cnnbrk) to a race"),
        at("at the current rate @aplusk reaches 1,000,000 in about"),
        at(f"▶ {up:%d %b %Y %H:%M} UTC — @aplusk passes 1,000,000 followers, 2h ahead of @cnnbrk"),
        at(f"alert [{up:%d %b %H:%M}] @aplusk on x crossed above 1,000,000 followers"),
        at(f"alert [{cnn_up:%d %b %H:%M}] @cnnbrk on x crossed above 1,000,000 followers"),
        at("▶ 17 Apr 2009 — Oprah Winfrey sends her first tweet live on her show"),
        at("▶ 27 Apr 2009 — the replay's (illustrative) Unfollow Day"),
        at("@aplusk on x lost"),
        at(f"▶ {down:%d %b %Y %H:%M} UTC — @aplusk falls back below 1,000,000 followers"),
        at(f"alert [{down:%d %b %H:%M}] @aplusk on x dropped below 1,000,000 followers"),
        at("Summary (read back from InfluxDB)"),
    ]
    assert order == sorted(order)
    # Every alert is told once: no second copy from another notifier or a retried delivery.
    assert out.count("on x crossed above 1,000,000 followers") == 2


def test_story_takes_the_crossings_from_the_rows() -> None:
    t = datetime(2009, 4, 16, 22, tzinfo=UTC)
    minutes = [t + timedelta(minutes=30 * i) for i in range(6)]
    aplusk = [990_000, 995_000, 999_999, MILLION, 1_002_000, 999_000]
    cnnbrk = [996_000, 1_000_001, 1_003_000, 1_004_000, 1_005_000, 1_006_000]
    # CNN wins here: the story says so, and by how much, because the rows say so.
    rows = {
        "aplusk": list(zip(minutes, aplusk, strict=True)),
        "cnnbrk": list(zip(minutes, cnnbrk, strict=True)),
    }
    texts = [(beat.time, beat.text) for beat in story(rows)]
    assert (
        minutes[1],
        "16 Apr 2009 22:30 UTC — @cnnbrk passes 1,000,000 followers, 1h ahead of @aplusk.",
    ) in texts
    assert (
        minutes[5],
        "17 Apr 2009 00:30 UTC — @aplusk falls back below 1,000,000 followers "
        "(from 1,002,000 on 17 Apr).",
    ) in texts
    assert [when for when, _ in texts] == sorted(when for when, _ in texts)
