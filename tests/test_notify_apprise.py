"""The `apprise` notifier: Apprise's real JSON plugin posting to a local receiver."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from pytest_httpserver import HTTPServer

from followerwatch import logs
from followerwatch.analysis.charts import AccountCharts
from followerwatch.config.settings import load_config
from followerwatch.errors import ConfigError, DeliveryError
from followerwatch.models import Event, EventKind, EventStatus, Point, Severity
from followerwatch.notify import build_notifier
from followerwatch.notify.apprise import AppriseConfig, AppriseNotifier
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.schema import event_point

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_event(
    status: EventStatus = EventStatus.FIRING, severity: Severity = Severity.WARNING
) -> Event:
    return Event(
        id=str(uuid.uuid4()),
        time=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        platform="x",
        account="aplusk",
        rule="below:1000000",
        kind=EventKind.DROPPED_BELOW,
        value=999_990,
        threshold=1_000_000,
        message="@aplusk on x dropped below 1,000,000 followers: now 999,990",
        severity=severity,
        status=status,
    )


def json_url(httpserver: HTTPServer, path: str, credentials: str = "") -> str:
    """An Apprise `json://` URL that posts to `path` on the local receiver."""
    return f"json://{credentials}{httpserver.host}:{httpserver.port}{path}"


def notifier(charts: AccountCharts | None = None, **config: Any) -> AppriseNotifier:
    return AppriseNotifier(AppriseConfig.model_validate({"type": "apprise", **config}), charts)


def received(httpserver: HTTPServer, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.get_data()) for r, _ in httpserver.log if r.path == path]


async def test_event_reaches_every_url_with_title_and_body(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a", method="POST").respond_with_data("ok")
    httpserver.expect_request("/b", method="POST").respond_with_data("ok")
    event = make_event()
    await notifier(urls=[json_url(httpserver, "/a"), json_url(httpserver, "/b")]).send(event)

    for path in ("/a", "/b"):
        [body] = received(httpserver, path)
        assert body["title"] == "followerwatch: aplusk on x (dropped_below)"
        assert body["message"] == event.message
        assert body["type"] == "warning"


@pytest.mark.parametrize(
    ("status", "severity", "kind"),
    [
        (EventStatus.RESOLVED, Severity.INFO, "success"),
        (EventStatus.FIRING, Severity.CRITICAL, "failure"),
        (EventStatus.ONCE, Severity.INFO, "info"),
    ],
)
async def test_type_follows_status_and_severity(
    httpserver: HTTPServer, status: EventStatus, severity: Severity, kind: str
) -> None:
    httpserver.expect_request("/t", method="POST").respond_with_data("ok")
    await notifier(
        urls=[json_url(httpserver, "/t")], title="{severity}/{status}: {account} {value:,}"
    ).send(make_event(status, severity))
    [body] = received(httpserver, "/t")
    assert body["type"] == kind
    assert body["title"] == f"{severity}/{status}: aplusk 999,990"


async def test_failing_service_is_a_retryable_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ok", method="POST").respond_with_data("ok")
    httpserver.expect_request("/down", method="POST").respond_with_data("no", status=500)
    apprise = notifier(
        name="phones", urls=[json_url(httpserver, "/ok"), json_url(httpserver, "/down")]
    )
    with pytest.raises(DeliveryError) as err:
        await apprise.send(make_event())
    assert not err.value.permanent and "phones" in str(err.value)
    assert len(received(httpserver, "/down")) == 1


async def test_failure_logs_never_show_the_url_secrets(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook/TOKEN-in-path", method="POST").respond_with_data(
        "no", status=500
    )
    url = json_url(httpserver, "/hook/TOKEN-in-path", "user:PASSW0RD-secret@")
    url += "?+X-Api-Key=HEADER-secret"
    config = AppriseConfig.model_validate({"type": "apprise", "urls": [url]})
    stream = io.StringIO()
    logs.register_secrets(config.secrets())
    # DEBUG on purpose: that is where Apprise prints request URLs, paths and headers.
    logs.configure("debug", "json", stream)
    with pytest.raises(DeliveryError) as err:
        await AppriseNotifier(config).send(make_event())

    # The request really carried the secrets, so their absence below is the notifier's doing.
    [(request, _)] = httpserver.log
    assert request.headers["X-Api-Key"] == "HEADER-secret"
    assert request.authorization is not None and request.authorization.password == "PASSW0RD-secret"
    # werkzeug's lines are the test receiver's own access log, not followerwatch's.
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    output = "\n".join(json.dumps(line) for line in lines if line["logger"] != "werkzeug")
    assert "Failed to send JSON POST notification" in output
    for secret in ("PASSW0RD-secret", "TOKEN-in-path", "HEADER-secret"):
        assert secret not in output and secret not in str(err.value)


def test_invalid_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    with pytest.raises(ConfigError) as err:
        load_config(
            None,
            {
                "service": {"data_dir": str(tmp_path)},
                "notifiers": [{"type": "apprise", "urls": ["nosuchscheme://TOPSECRET@host"]}],
            },
        )
    assert "urls[0] is not a valid Apprise URL" in str(err.value)
    assert "TOPSECRET" not in str(err.value) and "TOPSECRET" not in stream.getvalue()


def test_urls_file_one_per_line(tmp_path: Path) -> None:
    secret_file = tmp_path / "apprise-urls"
    secret_file.write_text("# phones\nntfy://ntfy.example/alerts\n\njson://127.0.0.1:9/x\n")
    config = AppriseConfig.model_validate({"type": "apprise", "urls_file": str(secret_file)})
    assert config.secrets() == ["ntfy://ntfy.example/alerts", "json://127.0.0.1:9/x"]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"urls": []}, "at least 1 item"),
        ({"urls": ["json://h/x"], "title": "{followers}"}, "unknown field 'followers'"),
        ({"urls": ["json://h/x"], "title": "{value:q}"}, "invalid title template"),
        ({"urls": ["json://h/x"], "urls_file": "/nonexistent"}, "both set"),
        ({"urls_file": "/nonexistent/urls"}, "cannot read /nonexistent/urls"),
    ],
)
def test_invalid_config_is_refused(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        AppriseConfig.model_validate({"type": "apprise", **extra})


async def test_registry_builds_it(http_client: httpx.AsyncClient) -> None:
    config = AppriseConfig.model_validate({"type": "apprise", "urls": ["json://h/x"]})
    built = build_notifier(config, http_client)
    assert isinstance(built, AppriseNotifier) and built.name == "apprise"


# --- the chart attachment ---------------------------------------------------------------------


@pytest.fixture
def chart_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the notifier's temporary chart directories go, so the test can see them removed."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("info", "json", stream)
    yield stream


def warnings_in(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line.get("event") == "alert sent without its chart"]


async def write_history(
    client: httpx.AsyncClient, influx_db: tuple[str, str], event: Event, days: int
) -> InfluxV1Store:
    """Hourly counts falling toward the event's line for `days` days, and the event itself."""
    store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
    points = [
        Point(
            "followers",
            (("platform", "x"), ("account", "aplusk")),
            (("followers", event.value + 50 * h),),
            event.time - timedelta(hours=h),
        )
        for h in range(days * 24)
    ]
    await store.write([*points, event_point(event)])
    return store


