"""The `followerwatch` command as a user runs it: check, poll, --help."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from pytest_httpserver import HTTPServer

from followerwatch.demo.influxd import free_port
from followerwatch.rules.unusual import Summary, pack
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from service_proc import run_cli as cli


def config(tmp_path: Path, url: str, db: str, interval: str = "5m", extra: str = "") -> Path:
    replay = tmp_path / "replay.csv"
    replay.write_text(
        "timestamp,platform,account,followers\n"
        "2026-01-01T00:00:00Z,x,aplusk,1000100\n"
        "2026-01-01T00:05:00Z,x,aplusk,999990\n"
    )
    path = tmp_path / "fw.toml"
    path.write_text(f"""
[service]
data_dir = "data"
log_format = "json"

[influxdb]
url = "{url}"
database = "{db}"

[platforms.x]
bearer_token = "secret-token-abc"
interval = "{interval}"
{extra}

[[watch]]
platform = "x"
handle = "aplusk"
below = 1_000_000
""")
    return path


def test_check_passes_and_prints_the_plan(tmp_path: Path, influx_db: tuple[str, str]) -> None:
    result = cli("check", "--config", str(config(tmp_path, *influx_db)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "InfluxDB reachable" in result.stdout
    plan = next(line for line in result.stdout.splitlines() if line.strip().startswith("│ x"))
    cells = [c.strip() for c in plan.strip("│ ").split("│")]
    # accounts, requests per cycle, interval, ceiling, the shortest interval it sustains, use
    assert cells == ["x", "1", "1", "5m", "300/15m", "3s", "1%"]
    assert "X costs $0.01/day for 1 account:" in result.stdout
    assert "secret-token-abc" not in result.stdout + result.stderr
    assert "Unusual rule" not in result.stdout  # no account has it on: nothing about it
    assert not (tmp_path / "data").exists()  # check reads the state, never creates it


def test_check_shows_the_unusual_rule_status_per_account(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    """With `unusual = true`: each account's status line from the state file."""
    state = StateDB(tmp_path / "data" / "state.sqlite3")
    learning = pack(Summary(readings=7, first=0, anchor_time=36 * 3600, anchor_count=9.0))
    state.rules.set_rule_state("x", "aplusk", "unusual", learning)
    state.close()
    extra = (
        "unusual = true\n"
        '[[watch]]\nplatform = "x"\nhandle = "cnnbrk"\nunusual = true\n'
        '[[watch]]\nplatform = "x"\nhandle = "quiet"\n'
    )
    path = config(tmp_path, *influx_db)
    path.write_text(path.read_text() + extra)
    result = cli("check", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        cells[1]: cells[2]
        for line in result.stdout.splitlines()
        if line.startswith("│ x ")
        and len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 3
    }
    assert rows == {
        "aplusk": "too little history: 7 readings over 1.5 days (needs 24 over 3 days)",
        "cnnbrk": "too little history: 0 readings over 0.0 days (needs 24 over 3 days)",
    }


def test_check_sums_up_the_unusual_rule_of_a_large_watchlist(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    names = [f"user_{i}" for i in range(250)]
    path = tmp_path / "big.toml"
    path.write_text(
        f'[service]\ndata_dir = "data"\n[influxdb]\nurl = "{influx_db[0]}"\n'
        f'database = "{influx_db[1]}"\n[platforms.x]\nbearer_token = "t"\n'
        + "".join(f'[[watch]]\nplatform = "x"\nhandle = "{n}"\nunusual = true\n' for n in names)
    )
    result = cli("check", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "Unusual rule on 250 accounts: 250 with too little history, 0 watching, "
        "0 with an unusual change under way" in " ".join(result.stdout.split())
    )
    assert "user_17 " not in result.stdout


def test_check_fails_when_influx_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("check", "--config", str(config(tmp_path, url, "fw")))
    assert result.returncode == 1
    assert "✗ InfluxDB" in result.stdout


def test_check_fails_when_the_plan_exceeds_the_rate_limit(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    result = cli("check", "--config", str(config(tmp_path, *influx_db, interval="1s")))
    assert result.returncode == 1
    assert "over the limit" in result.stdout


def test_poll_prints_a_table_and_writes(tmp_path: Path, influx_db: tuple[str, str]) -> None:
    replay = 'replay = { file = "replay.csv" }'
    path = config(tmp_path, *influx_db, extra=replay)
    dry = cli("poll", "--dry-run", "--config", str(path))
    assert dry.returncode == 0 and "dry run" in dry.stdout and "1,000,100" in dry.stdout
    first = cli("poll", "--config", str(path))
    assert first.returncode == 0 and "1,000,100" in first.stdout
    second = cli("poll", "--config", str(path))
    assert "999,990" in second.stdout and "-110" in second.stdout
    assert "dropped below 1,000,000" in second.stdout

    async def read() -> list[list[object]]:
        async with httpx.AsyncClient() as client:
            store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
            series = await store.query("SELECT followers FROM followers")
        return series[0]["values"] if series else []

    import asyncio

    # The dry run wrote nothing: the first real poll stored the first row, the second the next.
    assert [row[1] for row in asyncio.run(read())] == [1_000_100, 999_990]


def test_help_explains_every_command() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("run", "poll", "check", "demo"):
        assert command in result.stdout
    poll_help = cli("poll", "--help").stdout
    assert "--dry-run" in poll_help and "FOLLOWERWATCH_CONFIG" in poll_help


def test_events_lists_delivery_status_and_test_alert_reports_each_notifier(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/ok", method="POST").respond_with_data("", status=204)
    httpserver.expect_request("/broken", method="POST").respond_with_data("", status=500)
    notifiers = f"""
[[notifiers]]
type = "webhook"
name = "good"
url = "{httpserver.url_for("/ok")}"

[[notifiers]]
type = "webhook"
name = "bad"
url = "{httpserver.url_for("/broken")}"
"""
    path = config(tmp_path, *influx_db, extra='replay = { file = "replay.csv" }')
    path.write_text(path.read_text().replace("[[watch]]", notifiers + "\n[[watch]]"))
    cli("poll", "--config", str(path))
    cli("poll", "--config", str(path))
    listed = cli("events", "--config", str(path))
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if "dropped_below" in line)
    assert "bad: pending" in row and "good: delivered" in row

    result = cli("test-alert", "--config", str(path))
    assert result.returncode == 1
    assert "✓ good" in result.stdout and "✗ bad: webhook bad: HTTP 500" in result.stdout
    tests = [json.loads(r.get_data()) for r, _ in httpserver.log if r.path == "/ok"]
    assert tests[-1]["event"]["kind"] == "test"


def test_poll_summarises_a_large_watchlist(tmp_path: Path, influx_db: tuple[str, str]) -> None:
    names = [f"user_{i}" for i in range(250)]
    replay = tmp_path / "big.csv"
    replay.write_text(
        "timestamp,platform,account,followers\n"
        + "".join(f"2026-01-01T00:00:00Z,x,{n},{1000 + i}\n" for i, n in enumerate(names))
    )
    path = tmp_path / "big.toml"
    path.write_text(
        f'[service]\ndata_dir = "data"\n[influxdb]\nurl = "{influx_db[0]}"\n'
        f'database = "{influx_db[1]}"\n[platforms.x]\n'
        f'replay = {{ file = "{replay}" }}\n'
        + "".join(f'[[watch]]\nplatform = "x"\nhandle = "{n}"\n' for n in names)
    )
    result = cli("poll", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "250 accounts" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("│ x"))
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["x", "250", "250", "0", "0"]
    assert "user_17 " not in result.stdout  # quiet accounts are not listed one by one
