"""A full data disk during an InfluxDB outage: a real tmpfs, the real service, the real influxd."""

from __future__ import annotations

import errno
import json
import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.demo.influxd import TempInfluxd, free_port
from followerwatch.store.spool import Spool
from service_proc import start_service, stop_service
from service_proc import wait_for as wait_for_service
from smallfs import small_fs

DB = "diskfull"
NAMES = ("ann", "ben", "cat")
wait_for = partial(wait_for_service, timeout=40.0, every=0.1)


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[TempInfluxd]:
    with TempInfluxd(directory=tmp_path / "influxd") as server:
        server.query(f'CREATE DATABASE "{DB}"')
        yield server


def fill(path: Path) -> None:
    """Write a filler file until the filesystem has no byte left."""
    with path.open("wb", buffering=0) as fh:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


def readyz(base: str) -> tuple[int, dict[str, object]]:
    try:
        response = httpx.get(f"{base}/readyz", timeout=5)
    except httpx.TransportError:
        return 0, {}
    return response.status_code, response.json()


def metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def served(fake: FakeX) -> int:
    """Readings the fake X handed out (one per account per request)."""
    return sum(len(s.args["usernames"].split(",")) for s in fake.seen)


def setup(
    tmp_path: Path, influxd: TempInfluxd, httpserver: HTTPServer, memory_buffer: int
) -> tuple[FakeX, Path, str]:
    fake = FakeX(httpserver, SystemClock())
    fake.limit = fake.remaining = 10**9  # about the disk, not X's rate limit
    for i, name in enumerate(NAMES):
        user = make_user(i)
        user["username"] = name
        user["public_metrics"]["followers_count"] = 1_000_100
        fake.add(user)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    port = free_port()
    config = tmp_path / "fw.toml"
    config.write_text(
        f"""
[service]
data_dir = "data"
log_format = "json"
ops_address = "127.0.0.1:{port}"
memory_buffer = {memory_buffer}
[influxdb]
url = "{influxd.url}"
database = "{DB}"
precision = "ms"
timeout = "1s"
[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "0.25s"
[alerts]
backoff_initial = "1s"
[[notifiers]]
type = "webhook"
url = "{httpserver.url_for("/hook")}"
"""
        + "".join(f'[[watch]]\nplatform = "x"\nhandle = "{n}"\nbelow = 1_000_000\n' for n in NAMES)
    )
    return fake, config, f"http://127.0.0.1:{port}"


def stored_followers(influxd: TempInfluxd) -> int:
    result = influxd.query("SELECT count(followers) FROM followers", database=DB)
    return int(result["results"][0]["series"][0]["values"][0][1])  # type: ignore[index]


def spooled_followers(data: Path) -> int:
    with sqlite3.connect(data / "spool.sqlite3") as db:
        # A row per add: its lines joined by newlines.
        chunks = db.execute("SELECT lines FROM chunks").fetchall()
    return sum(ln.startswith("followers,") for (lines,) in chunks for ln in lines.split("\n"))


def hooks(httpserver: HTTPServer) -> list[dict[str, object]]:
    return [json.loads(r.data) for r, _ in httpserver.log if r.path == "/hook"]