async def test_account_alert_attaches_the_chart_of_its_last_days(
    httpserver: HTTPServer,
    http_client: httpx.AsyncClient,
    influx_db: tuple[str, str],
    chart_tmp: Path,
    log_stream: io.StringIO,
) -> None:
    httpserver.expect_request("/c", method="POST").respond_with_data("ok")
    event = make_event()
    store = await write_history(http_client, influx_db, event, days=10)
    charts = AccountCharts(store, lambda platform, account: [("below", 1_000_000)])
    await notifier(charts, urls=[json_url(httpserver, "/c")]).send(event)

    [body] = received(httpserver, "/c")
    assert body["message"] == event.message
    [attachment] = body["attachments"]
    assert attachment["filename"] == "followers-x-aplusk.png"
    assert attachment["mimetype"] == "image/png"
    png = base64.b64decode(attachment["base64"])
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert warnings_in(log_stream) == []
    assert list(chart_tmp.iterdir()) == [], "the temporary chart was not removed"


async def test_chart_reads_only_the_configured_days(
    http_client: httpx.AsyncClient, influx_db: tuple[str, str], tmp_path: Path
) -> None:
    event = make_event()
    store = await write_history(http_client, influx_db, event, days=10)
    # A 1-day window draws; a window ending before the first reading has nothing to draw.
    assert await AccountCharts(store).render(event, 1, tmp_path / "a.png") == tmp_path / "a.png"
    assert (tmp_path / "a.png").read_bytes().startswith(PNG_MAGIC)
    early = dataclasses.replace(event, time=event.time - timedelta(days=11))
    assert await AccountCharts(store).render(early, 7, tmp_path / "b.png") is None
    assert not (tmp_path / "b.png").exists()


