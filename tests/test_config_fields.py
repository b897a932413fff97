"""The field types stand alone: each checks a value without any config model around it."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from followerwatch.config.fields import (
    Count,
    HeaderText,
    HttpUrl,
    PositiveDuration,
    secret_problem,
)


def test_a_duration_is_parsed_and_held_to_its_range() -> None:
    positive = TypeAdapter(PositiveDuration)
    assert positive.validate_python("1h30m") == 5400.0
    for bad in ("0s", "367d", "inf"):
        with pytest.raises(ValidationError):
            positive.validate_python(bad)


def test_a_count_is_read_as_people_write_it() -> None:
    assert TypeAdapter(Count).validate_python("1.5k") == 1500
    with pytest.raises(ValidationError):
        TypeAdapter(Count).validate_python(-1)


def test_a_url_loses_its_trailing_slash_and_may_not_carry_credentials() -> None:
    url = TypeAdapter(HttpUrl)
    assert url.validate_python("https://example.org/") == "https://example.org"
    with pytest.raises(ValidationError, match="must not contain credentials") as caught:
        url.validate_python("https://user:hunter2@example.org")
    # The message names where credentials go, never the URL itself.
    assert "hunter2" not in caught.value.errors(include_input=False)[0]["msg"]


def test_header_text_is_one_ascii_line() -> None:
    text = TypeAdapter(HeaderText)
    assert text.validate_python("plain") == "plain"
    for bad in ("two\r\nlines", "café"):
        with pytest.raises(ValidationError):
            text.validate_python(bad)


def test_a_secret_must_be_one_non_empty_line_and_ascii_when_sent_in_a_header() -> None:
    assert secret_problem("s3cret") is None
    assert secret_problem(None) is None
    assert secret_problem("  ") == "must not be empty"
    assert secret_problem("a\nb") == "must be one line (no control characters)"
    assert secret_problem("clé") is None
    assert secret_problem("clé", header=True) == "must be ASCII: it is sent in an HTTP header"
