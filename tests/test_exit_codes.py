"""`poll` tells a cron job the truth (exit 0/1/2), and `create_database` holds for every writer.

Real `followerwatch` processes, the real influxd fixture (and its auth-enabled sibling), and a
fake Bluesky AppView for the platform side.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import httpx
from pytest_httpserver import HTTPServer

from fakes.fake_bluesky import FakeBluesky
from followerwatch.clock import SystemClock
from followerwatch.demo.influxd import TempInfluxd, free_port
from followerwatch.store.influx_v1 import InfluxV1Store
from service_proc import run_cli

FOUND = "user1.bsky.social"
MISSING = "nobody-here.bsky.social"
SPOOLED = re.compile(r"^followerwatch: (\d+) readings? spooled for later: (.+)$", re.M)


def write_config(
    tmp_path: Path,
    url: str,
    db: str,
    *,
    bluesky: FakeBluesky | None = None,
    handles: tuple[str, ...] = (FOUND,),
    replay: bool = False,
    influx: str = "",
) -> Path:
    """A config with a Bluesky watchlist on the fake and/or one X account from a replay file."""
    parts = [
        f'[service]\ndata_dir = "{tmp_path / "data"}"\nlog_format = "json"\n',
        f'[influxdb]\nurl = "{url}"\ndatabase = "{db}"\n{influx}\n',
    ]
    if bluesky is not None:
        parts.append(f'[platforms.bluesky]\nbase_url = "{bluesky.base_url}"\n')
        parts += [f'[[watch]]\nplatform = "bluesky"\nhandle = "{h}"\n' for h in handles]
    if replay:
        (tmp_path / "replay.csv").write_text(
            "timestamp,platform,account,followers\n2026-01-01T00:00:00Z,x,aplusk,1000100\n"
        )
        parts.append(f'[platforms.x]\nreplay = {{ file = "{tmp_path / "replay.csv"}" }}\n')
        parts.append('[[watch]]\nplatform = "x"\nhandle = "aplusk"\n')
    path = tmp_path / "fw.toml"
    path.write_text("\n".join(parts))
    return path


def fake_bluesky(httpserver: HTTPServer) -> FakeBluesky:
    fake = FakeBluesky(httpserver, SystemClock())
    fake.add(FakeBluesky.make_profile(1, followersCount=250_000))
    return fake


async def _query(url: str, db: str, influxql: str) -> list[list[object]]:
    async with httpx.AsyncClient() as client:
        series = await InfluxV1Store(client, url=url, database=db).query(influxql)
    return series[0]["values"] if series else []


def followers(url: str, db: str) -> list[object]:
    """The followers counts stored in `db`, oldest first."""
    return [row[1] for row in asyncio.run(_query(url, db, "SELECT followers FROM followers"))]


def databases(url: str) -> set[str]:
    return {str(row[0]) for row in asyncio.run(_query(url, "_internal", "SHOW DATABASES"))}


def spooled(stderr: str) -> tuple[int, str]:
    """The count and reason of the one "N readings spooled for later" line."""
    lines = SPOOLED.findall(stderr)
    assert len(lines) == 1, stderr
    return int(lines[0][0]), lines[0][1]


# -- exit 0: every reading fetched is in InfluxDB --------------------------------------------


def test_an_account_not_found_is_reported_and_the_run_still_exits_0(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    fake = fake_bluesky(httpserver)
    path = write_config(tmp_path, *influx_db, bluesky=fake, handles=(FOUND, MISSING))
    result = run_cli("poll", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if MISSING in line)
    assert "not_found" in row
    assert "spooled" not in result.stderr and "failed" not in result.stderr
    assert followers(*influx_db) == [250_000]


# -- exit 1: readings could not be written now -----------------------------------------------


def test_unreachable_influxdb_exits_1_with_the_spooled_count_and_reason(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    path = write_config(tmp_path, dead, "fw", bluesky=fake_bluesky(httpserver), replay=True)
    result = run_cli("poll", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    count, reason = spooled(result.stderr)
    assert count == 2  # one Bluesky and one X reading
    assert "cannot reach the server" in reason and dead in reason


def test_refused_credentials_exit_1_with_the_spooled_count_and_reason(
    tmp_path: Path,
    influxd_auth: TempInfluxd,
    influx_admin: tuple[str, str],
    httpserver: HTTPServer,
) -> None:
    user, password = influx_admin
    wrong = "not-the-Pa55word"
    db = f"auth_{uuid.uuid4().hex[:8]}"
    path = write_config(
        tmp_path,
        influxd_auth.url,
        db,
        bluesky=fake_bluesky(httpserver),
        influx=f'username = "{user}"\npassword = "{wrong}"',
    )
    result = run_cli("poll", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    count, reason = spooled(result.stderr)
    assert count == 1
    assert "refused the credentials (401)" in reason
    assert wrong not in result.stdout + result.stderr and password not in result.stderr


def test_a_missing_database_without_create_database_exits_1_and_says_how_to_fix_it(
    tmp_path: Path, influxd: TempInfluxd, httpserver: HTTPServer
) -> None:
    db = f"missing_{uuid.uuid4().hex[:8]}"
    path = write_config(tmp_path, influxd.url, db, bluesky=fake_bluesky(httpserver))
    result = run_cli("poll", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    count, reason = spooled(result.stderr)
    assert count == 1
    assert "database not found" in reason and "influxdb.create_database = true" in reason
    assert db not in databases(influxd.url)


# -- exit 1: a whole platform, or every account, failed --------------------------------------


def test_a_platform_refusing_every_request_exits_1_though_another_platform_worked(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    fake = fake_bluesky(httpserver)
    fake.require_auth = True  # 401 for every request: no credentials are configured
    path = write_config(tmp_path, *influx_db, bluesky=fake, replay=True)
    result = run_cli("poll", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1,000,100" in result.stdout  # X's reading, stored
    assert followers(*influx_db) == [1_000_100]
    assert "spooled" not in result.stderr, result.stderr
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("followerwatch: "))
    assert line.startswith("followerwatch: bluesky failed for every account: source auth:")


def test_a_platform_answering_503_for_every_request_exits_1(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    fake = fake_bluesky(httpserver)
    for _ in range(10):  # every attempt the source makes within the poll
        fake.serve(503, {"error": "Unavailable", "message": "down for maintenance"})
    path = write_config(tmp_path, *influx_db, bluesky=fake, replay=True)
    result = run_cli("poll", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "bluesky failed for every account: source error:" in result.stderr
    assert followers(*influx_db) == [1_000_100]


def test_every_account_failing_exits_1(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    path = write_config(tmp_path, *influx_db, bluesky=fake_bluesky(httpserver), handles=(MISSING,))
    result = run_cli("poll", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not_found" in result.stdout
    assert "followerwatch: every account failed" in result.stderr


# -- create_database -------------------------------------------------------------------------


def test_create_database_is_honoured_by_poll_and_import(
    tmp_path: Path, influxd: TempInfluxd, httpserver: HTTPServer
) -> None:
    db = f"created_{uuid.uuid4().hex[:8]}"
    path = write_config(
        tmp_path, influxd.url, db, bluesky=fake_bluesky(httpserver), influx="create_database = true"
    )
    polled = run_cli("poll", "--config", str(path))
    assert polled.returncode == 0, polled.stdout + polled.stderr
    assert followers(influxd.url, db) == [250_000]

    other = f"imported_{uuid.uuid4().hex[:8]}"
    path.write_text(path.read_text().replace(db, other))
    csv = tmp_path / "history.csv"
    csv.write_text(f"timestamp,platform,account,followers\n2025-06-01,bluesky,{FOUND},1234\n")
    imported = run_cli("import", str(csv), "--config", str(path))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert followers(influxd.url, other) == [1234]


def test_check_passes_on_a_missing_database_with_create_database_and_creates_nothing(
    tmp_path: Path, influxd: TempInfluxd
) -> None:
    db = f"later_{uuid.uuid4().hex[:8]}"
    before = databases(influxd.url)
    path = write_config(tmp_path, influxd.url, db, replay=True, influx="create_database = true")
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database missing; it will be created on first write" in result.stdout
    assert databases(influxd.url) == before

    path.write_text(path.read_text().replace("create_database = true", ""))
    refused = run_cli("check", "--config", str(path))
    assert refused.returncode == 1
    assert "create it, or set influxdb.create_database = true" in refused.stdout


def test_a_reading_influxdb_rejects_is_dead_lettered_and_exits_1(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    url, db = influx_db
    # A string `followers` field first: InfluxDB then refuses the integer reading (field type
    # conflict, a 400 partial write), in the replay's shard and in today's.
    conflict = "\n".join(
        f'followers,account=Ashton,platform=x followers="text" {t}'
        for t in ("1767225600000000000", f"{int(time.time())}000000000")
    )
    httpx.post(f"{url}/write", params={"db": db}, content=conflict, timeout=10).raise_for_status()
    path = write_config(tmp_path, url, db, replay=True)
    result = run_cli("poll", "--config", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    dead = tmp_path / "data"
    lines = [line for line in result.stderr.splitlines() if "rejected by InfluxDB" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("followerwatch: 1 reading rejected by InfluxDB (moved to ")
    assert str(dead) in lines[0] and "field type conflict" in lines[0]
    assert "spooled" not in result.stderr, result.stderr
