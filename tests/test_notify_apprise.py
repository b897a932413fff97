"""The `apprise` notifier: Apprise's real JSON plugin posting to a local receiver."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from pytest_httpserver import HTTPServer

from followerwatch import logs
from followerwatch.config import load_config
from followerwatch.errors import ConfigError, DeliveryError
from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.notify import build_notifier
from followerwatch.notify.apprise import AppriseConfig, AppriseNotifier


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


def notifier(**config: Any) -> AppriseNotifier:
    return AppriseNotifier(AppriseConfig.model_validate({"type": "apprise", **config}))


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
