"""`followerwatch history` against the real influxd, and its pure parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from followerwatch.analysis.history import per_day, sparkline
from followerwatch.models import Point
from followerwatch.store.influx_v1 import InfluxV1Store
from service_proc import run_cli


def test_per_day_net_change_is_against_the_previous_day() -> None:
    t = datetime(2009, 4, 16, 22, tzinfo=UTC)
    rows = [(t, 100), (t + timedelta(hours=1), 90), (t + timedelta(hours=3), 70)]
    days = per_day(rows)
    assert [(d.day.day, d.first, d.last, d.change, d.readings) for d in days] == [
        (16, 100, 90, -10, 2),
        (17, 70, 70, -20, 1),
    ]


def test_sparkline_scales_and_averages() -> None:
    assert sparkline([0, 7, 14]) == "▁▅█"
    assert sparkline([5, 5]) == "▅▅"
    line = sparkline(list(range(1000)), width=50)
    assert len(line) == 50 and line[0] == "▁" and line[-1] == "█"


async def test_history_command_shows_days_and_projection(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # Falling 100 an hour for two days; 400 above the line now: 4 h to go.
    points = [
        Point(
            "followers",
            (("platform", "x"), ("account", "aplusk")),
            (("followers", 1_000_400 + 100 * h),),
            now - timedelta(hours=h),
        )
        for h in range(48)
    ]
    async with httpx.AsyncClient() as client:
        await InfluxV1Store(client, url=influx_db[0], database=influx_db[1]).write(points)
    config = tmp_path / "fw.toml"
    config.write_text(f"""
[service]
data_dir = "data"
log_format = "json"

[influxdb]
url = "{influx_db[0]}"
database = "{influx_db[1]}"

[platforms.x]
bearer_token = "t0ken"

[[watch]]
platform = "x"
handle = "aplusk"
below = 1_000_000
""")
    result = run_cli("history", "aplusk", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "at the current rate @aplusk on x drops below 1,000,000 in about 4 h" in result.stdout
    assert "now 1,000,400" in result.stdout
    assert "▁" in result.stdout and "█" in result.stdout
    assert "-2,400" in result.stdout  # the one whole day in the middle
    today = now.date().isoformat()
    assert today in result.stdout

    away = run_cli("history", "nobody", "-c", str(config))
    assert away.returncode == 2 and "not watched" in away.stderr


async def test_history_projects_toward_the_next_milestone(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # Rising 100 an hour, 300 short of a milestone; no below/above line at all: 3 h to go.
    points = [
        Point(
            "followers",
            (("platform", "x"), ("account", "climber")),
            (("followers", 1_999_700 - 100 * h),),
            now - timedelta(hours=h),
        )
        for h in range(48)
    ]
    async with httpx.AsyncClient() as client:
        await InfluxV1Store(client, url=influx_db[0], database=influx_db[1]).write(points)
    config = tmp_path / "fw.toml"
    config.write_text(
        f'[influxdb]\nurl = "{influx_db[0]}"\ndatabase = "{influx_db[1]}"\n'
        '[platforms.x]\nbearer_token = "t0ken"\n'
        '[[watch]]\nplatform = "x"\nhandle = "climber"\nmilestones = 1_000_000\n'
    )
    result = run_cli("history", "climber", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "at the current rate @climber on x reaches the 2,000,000 milestone in about 3 h"
        in " ".join(result.stdout.split())
    ), result.stdout
