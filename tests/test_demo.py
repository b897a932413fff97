"""`followerwatch demo` end to end against the real influxd, as the README runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from followerwatch.demo import DATABASE
from followerwatch.influxd import TempInfluxd


def test_demo_replays_alerts_and_lands_points(influxd: TempInfluxd) -> None:
    httpx.post(f"{influxd.url}/query", params={"q": f'DROP DATABASE "{DATABASE}"'})
    result = subprocess.run(
        [sys.executable, "-m", "followerwatch", "demo", "--influx-url", influxd.url,
         "--seconds", "3"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "illustrative, not historical" in out
    assert "@aplusk on x crossed above 1,000,000 followers" in out
    assert "@aplusk on x dropped below 1,000,000 followers" in out
    assert "@cnnbrk on x crossed above 1,000,000 followers" in out
    summary = next(line for line in out.splitlines() if "@aplusk" in line and "│" in line)
    assert "360" in summary  # every replayed hour landed in InfluxDB
    assert "Webhook receiver got 3 alert(s)" in out
    assert "Grafana" in out