async def test_unreachable_influxdb_sends_the_alert_without_chart(
    httpserver: HTTPServer,
    http_client: httpx.AsyncClient,
    chart_tmp: Path,
    log_stream: io.StringIO,
) -> None:
    httpserver.expect_request("/c", method="POST").respond_with_data("ok")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: every query is refused.
    down = InfluxV1Store(http_client, url=f"http://127.0.0.1:{port}", database="db")
    await notifier(AccountCharts(down), urls=[json_url(httpserver, "/c")]).send(make_event())

    [body] = received(httpserver, "/c")
    assert body["attachments"] == []
    [warning] = warnings_in(log_stream)
    assert warning["level"] == "warning" and warning["notifier"] == "apprise"
    assert str(port) in warning["reason"]
    assert list(chart_tmp.iterdir()) == []


async def test_influxdb_that_never_answers_is_cut_off_by_the_time_limit(
    httpserver: HTTPServer, http_client: httpx.AsyncClient, log_stream: io.StringIO
) -> None:
    httpserver.expect_request("/c", method="POST").respond_with_data("ok")
    with socket.socket() as silent:
        # Listening but never accepting: the kernel completes connections, nobody replies.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        stuck = InfluxV1Store(http_client, url=f"http://127.0.0.1:{port}", database="db")
        started = time.monotonic()
        await notifier(AccountCharts(stuck, timeout=0.5), urls=[json_url(httpserver, "/c")]).send(
            make_event()
        )
        waited = time.monotonic() - started

    [body] = received(httpserver, "/c")
    assert body["attachments"] == []
    [warning] = warnings_in(log_stream)
    assert warning["reason"] == "TimeoutError"
    # The client's own timeout is 10 s: the alert went at the chart's limit, well before it.
    assert waited < 8


async def test_empty_series_sends_the_alert_without_chart(
    httpserver: HTTPServer,
    http_client: httpx.AsyncClient,
    influx_db: tuple[str, str],
    log_stream: io.StringIO,
) -> None:
    httpserver.expect_request("/c", method="POST").respond_with_data("ok")
    store = InfluxV1Store(http_client, url=influx_db[0], database=influx_db[1])
    await notifier(AccountCharts(store), urls=[json_url(httpserver, "/c")]).send(make_event())

    [body] = received(httpserver, "/c")
    assert body["attachments"] == []
    [warning] = warnings_in(log_stream)
    assert "no counts of x/aplusk" in warning["reason"]


@pytest.mark.parametrize(
    ("platform", "account", "kind"),
    [
        ("followerwatch", "service", EventKind.INFLUXDB_AUTH),
        ("followerwatch", "campaign:spring", EventKind.CAMPAIGN_STARTED),
        ("x", "aplusk", EventKind.CAMPAIGN_REPORT),
        ("x", "aplusk", EventKind.TEST),
    ],
)
async def test_service_and_campaign_events_get_no_chart(
    httpserver: HTTPServer,
    http_client: httpx.AsyncClient,
    influx_db: tuple[str, str],
    log_stream: io.StringIO,
    platform: str,
    account: str,
    kind: EventKind,
) -> None:
    httpserver.expect_request("/c", method="POST").respond_with_data("ok")
    event = make_event()
    store = await write_history(http_client, influx_db, event, days=2)
    other = dataclasses.replace(event, platform=platform, account=account, kind=kind)
    await notifier(AccountCharts(store), urls=[json_url(httpserver, "/c")]).send(other)

    [body] = received(httpserver, "/c")
    assert body["attachments"] == []
    assert warnings_in(log_stream) == []


