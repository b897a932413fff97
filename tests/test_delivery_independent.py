"""A receiver that accepts and never answers holds up no poll, in `run` nor in a one-shot `poll`."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.alerts.outbox import Outbox
from followerwatch.clock import SystemClock
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.models import Event, EventKind
from followerwatch.notify.webhook import WebhookConfig, WebhookNotifier
from followerwatch.state.db import StateDB
from service_proc import run_cli, start_service, stop_service, wait_for


class SilentReceiver:
    """A real listening socket: accepts every connection, reads nothing, never answers."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted.append(conn)  # held open, unanswered, until close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.accepted:
            conn.close()
        self._sock.close()


@pytest.fixture
def silent() -> Iterator[SilentReceiver]:
    receiver = SilentReceiver()
    yield receiver
    receiver.close()


def users(fake: FakeX) -> None:
    falling, other = make_user(1), make_user(2)
    falling["username"], other["username"] = "falling", "other"
    falling["public_metrics"]["followers_count"] = 1_000_100
    fake.add(falling, other)


def set_falling(fake: FakeX, count: int) -> None:
    fake.users["falling"]["public_metrics"]["followers_count"] = count


def write_config(
    tmp_path: Path, influx: tuple[str, str], fake: FakeX, hook: str, extra: str = ""
) -> Path:
    config = tmp_path / "fw.toml"
    config.write_text(f"""
[service]
data_dir = "data"
log_format = "json"

[influxdb]
url = "{influx[0]}"
database = "{influx[1]}"

[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "1s"

[alerts]
{extra}

[[notifiers]]
type = "webhook"
url = "{hook}"
timeout = "300s"

[[watch]]
platform = "x"
handle = "falling"
below = 1_000_000

[[watch]]
platform = "x"
handle = "other"
""")
    return config


def stored_polls(influxd: TempInfluxd, db: str, start: datetime, end: datetime) -> int:
    """How many counts of @other InfluxDB holds with a time in [start, end)."""
    result = influxd.query(
        "SELECT count(followers) FROM followers WHERE account = 'other' "
        f"AND time >= '{start.isoformat()}' AND time < '{end.isoformat()}'",
        database=db,
    )
    series = result["results"][0].get("series")  # type: ignore[index]
    return int(series[0]["values"][0][1]) if series else 0


def test_a_receiver_that_never_answers_holds_up_no_poll_of_run(
    tmp_path: Path,
    influxd: TempInfluxd,
    influx_db: tuple[str, str],
    httpserver: HTTPServer,
    silent: SilentReceiver,
) -> None:
    fake = FakeX(httpserver, SystemClock())
    fake.limit = fake.remaining = 10**6
    users(fake)
    proc = start_service(write_config(tmp_path, influx_db, fake, silent.url))
    try:
        wait_for(lambda: len(fake.seen) >= 1, "the first poll")
        set_falling(fake, 999_000)  # the next poll raises an alert for the silent receiver
        wait_for(lambda: len(silent.accepted) >= 1, "the alert's connection to the receiver")
        start = datetime.now(UTC)
        window = 10.0
        time.sleep(window + 1.5)  # the measured window, plus time for its last write to land
        out = stop_service(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    polls = stored_polls(influxd, influx_db[1], start, start + timedelta(seconds=window))
    # One poll a second: every one on time although the alert's request hung the whole while.
    assert polls >= window - 1, out[-3000:]
    assert "Traceback" not in out


def test_a_one_shot_poll_gives_up_on_delivery_in_time_and_the_next_run_delivers(
    tmp_path: Path,
    influx_db: tuple[str, str],
    httpserver: HTTPServer,
    silent: SilentReceiver,
) -> None:
    fake = FakeX(httpserver, SystemClock())
    users(fake)
    config = write_config(tmp_path, influx_db, fake, silent.url, 'poll_delivery_timeout = "2s"')
    assert run_cli("poll", "--config", str(config)).returncode == 0
    set_falling(fake, 999_000)

    started = time.monotonic()
    polled = run_cli("poll", "--config", str(config))
    took = time.monotonic() - started
    assert polled.returncode == 0, polled.stdout + polled.stderr
    assert "dropped below 1,000,000" in polled.stdout
    assert len(silent.accepted) >= 1  # delivery was tried
    # The 2 s delivery deadline, not the webhook's 300 s timeout, plus start-up and the poll.
    assert took < 10, polled.stderr
    assert "alert delivery cut short" in polled.stdout + polled.stderr
    listed = run_cli("events", "--config", str(config))
    assert "webhook: pending" in listed.stdout, listed.stdout

    # The receiver works again: the next run sends what the poll left in the outbox.
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    config.write_text(config.read_text().replace(silent.url, httpserver.url_for("/hook")))
    proc = start_service(config)
    try:
        wait_for(lambda: any(req.path == "/hook" for req, _ in httpserver.log), "the pending alert")
        out = stop_service(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    hooks = [req for req, _ in httpserver.log if req.path == "/hook"]
    assert len(hooks) == 1 and b"dropped below 1,000,000" in hooks[0].get_data()
    assert "webhook: delivered" in run_cli("events", "--config", str(config)).stdout


async def test_an_attempt_has_its_own_deadline_whatever_the_notifier_timeout(
    tmp_path: Path, silent: SilentReceiver
) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    event = Event(
        "e1", datetime.now(UTC), "x", "a", "below:10", EventKind.DROPPED_BELOW, 9, 10, "m"
    )
    state.events.add_events([event], lambda e: ["hook"])
    config = WebhookConfig(type="webhook", name="hook", url=silent.url, timeout=300.0)
    async with httpx.AsyncClient() as client:
        outbox = Outbox(
            state, [WebhookNotifier(config, client)], SystemClock(), attempt_timeout=0.5
        )
        started = time.monotonic()
        assert await asyncio.wait_for(outbox.deliver_due(), 10) == 0
        took = time.monotonic() - started
    [delivery] = state.deliveries.pending("hook")
    state.close()
    assert took < 3  # the outbox's 0.5 s, not the webhook's 300 s
    assert delivery.attempts == 1 and delivery.next_attempt > time.time()  # retried later
    assert len(silent.accepted) == 1
