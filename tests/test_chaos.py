"""Chaos: 1,000 accounts polled while the real influxd is down for 60 s; nothing is lost."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.demo.influxd import TempInfluxd
from service_proc import start_service, stop_service

ACCOUNTS = 1_000
OUTAGE_S = float(os.environ.get("FW_CHAOS_OUTAGE_S", "60"))
DB = "chaos"


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[TempInfluxd]:
    with TempInfluxd(directory=tmp_path / "influxd") as server:
        server.query(f'CREATE DATABASE "{DB}"')
        yield server


def spooled(path: Path) -> int:
    if not path.exists():
        return -1
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()[0])


def test_influxd_outage_loses_nothing_and_polling_never_stops(
    tmp_path: Path, own_influxd: TempInfluxd, httpserver: HTTPServer
) -> None:
    fake = FakeX(httpserver, SystemClock())
    fake.limit = fake.remaining = 10**9  # this test is about InfluxDB, not X's rate limit
    users = [make_user(i) for i in range(ACCOUNTS)]
    fake.add(*users)
    config = tmp_path / "fw.toml"
    config.write_text(
        f"""
[service]
data_dir = "data"
log_format = "json"
[influxdb]
url = "{own_influxd.url}"
database = "{DB}"
[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "2s"
"""
        + "".join(f'[[watch]]\nplatform = "x"\nhandle = "{u["username"]}"\n' for u in users)
    )
    proc = start_service(config)
    try:
        time.sleep(6)
        own_influxd.suspend()
        during_start = len(fake.seen)
        time.sleep(OUTAGE_S)
        during = len(fake.seen) - during_start
        backlog = spooled(tmp_path / "data" / "spool.sqlite3")
        own_influxd.resume()
        deadline = time.monotonic() + 60
        while spooled(tmp_path / "data" / "spool.sqlite3") != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        out = stop_service(proc, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-2000:]
    # Ten batches of 100 every 2 s: polling went on at full pace through the outage.
    assert during >= 10 * (OUTAGE_S / 2) * 0.8
    assert backlog >= during * 100 * 0.9
    served = sum(len(s.args["usernames"].split(",")) for s in fake.seen)
    result = own_influxd.query("SELECT count(followers) FROM followers", database=DB)
    stored = result["results"][0]["series"][0]["values"][0][1]  # type: ignore[index]
    assert stored == served  # every observation generated is in InfluxDB, once