async def test_attach_chart_false_sends_no_chart(
    httpserver: HTTPServer, http_client: httpx.AsyncClient, influx_db: tuple[str, str]
) -> None:
    httpserver.expect_request("/c", method="POST").respond_with_data("ok")
    event = make_event()
    store = await write_history(http_client, influx_db, event, days=2)
    await notifier(
        AccountCharts(store), urls=[json_url(httpserver, "/c")], attach_chart=False
    ).send(event)
    [body] = received(httpserver, "/c")
    assert body["attachments"] == []


async def test_registry_passes_the_chart_drawer(
    httpserver: HTTPServer, http_client: httpx.AsyncClient, influx_db: tuple[str, str]
) -> None:
    httpserver.expect_request("/c", method="POST").respond_with_data("ok")
    event = make_event()
    store = await write_history(http_client, influx_db, event, days=2)
    config = AppriseConfig.model_validate(
        {"type": "apprise", "urls": [json_url(httpserver, "/c")], "chart_days": 1}
    )
    await build_notifier(config, http_client, charts=AccountCharts(store)).send(event)
    [body] = received(httpserver, "/c")
    [attachment] = body["attachments"]
    assert base64.b64decode(attachment["base64"]).startswith(PNG_MAGIC)


async def test_running_service_attaches_the_chart_to_its_alert(
    tmp_path: Path, httpserver: HTTPServer, influx_db: tuple[str, str]
) -> None:
    """The App wires the reader into the apprise notifier: replay → crossing → alert with chart."""
    from followerwatch.service.app import App

    httpserver.expect_request("/c", method="POST").respond_with_data("ok")
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    counts = [1_000_400 - 50 * i for i in range(12)]  # below the line from the 10th row on
    replay = tmp_path / "replay.csv"
    replay.write_text(
        "timestamp,platform,account,followers\n"
        + "".join(
            f"{(t0 + timedelta(hours=i)).isoformat()},x,aplusk,{c}\n" for i, c in enumerate(counts)
        )
    )
    config = load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path / "data")},
            "influxdb": {"url": influx_db[0], "database": influx_db[1]},
            "platforms": {"x": {"replay": {"file": str(replay)}}},
            "notifiers": [{"type": "apprise", "urls": [json_url(httpserver, "/c")]}],
            "watch": [{"platform": "x", "handle": "aplusk", "below": 1_000_000}],
        },
    )
    async with App(config) as app:
        for _ in counts:
            await app.poll_once()
        await app.outbox.drain(timeout=30)

    [body] = received(httpserver, "/c")
    assert "dropped below 1,000,000" in body["message"]
    [attachment] = body["attachments"]
    assert attachment["filename"] == "followers-x-aplusk.png"
    assert base64.b64decode(attachment["base64"]).startswith(PNG_MAGIC)


async def test_services_without_attachments_still_get_the_alert(
    httpserver: HTTPServer, http_client: httpx.AsyncClient, influx_db: tuple[str, str]
) -> None:
    # Gotify takes no attachments: Apprise sends it the text alone.
    httpserver.expect_request("/message", method="POST").respond_with_json({"id": 1})
    httpserver.expect_request("/c", method="POST").respond_with_data("ok")
    event = make_event()
    store = await write_history(http_client, influx_db, event, days=2)
    gotify = f"gotify://{httpserver.host}:{httpserver.port}/AbCdEfGhIjKlMnO"
    await notifier(AccountCharts(store), urls=[gotify, json_url(httpserver, "/c")]).send(event)

    [plain] = [json.loads(r.get_data()) for r, _ in httpserver.log if r.path == "/message"]
    assert plain["message"] == event.message
    [body] = received(httpserver, "/c")
    assert len(body["attachments"]) == 1
