"""Field types every config model uses: durations, counts, http(s) URLs, HTTP header text."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from followerwatch.models import MAX_COUNT
from followerwatch.units import parse_count, parse_duration

# The longest duration any key takes: longer ones are typos (or `inf`) that would crash a timer.
MAX_DURATION = 366 * 86_400.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_NOT_ASCII = "must be ASCII: it is sent in an HTTP header"


def secret_problem(value: object, header: bool = False) -> str | None:
    """Why a secret value cannot be used (None when it can, or is not text at all)."""
    if not isinstance(value, str):
        return None
    if not value.strip():
        return "must not be empty"
    if _CONTROL.search(value):
        return "must be one line (no control characters)"
    if header and not value.isascii():
        return _NOT_ASCII
    return None


def _duration(value: object) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None
    if seconds > MAX_DURATION:
        raise PydanticCustomError("duration", "a duration cannot be longer than 366 days")
    return seconds


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise PydanticCustomError("duration", "must be longer than 0")
    return seconds


Duration = Annotated[float, BeforeValidator(_duration)]
# A duration that 0 would break (an interval, a timeout, a backoff).
PositiveDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]


def _count(value: object) -> int:
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value  # the common case
    try:
        return parse_count(value)
    except ValueError as exc:
        raise PydanticCustomError("count", str(exc)) from None


# A threshold or milestone: 1_000_000 or as people write it ("1M", "1.5k"), in 0 … MAX_COUNT.
Count = Annotated[int, BeforeValidator(_count), Field(ge=0, le=MAX_COUNT)]
PositiveCount = Annotated[int, BeforeValidator(_count), Field(ge=1, le=MAX_COUNT)]


def url_validator(credentials: str) -> Callable[[object], str]:
    """An http(s) URL check that refuses `user:password@`, pointing to `credentials` instead."""

    def check(value: object) -> str:
        if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
            raise PydanticCustomError("url", "must be an http:// or https:// URL")
        refuse_userinfo(value, credentials)
        return value.rstrip("/")

    return check


def refuse_userinfo(url: str, credentials: str) -> None:
    """Raise when `url` has no valid host and port, or carries `user:password@`.

    The URL itself stays out of the message.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise PydanticCustomError("url", "not a valid URL") from None
    netloc = parts.netloc
    if "@" not in netloc:
        # With credentials, the error below says where they go; else the host and port.
        try:
            parts.port  # noqa: B018 - raises for a port out of range or not a number
        except ValueError:
            raise PydanticCustomError("url", "the port must be a number from 1 to 65535") from None
        if not parts.hostname or parts.port == 0:
            raise PydanticCustomError("url", "must name a host (and a port from 1 to 65535)")
    if "@" in netloc:
        raise PydanticCustomError(
            "url",
            "must not contain credentials (user:password@host); set them with {credentials}",
            {"credentials": credentials},
        )


HttpUrl = Annotated[
    str, BeforeValidator(url_validator("this section's token or password keys (`*_file`)"))
]


def _header_name(value: str) -> str:
    if not _TOKEN.match(value):
        raise PydanticCustomError("header", "header names are letters, digits and !#$%&'*+-.^_`|~")
    return value


def _header_text(value: str) -> str:
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "header", "header values must be one line (no control characters)"
        )
    # httpx encodes a header given as text as ASCII: anything else fails every request.
    if not value.isascii():
        raise PydanticCustomError("header", _NOT_ASCII)
    return value


HeaderName = Annotated[str, AfterValidator(_header_name)]
# Text sent in an HTTP header: a CR or LF would end the header (or inject another).
HeaderText = Annotated[str, AfterValidator(_header_text)]
