"""`followerwatch import`: CSV history into the real influxd, idempotent, bad rows by line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from followerwatch.store.importer import parse_csv
from followerwatch.store.influx_v1 import InfluxV1Store
from service_proc import run_cli as cli

CSV = """timestamp,platform,account,followers
2009-04-14T00:00:00Z,x,aplusk,880000
2009-04-15T00:00:00Z,x,aplusk,920000
2009-04-15,x,cnnbrk,940000
not-a-date,x,aplusk,1
2009-04-16T00:00:00Z,myspace,tom,5
2009-04-16T00:00:00Z,x,aplusk,-3
2009-04-16T00:00:00Z,x,aplusk,lots
2009-04-16T00:00:00+02:00,x,aplusk,960000
"""


def setup(tmp_path: Path, influx: tuple[str, str]) -> tuple[Path, Path]:
    config = tmp_path / "fw.toml"
    config.write_text(f"""
[service]
data_dir = "data"
log_format = "json"

[influxdb]
url = "{influx[0]}"
database = "{influx[1]}"

[platforms.x]
bearer_token = "t0ken"

[[watch]]
platform = "x"
handle = "aplusk"
labels = {{ campaign = "unfollow-day" }}
""")
    data = tmp_path / "history.csv"
    data.write_text(CSV)
    return config, data


async def stored(influx: tuple[str, str]) -> list[list[Any]]:
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx[0], database=influx[1])
        series = await store.query("SELECT followers, account, campaign FROM followers", epoch="s")
    return [row for s in series for row in s["values"]]


async def test_import_twice_changes_nothing(tmp_path: Path, influx_db: tuple[str, str]) -> None:
    config, data = setup(tmp_path, influx_db)
    first = cli("import", str(data), "--config", str(config))
    assert first.returncode == 1  # bad rows present; the good ones are written
    assert "4 rows for 2 accounts, 4 bad rows" in first.stdout
    for line, reason in (
        (5, "not ISO 8601"),
        (6, "unknown platform 'myspace'"),
        (7, "cannot be negative"),
        (8, "not a whole number"),
    ):
        assert f"history.csv:{line}: " in first.stdout and reason in first.stdout
    rows = await stored(influx_db)
    expected = [
        [1239667200, 880000, "aplusk", "unfollow-day"],
        [1239753600, 920000, "aplusk", "unfollow-day"],
        [1239753600, 940000, "cnnbrk", None],
        [1239832800, 960000, "aplusk", "unfollow-day"],
    ]
    assert sorted(rows, key=lambda r: (r[2], r[0])) == sorted(expected, key=lambda r: (r[2], r[0]))

    second = cli("import", str(data), "--config", str(config))
    assert second.returncode == 1
    assert sorted(await stored(influx_db), key=lambda r: (r[2], r[0])) == sorted(
        expected, key=lambda r: (r[2], r[0])
    )
    count = await _count(influx_db)
    assert count == 4


async def _count(influx: tuple[str, str]) -> int:
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx[0], database=influx[1])
        series = await store.query("SELECT count(followers) FROM followers")
    return int(series[0]["values"][0][1])


async def test_dry_run_writes_nothing(tmp_path: Path, influx_db: tuple[str, str]) -> None:
    config, data = setup(tmp_path, influx_db)
    result = cli("import", str(data), "--dry-run", "--config", str(config))
    assert "dry run: nothing written" in result.stdout and result.returncode == 1
    assert await stored(influx_db) == []


async def test_a_clean_file_exits_0(tmp_path: Path, influx_db: tuple[str, str]) -> None:
    config, data = setup(tmp_path, influx_db)
    data.write_text("\n".join(CSV.splitlines()[:4]) + "\n")
    result = cli("import", str(data), "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert await _count(influx_db) == 3


def test_missing_columns_and_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text('timestamp,platform,account,followers\n2009-04-14,x,"a\nb",5\nx,x,x,x\n')
    parsed = parse_csv(path, {}, "s")
    # The bad account (a newline in a tag) ends on line 3; the next row is line 4.
    assert [b.line for b in parsed.bad] == [3, 4] and parsed.lines == []
    assert "control character" in parsed.bad[0].reason


def test_a_count_past_2_53_is_a_bad_row_not_a_lost_batch(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(
        "timestamp,platform,account,followers\n"
        "2009-04-14T00:00:00Z,x,a,9007199254740991\n"
        "2009-04-14T00:00:00Z,x,b,9007199254740992\n"
        "2009-04-14T00:00:00Z,x,c,9223372036854775808\n"
        "2009-04-14T00:00:00Z,x,d,12\n"
    )
    parsed = parse_csv(path, {}, "s")
    assert [(b.line, "larger than 9,007,199,254,740,991" in b.reason) for b in parsed.bad] == [
        (3, True),
        (4, True),
    ]
    assert [line.split(" ")[1] for line in parsed.lines] == [
        "followers=9007199254740991i",
        "followers=12i",
    ]
