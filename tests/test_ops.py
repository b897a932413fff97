"""/healthz, /readyz and /metrics of a real `followerwatch run` against a real influxd."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.config.settings import load_config
from followerwatch.demo.influxd import TempInfluxd, free_port
from followerwatch.service.app import App
from followerwatch.service.ops import OpsServer
from service_proc import start_service, stop_service
from service_proc import wait_for as wait_for_service

DB = "ops"
# Longer and less eager than the default: most conditions here are HTTP requests to the service.
wait_for = partial(wait_for_service, timeout=30.0, every=0.1)


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None


def samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{base}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[TempInfluxd]:
    with TempInfluxd(directory=tmp_path / "influxd") as server:
        server.query(f'CREATE DATABASE "{DB}"')
        yield server


def test_health_readiness_and_metrics_of_a_running_service(
    tmp_path: Path, own_influxd: TempInfluxd, httpserver: HTTPServer
) -> None:
    fake = FakeX(httpserver, SystemClock())
    user = make_user(1)
    user["username"] = "aplusk"
    user["public_metrics"]["followers_count"] = 1_000_100
    fake.add(user)
    # The receiver is down: the alert stays pending, which /metrics must show.
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=503)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "fw.toml"
    config.write_text(f"""
[service]
data_dir = "data"
log_format = "json"
ops_address = "127.0.0.1:{port}"
[influxdb]
url = "{own_influxd.url}"
database = "{DB}"
[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "0.5s"
[alerts]
backoff_initial = "30s"
[[notifiers]]
type = "webhook"
url = "{httpserver.url_for("/hook")}"
[[watch]]
platform = "x"
handle = "aplusk"
below = 1_000_000
""")
    proc = start_service(config)
    try:
        wait_for(lambda: (r := get(f"{base}/healthz")) is not None and r.status_code == 200, "up")
        assert httpx.get(f"{base}/healthz").json() == {"alive": True}
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, "ready")
        assert httpx.get(f"{base}/readyz").json()["influxdb"] == "ok"
        assert httpx.get(f"{base}/nope").status_code == 404
        assert httpx.post(f"{base}/healthz").status_code == 405

        wait_for(lambda: len(fake.seen) >= 2, "two polls")
        fake.users["aplusk"]["public_metrics"]["followers_count"] = 999_000
        key = ("followerwatch_events_total", (("kind", "dropped_below"),))
        wait_for(lambda: samples(base).get(key) == 1, "the event in /metrics")
        wait_for(
            lambda: samples(base).get(("followerwatch_alerts_pending", ())) == 1,
            "the undelivered alert in /metrics",
        )
        m = samples(base)
        x = (("platform", "x"),)
        assert m[("followerwatch_polls_total", (("outcome", "ok"), ("platform", "x")))] >= 2
        assert m[("followerwatch_poll_duration_seconds_count", x)] >= 2
        assert 0 < m[("followerwatch_ratelimit_remaining", x)] < fake.limit
        assert m[("followerwatch_followers", (("account", "aplusk"), ("platform", "x")))] == 999_000
        assert m[("followerwatch_last_successful_poll_age_seconds", x)] < 5
        assert m[("followerwatch_spool_total", (("state", "added"),))] >= 2
        assert m[("followerwatch_spool_points", ())] >= 0
        assert m[("followerwatch_ready", ())] == 1

        own_influxd.suspend()
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 503, "not ready", timeout=20)
        detail = httpx.get(f"{base}/readyz").json()
        assert detail["ready"] is False and detail["influxdb"] != "ok"
        assert httpx.get(f"{base}/healthz").status_code == 200  # alive all the same
        assert samples(base)[("followerwatch_ready", ())] == 0
        # Polling goes on into the spool while InfluxDB is away.
        during = len(fake.seen)
        wait_for(lambda: len(fake.seen) >= during + 2, "polls during the outage")

        own_influxd.resume()
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, "ready again", timeout=20)
    finally:
        out = stop_service(proc, timeout=20)
    assert proc.returncode == 0, out
    assert "ops endpoint listening" in out and TOKEN not in out
    logged = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(r.get("event") == "not ready: influxdb check failed" for r in logged), out
    assert get(f"{base}/healthz") is None  # the endpoint goes away with the process


def test_an_address_in_use_does_not_stop_polling(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    fake = FakeX(httpserver, SystemClock())
    fake.add(make_user(1))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "fw.toml"
        config.write_text(f"""
[service]
log_format = "json"
ops_address = "127.0.0.1:{port}"
[influxdb]
url = "{influx_db[0]}"
database = "{influx_db[1]}"
[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "0.3s"
[[watch]]
platform = "x"
handle = "user_001"
""")
        proc = start_service(config)
        try:
            wait_for(lambda: len(fake.seen) >= 2, "polls without the endpoint")
        finally:
            out = stop_service(proc, timeout=20)
    assert proc.returncode == 0, out
    assert "ops endpoint cannot listen" in out


async def test_bad_requests_head_and_a_stopping_service(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    config = tmp_path / "fw.toml"
    config.write_text(f"""
[service]
data_dir = "data"
[influxdb]
url = "{influx_db[0]}"
database = "{influx_db[1]}"
""")
    running = {"yes": True}
    async with App(load_config(config)) as app:
        server = OpsServer(app, "127.0.0.1", 0, lambda: running["yes"])
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GARBAGE\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                await server.check_influx()
                assert (await client.get("/readyz")).status_code == 200
                running["yes"] = False
                assert (await client.get("/healthz")).status_code == 503
                assert (await client.get("/readyz")).json()["polling"] is False
        finally:
            await server.stop()
