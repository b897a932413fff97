"""`followerwatch demo` end to end against the real influxd, as the README runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from followerwatch.demo import DATABASE
from followerwatch.influxd import TempInfluxd


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
    assert "Grafana" in out
    # The replay ends with the Unfollow Day impact report (control: @cnnbrk).
    assert "the campaign cost @aplusk about" in out and "goal below 1,000,000: reached at" in out
    assert "chart: " in out and (tmp_path / "unfollow-day.png").stat().st_size > 20_000
