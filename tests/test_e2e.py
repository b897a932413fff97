"""End to end on a real influxd: replay → rules → events → webhook + followerwatch_events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from followerwatch.clock import ManualClock
from followerwatch.config.settings import Config, load_config
from followerwatch.service.app import App
from followerwatch.service.serve import serve
from followerwatch.sources.replay import ReplaySource
from followerwatch.store.influx_v1 import InfluxV1Store

COUNTS = [1_000_100, 1_000_010, 999_990, 999_995, 1_000_020, 999_980]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def replay_csv(tmp_path: Path, counts: list[int]) -> Path:
    path = tmp_path / "replay.csv"
    lines = ["timestamp,platform,account,followers"]
    lines += [
        f"{(T0 + timedelta(minutes=i)).isoformat()},x,aplusk,{c}" for i, c in enumerate(counts)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_config(
    tmp_path: Path,
    influx: tuple[str, str],
    webhook: str,
    hysteresis: int | None,
    counts: list[int] = COUNTS,
    interval: float = 60.0,
) -> Config:
    watch: dict[str, Any] = {"platform": "x", "handle": "aplusk", "below": 1_000_000}
    if hysteresis is not None:
        watch["hysteresis"] = hysteresis
    return load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path / "data")},
            "influxdb": {"url": influx[0], "database": influx[1]},
            "platforms": {
                "x": {"interval": interval, "replay": {"file": str(replay_csv(tmp_path, counts))}}
            },
            "notifiers": [{"type": "log"}, {"type": "webhook", "url": webhook}],
            "watch": [watch],
        },
    )


def received(httpserver: HTTPServer) -> list[dict[str, Any]]:
    return [json.loads(req.get_data()) for req, _ in httpserver.log]


async def stored_events(influx: tuple[str, str]) -> list[list[Any]]:
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx[0], database=influx[1])
        series = await store.query(
            'SELECT "kind", "rule", "value", "threshold", "message", "id" FROM followerwatch_events'
        )
    return [row for s in series for row in s["values"]]


@pytest.mark.parametrize(("hysteresis", "expected"), [(None, [999_990, 999_980]), (50, [999_990])])
async def test_replay_threshold_events_reach_webhook_and_influx(
    tmp_path: Path,
    influx_db: tuple[str, str],
    httpserver: HTTPServer,
    hysteresis: int | None,
    expected: list[int],
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    config = make_config(tmp_path, influx_db, httpserver.url_for("/hook"), hysteresis)
    async with App(config) as app:
        for _ in COUNTS:
            await app.poll_once()

    payloads = received(httpserver)
    assert [p["event"]["value"] for p in payloads] == expected
    first = payloads[0]
    assert first["version"] == 1 and first["source"] == "followerwatch"
    assert first["event"] == {
        "id": first["event"]["id"],
        "time": "2026-03-01T12:02:00Z",
        "platform": "x",
        "account": "aplusk",
        "rule": "below:1000000",
        "kind": "dropped_below",
        "value": 999_990,
        "threshold": 1_000_000,
        "message": "@aplusk on x dropped below 1,000,000 followers: now 999,990",
        "severity": "warning",
        "status": "firing",
        "labels": {},
        "score": None,  # issue 20: only the unusual rule's events have one
    }
    rows = await stored_events(influx_db)
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        ("dropped_below", "below:1000000", v, 1_000_000) for v in expected
    ]
    assert [r[6] for r in rows] == [p["event"]["id"] for p in payloads]

    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        series = await store.query("SELECT followers FROM followers WHERE account = 'aplusk'")
    assert [v[1] for v in series[0]["values"]] == COUNTS


async def test_scheduler_drives_the_replay(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    config = make_config(tmp_path, influx_db, httpserver.url_for("/hook"), None, interval=0.05)
    async with App(config) as app:
        source = app.sources["x"]
        assert isinstance(source, ReplaySource)
        assert await serve(app, until=lambda: source.exhausted, check_every=0.02)
    assert [p["event"]["value"] for p in received(httpserver)] == [999_990, 999_980]


async def test_webhook_retries_5xx_with_backoff_but_not_4xx(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    answers = iter([503, 502, 204, 400])

    def handler(request: Request) -> Response:
        return Response("", status=next(answers))

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    config = make_config(tmp_path, influx_db, httpserver.url_for("/hook"), None)
    clock = ManualClock(T0)
    async with App(config, clock=clock) as app:
        for _ in COUNTS:
            await app.poll_once()
        assert await app.outbox.drain(timeout=60)
        counts = app.state.deliveries.delivery_counts()
    # First event: 503, 502 (two backoff waits, the second longer), then 204. Second: 400, final.
    assert len(httpserver.log) == 4
    assert len(clock.sleeps) == 2
    # Backoff is 1 s then 2 s, each times a jitter in [0.5, 1.0]; drain sleeps 1 ms past due.
    slack = 0.0011
    assert 0.5 <= clock.sleeps[0] <= 1.0 + slack and 1.0 <= clock.sleeps[1] <= 2.0 + slack
    assert counts == {
        "delivered": 3,
        "failed": 1,
    }  # log x2 + webhook x1 delivered; webhook x1 failed


async def test_receiver_down_for_a_while_gets_the_alert_once_it_recovers(
    tmp_path: Path,
    influx_db: tuple[str, str],
    httpserver: HTTPServer,
) -> None:
    up = {"ok": False}

    def handler(request: Request) -> Response:
        return Response("", status=204 if up["ok"] else 503)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    config = make_config(tmp_path, influx_db, httpserver.url_for("/hook"), 50)
    async with App(config, clock=ManualClock(T0)) as app:
        for _ in COUNTS:
            await app.poll_once()
        assert not await app.outbox.drain(timeout=30)  # still down after 30 s of retries
        assert app.state.deliveries.delivery_counts() == {"delivered": 1, "pending": 1}
        up["ok"] = True
        assert await app.outbox.drain(timeout=3600)
        assert app.state.deliveries.delivery_counts() == {"delivered": 2}
    statuses = [resp.status_code for _, resp in httpserver.log]
    assert statuses[-1] == 204 and statuses.count(204) == 1
    assert set(statuses[:-1]) == {503} and len(statuses) >= 4
    ids = {json.loads(req.get_data())["event"]["id"] for req, _ in httpserver.log}
    assert len(ids) == 1


async def test_dry_run_changes_nothing(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    config = make_config(tmp_path, influx_db, httpserver.url_for("/hook"), None)
    async with App(config, dry_run=True) as app:
        rows = []
        for _ in COUNTS:
            rows += await app.poll_once()
        assert app.state.accounts.last_seen("x", "aplusk") is None
    assert [r.followers for r in rows] == COUNTS
    assert httpserver.log == []
    assert await stored_events(influx_db) == []
