"""The real `followerwatch run` process, stopped and restarted between polls against a fake X."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from service_proc import start_service, stop_service, wait_for


class Service:
    """`followerwatch run` as a child process."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = start_service(self.config)

    def stop(self) -> str:
        assert self.proc is not None
        out = stop_service(self.proc)
        assert self.proc.returncode == 0, out
        return out


@pytest.fixture
def service(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> Iterator[tuple[Service, FakeX]]:
    fake = FakeX(httpserver, SystemClock())
    user = make_user(1)
    user["username"] = "aplusk"
    user["public_metrics"]["followers_count"] = 1_000_100
    fake.add(user)
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    config = tmp_path / "fw.toml"
    config.write_text(f"""
[service]
data_dir = "data"
log_format = "json"

[influxdb]
url = "{influx_db[0]}"
database = "{influx_db[1]}"

[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "0.3s"

[[notifiers]]
type = "webhook"
url = "{httpserver.url_for("/hook")}"

[[watch]]
platform = "x"
handle = "aplusk"
below = 1_000_000
""")
    svc = Service(config)
    yield svc, fake
    if svc.proc is not None and svc.proc.poll() is None:
        svc.proc.kill()


def set_followers(fake: FakeX, count: int) -> None:
    fake.users["aplusk"]["public_metrics"]["followers_count"] = count


def alerts(httpserver: HTTPServer) -> list[int]:
    return [
        json.loads(req.get_data())["event"]["value"]
        for req, _ in httpserver.log
        if req.path == "/hook"
    ]


async def test_restart_neither_repeats_nor_misses_an_event(
    service: tuple[Service, FakeX],
    httpserver: HTTPServer,
    influx_db: tuple[str, str],
) -> None:
    svc, fake = service
    polls = lambda: len(fake.seen)  # noqa: E731

    svc.start()
    wait_for(lambda: polls() >= 2, "two polls")
    set_followers(fake, 999_990)
    wait_for(lambda: alerts(httpserver) == [999_990], "the first alert")
    svc.stop()

    # Still below after the restart: no repeated event.
    set_followers(fake, 999_995)
    svc.start()
    start = polls()
    wait_for(lambda: polls() >= start + 3, "three polls after restart")
    set_followers(fake, 1_000_020)
    start = polls()
    wait_for(lambda: polls() >= start + 2, "the re-arming polls")
    svc.stop()
    assert alerts(httpserver) == [999_990]

    # The crossing happens while the service is down: the first poll after restart reports it.
    set_followers(fake, 999_980)
    start = polls()
    svc.start()
    wait_for(lambda: len(alerts(httpserver)) == 2, "the missed crossing")
    first_poll_after = polls() - start
    output = svc.stop()
    assert alerts(httpserver) == [999_990, 999_980]
    assert first_poll_after >= 1
    assert "Traceback" not in output and TOKEN not in output

    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        series = await store.query("SELECT value FROM followerwatch_events")
    assert [row[1] for row in series[0]["values"]] == [999_990, 999_980]


async def test_sigterm_during_a_poll_finishes_the_write_and_exits_0(
    service: tuple[Service, FakeX],
    httpserver: HTTPServer,
    influx_db: tuple[str, str],
) -> None:
    svc, fake = service
    slow = {"on": False}
    started = threading.Event()
    answer = fake._by_usernames

    def delayed(request):  # type: ignore[no-untyped-def]
        if slow["on"]:
            slow["on"] = False
            started.set()
            time.sleep(1.5)
        return answer(request)

    httpserver.clear_all_handlers()
    httpserver.expect_request("/2/users/by").respond_with_handler(delayed)
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    svc.start()
    wait_for(lambda: len(fake.seen) >= 1, "the first poll")
    time.sleep(0.5)
    set_followers(fake, 1_000_222)
    slow["on"] = True
    assert started.wait(10), "the slow poll never started"
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGTERM)  # while the server is still answering
    sent_at = time.monotonic()
    out, _ = svc.proc.communicate(timeout=15)
    assert svc.proc.returncode == 0, out
    assert '"clean": true' in out
    assert time.monotonic() - sent_at >= 1.0, out  # it waited for the answer instead of dying

    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        series = await store.query("SELECT last(followers) FROM followers")
    assert series[0]["values"][0][1] == 1_000_222


async def test_sigkill_between_storing_and_delivering_an_event_loses_nothing(
    service: tuple[Service, FakeX],
    httpserver: HTTPServer,
    tmp_path: Path,
) -> None:
    svc, fake = service
    hang = threading.Event()
    hung = threading.Event()

    def receiver(request):  # type: ignore[no-untyped-def]
        if not hang.is_set():
            hang.set()
            hung.set()
            time.sleep(3)  # the service is killed while it waits for this answer
            return Response("", status=503)
        return Response("", status=204)

    httpserver.clear_all_handlers()
    httpserver.expect_request("/2/users/by").respond_with_handler(fake._by_usernames)
    httpserver.expect_request("/hook", method="POST").respond_with_handler(receiver)
    svc.start()
    wait_for(lambda: len(fake.seen) >= 1, "the first poll")
    set_followers(fake, 999_000)
    assert hung.wait(20), "the alert was never sent"
    assert svc.proc is not None
    svc.proc.kill()  # SIGKILL: no chance to record anything
    svc.proc.wait(10)

    state = StateDB(tmp_path / "data" / "state.sqlite3")
    [(event, deliveries)] = state.events.recent()
    state.close()
    assert deliveries == {"webhook": "pending"}

    svc.start()
    wait_for(lambda: len(alerts(httpserver)) >= 2, "redelivery after the restart")
    svc.stop()
    hooks = [(req, resp) for req, resp in httpserver.log if req.path == "/hook"]
    assert [resp.status_code for _, resp in hooks] == [503, 204]
    assert {json.loads(req.get_data())["event"]["id"] for req, _ in hooks} == {event.id}
    state = StateDB(tmp_path / "data" / "state.sqlite3")
    assert state.events.recent()[0][1] == {"webhook": "delivered"}
    state.close()