def test_a_full_disk_during_an_outage_loses_no_reading_and_fires_the_crossing_once(
    tmp_path: Path, own_influxd: TempInfluxd, httpserver: HTTPServer
) -> None:
    data = tmp_path / "data"
    fake, config, base = setup(tmp_path, own_influxd, httpserver, memory_buffer=100_000)
    with small_fs(data, "3m"):
        own_influxd.suspend()  # InfluxDB is out: everything goes through the spool on this disk
        proc = start_service(config)
        try:
            wait_for(lambda: served(fake) >= 3 * len(NAMES), "polls before the disk fills")
            filler = data / "filler"
            fill(filler)
            wait_for(lambda: str(readyz(base)[1].get("disk", "")).startswith("disk full"), "full")
            status, detail = readyz(base)
            assert status == 503 and "full" in str(detail["disk"])
            # The crossing happens while nothing can be committed.
            for user in fake.users.values():
                user["public_metrics"]["followers_count"] = 999_000
            during = served(fake)
            wait_for(lambda: served(fake) >= during + 8 * len(NAMES), "polls on a full disk")
            held = metrics(base)[("followerwatch_memory_buffer_readings", ())]
            assert held > 0
            assert hooks(httpserver) == []  # not committed, so not delivered yet

            filler.unlink()  # space returns: writing resumes by itself
            wait_for(lambda: readyz(base)[1].get("disk") == "ok", "the disk writable again")
            own_influxd.resume()
            wait_for(lambda: readyz(base)[0] == 200, "ready", timeout=30)
            wait_for(lambda: metrics(base)[("followerwatch_spool_points", ())] == 0, "drained")
            wait_for(lambda: len(hooks(httpserver)) >= len(NAMES), "the alerts")
            m = metrics(base)
        finally:
            out = stop_service(proc, timeout=30)
        assert proc.returncode == 0, out[-3000:]
        assert "Traceback" not in out and "poll failed unexpectedly" not in out, out[-3000:]
        # Every reading served, before, during and after the full disk, is in InfluxDB (or, for
        # the last polls, still in the spool), exactly once.
        assert stored_followers(own_influxd) + spooled_followers(data) == served(fake)
        assert m[("followerwatch_readings_dropped_disk_full_total", ())] == 0
        assert m[("followerwatch_spool_total", (("state", "dropped_disk_full"),))] == 0
        with sqlite3.connect(data / "state.sqlite3") as db:
            fired = db.execute(
                "SELECT account, count(*) FROM events WHERE kind = 'dropped_below' GROUP BY account"
            ).fetchall()
        assert sorted(fired) == [(n, 1) for n in NAMES]  # each crossing once: none lost or doubled
        sent = hooks(httpserver)
        assert len(sent) == len(NAMES), sent
    logged = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    events = [r.get("event", "") for r in logged]
    assert any(str(e).startswith("disk full") for e in events), events
    assert any(str(e).startswith("disk has space again") for e in events), events


def test_past_the_memory_bound_readings_are_dropped_and_counted(
    tmp_path: Path, own_influxd: TempInfluxd, httpserver: HTTPServer
) -> None:
    data = tmp_path / "data"
    bound = 2 * len(NAMES)  # two polls' readings
    fake, config, base = setup(tmp_path, own_influxd, httpserver, memory_buffer=bound)
    with small_fs(data, "3m"):
        own_influxd.suspend()
        proc = start_service(config)
        try:
            wait_for(lambda: served(fake) >= 2 * len(NAMES), "polls before the disk fills")
            filler = data / "filler"
            fill(filler)
            wait_for(lambda: str(readyz(base)[1].get("disk", "")).startswith("disk full"), "full")
            key = ("followerwatch_readings_dropped_disk_full_total", ())
            wait_for(lambda: metrics(base)[key] >= 4 * len(NAMES), "readings dropped")
            assert metrics(base)[("followerwatch_memory_buffer_readings", ())] <= bound
            ledger = metrics(base)
            # Counted in the ledger at once (in memory until the disk takes it), and balanced.
            lost = ledger[("followerwatch_spool_total", (("state", "dropped_disk_full"),))]
            assert lost >= ledger[key] > 0
            filler.unlink()
            wait_for(lambda: readyz(base)[1].get("disk") == "ok", "the disk writable again")
            own_influxd.resume()
            wait_for(lambda: readyz(base)[0] == 200, "ready", timeout=30)
            wait_for(lambda: metrics(base)[("followerwatch_spool_points", ())] == 0, "drained")
            dropped = metrics(base)[key]
        finally:
            out = stop_service(proc, timeout=30)
        assert proc.returncode == 0, out[-3000:]
        spool = Spool(data / "spool.sqlite3")
        counts = spool.counts()
        spool.close()
        assert counts.balanced and counts.dropped_disk_full > 0  # in the ledger on disk too
        assert counts.dropped == counts.dead_lettered == 0
        # What was not dropped arrived; what was dropped is exactly what is missing.
        assert stored_followers(own_influxd) + spooled_followers(data) == served(fake) - dropped
    logged = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any("memory buffer full" in str(r.get("event")) for r in logged), out[-3000:]
