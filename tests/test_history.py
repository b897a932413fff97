"""`followerwatch history` against the real influxd, and its pure parts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from followerwatch.analysis.history import per_day, sparkline
from followerwatch.models import Point
from followerwatch.rules.unusual import Summary, pack
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from service_proc import run_cli


async def write_hourly(
    influx_db: tuple[str, str],
    account: str,
    count_at: Callable[[int], int],
    hours: int,
    now: datetime,
    scores: Mapping[int, float] | None = None,
) -> None:
    """`account`'s count `count_at(h)` h hours before `now`, for h < hours (with any score)."""
    points = [
        Point(
            "followers",
            (("platform", "x"), ("account", account)),
            (("followers", count_at(h)),)
            + ((("unusual", float(scores[h])),) if scores and h in scores else ()),
            now - timedelta(hours=h),
        )
        for h in range(hours)
    ]
    async with httpx.AsyncClient() as client:
        await InfluxV1Store(client, url=influx_db[0], database=influx_db[1]).write(points)


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
    await write_hourly(influx_db, "aplusk", lambda h: 1_000_400 + 100 * h, 48, now)
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
    await write_hourly(influx_db, "climber", lambda h: 1_999_700 - 100 * h, 48, now)
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


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """The history table's data rows: day → its cells after the day."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if line.strip().startswith("│") and len(cells[0]) == 10 and cells[0][4] == "-":
            rows[cells[0]] = cells[1:]
    return rows


async def test_history_shows_the_unusual_score_beside_the_count(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    """Scores from the `unusual` field; days and counts without one stay blank, never 0."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    scores = {h: round(((h * 7) % 11 - 5) * 1.5, 2) for h in range(20)}  # the last 20 h only
    scores[3], scores[0] = -12.5, 1.3
    await write_hourly(influx_db, "scored", lambda h: 1_000_400 + 100 * h, 60, now, scores)
    config = tmp_path / "fw.toml"
    config.write_text(
        f'[influxdb]\nurl = "{influx_db[0]}"\ndatabase = "{influx_db[1]}"\n'
        '[platforms.x]\nbearer_token = "t0ken"\n'
        '[[watch]]\nplatform = "x"\nhandle = "scored"\n'
    )
    result = run_cli("history", "scored", "-c", str(config), "--since", "3d")
    assert result.returncode == 0, result.stdout + result.stderr
    header = next(line for line in result.stdout.splitlines() if "day (UTC)" in line)
    assert header.split("┃")[-2].strip() == "score"
    by_day: dict[str, list[float]] = {}
    for h, score in scores.items():
        by_day.setdefault((now - timedelta(hours=h)).date().isoformat(), []).append(score)
    rows = _table_rows(result.stdout)
    assert len(rows) >= 3
    for day, cells in rows.items():
        # Furthest from zero; on a tie (this series has +3.0 and -3.0) the drop.
        most = max(by_day[day], key=lambda s: (abs(s), -s)) if day in by_day else None
        assert cells[-1] == ("" if most is None else f"{most:+.1f}"), (day, cells)
    oldest = min(rows)
    assert rows[oldest][-1] == ""  # no score that day: blank
    assert "now 1,000,400 (score +1.3)" in result.stdout
    assert "unusual rule:" not in result.stdout  # the rule is off: no status line


async def test_history_without_scores_has_no_score_column(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await write_hourly(influx_db, "plain", lambda h: 5_000 + h, 30, now)
    config = tmp_path / "fw.toml"
    config.write_text(
        f'[influxdb]\nurl = "{influx_db[0]}"\ndatabase = "{influx_db[1]}"\n'
        '[platforms.x]\nbearer_token = "t0ken"\n[[watch]]\nplatform = "x"\nhandle = "plain"\n'
    )
    result = run_cli("history", "plain", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "score" not in result.stdout and "unusual" not in result.stdout
    assert "now 5,000" in result.stdout


async def test_history_says_when_the_unusual_rule_has_too_little_history(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    """With `unusual = true`: the status from the state file, a score column left blank."""
    now = datetime.now(UTC).replace(microsecond=0)
    await write_hourly(influx_db, "newbie", lambda h: 2_000 + h, 5, now)
    state = StateDB(tmp_path / "data" / "state.sqlite3")
    learning = pack(Summary(readings=5, first=0, anchor_time=4 * 3600, anchor_count=2_000.0))
    state.rules.set_rule_state("x", "newbie", "unusual", learning)
    state.close()
    config = tmp_path / "fw.toml"
    config.write_text(
        f'[service]\ndata_dir = "data"\n[influxdb]\nurl = "{influx_db[0]}"\n'
        f'database = "{influx_db[1]}"\n[platforms.x]\nbearer_token = "t0ken"\n'
        '[[watch]]\nplatform = "x"\nhandle = "newbie"\nunusual = true\n'
        '[[watch]]\nplatform = "x"\nhandle = "nobody_yet"\nunusual = true\n'
    )
    result = run_cli("history", "newbie", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert (
        "unusual rule: too little history: 5 readings over 0.2 days (needs 24 over 3 days)" in text
    )
    rows = _table_rows(result.stdout)
    assert rows and all(cells[-1] == "" for cells in rows.values())  # blank, never 0
    assert "(score" not in result.stdout
    # No readings at all: it says so, and the rule has nothing stored either.
    empty = run_cli("history", "nobody_yet", "-c", str(config))
    assert empty.returncode == 1
    assert (
        "unusual rule: too little history: 0 readings over 0.0 days (needs 24 over 3 days)"
        in " ".join(empty.stdout.split())
    )
