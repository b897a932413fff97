"""Structured logs: JSON off a terminal, stdlib loggers routed through, secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import structlog

from followerwatch import logs


def test_json_lines_with_secrets_redacted_everywhere() -> None:
    stream = io.StringIO()
    logs.register_secrets(["tok-SECRET-42"])
    logs.configure("info", "auto", stream)
    structlog.get_logger("followerwatch.test").warning(
        "source down", error="401 for Bearer tok-SECRET-42", nested={"h": ["tok-SECRET-42"]}
    )
    logging.getLogger("apscheduler.test").error("job failed with tok-SECRET-42")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["source down", "job failed with ***"]
    assert lines[0]["error"] == "401 for Bearer ***" and lines[0]["nested"] == {"h": ["***"]}
    assert lines[1]["logger"] == "apscheduler.test" and lines[1]["level"] == "error"
    assert "tok-SECRET-42" not in stream.getvalue()


def test_httpx_request_lines_are_not_logged_at_info() -> None:
    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    logging.getLogger("httpx").info("HTTP Request: GET https://x/?key=abc")
    assert stream.getvalue() == ""
