"""Generic JSON: one request per account to a configured URL, the count read at a JSON path.

For platforms nobody wrote a source for, the way Telegraf's `http` input works. `{handle}` in
`url` is replaced by the URL-quoted handle, in `body` by the JSON-string-escaped handle; `{id}` in
`id_url` by the stored id. Paths are dotted keys with `[n]` list indices (`data.stats.followers`,
`items[0].count`, `["odd.key"]`); `$` alone is the whole body. A count must be an integer in
0 … 2^53 - 1, or such a number as a string of decimal digits (some APIs quote big numbers);
anything else is MALFORMED. A handle or id that would not stay one path segment (`.`, `..`,
percent-encoded dots) is never put into a URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Unpack
from urllib.parse import quote, unquote

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from followerwatch.clock import Clock
from followerwatch.config.base import PlatformConfig
from followerwatch.config.fields import Duration, HeaderName, HeaderText, refuse_userinfo
from followerwatch.errors import AuthError, ConfigError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation
from followerwatch.sources.base import HttpSource, SourceContext, SourceSpec, Tuning, tuning
from followerwatch.sources.common import (
    Outcome,
    ResetFormat,
    Tally,
    assemble,
    count,
    each_call,
    json_of,
    no_rate_headers,
    rate_headers,
)

# `.` and `..` would not stay one path segment: `/users/..` is `/`, another endpoint.
DEFAULT_HANDLE_PATTERN = r"^(?!\.{1,2}$)[A-Za-z0-9_.@-]{1,100}$"
_URL = re.compile(r"^https?://[^\s/]+")
_TOKEN = re.compile(r"""\.?([^.\[\]"']+)|\[([0-9]+)\]|\[(["'])(.*?)\3\]""")

Step = str | int
Path = tuple[Step, ...]
_MISSING = object()


def parse_path(text: str) -> Path:
    """The steps of a path such as `data.items[0]["a.b"]`; ValueError if it is not one."""
    rest = text.strip()
    rest = rest[1:] if rest.startswith("$") else rest
    steps: list[Step] = []
    pos = 0
    while pos < len(rest):
        match = _TOKEN.match(rest, pos)
        # A bare key must not follow another step without its dot.
        if match is None or (match.group(1) is not None and steps and rest[pos] != "."):
            raise ValueError(f"cannot read path {text!r} at character {pos + 1}")
        key, index, _, quoted = match.groups()
        steps.append(key if key is not None else int(index) if index is not None else quoted)
        pos = match.end()
    return tuple(steps)


def leaves_its_segment(value: str) -> bool:
    """True when `value`, as a path segment, could name another path (`..`, `%2e%2e`, `a/../b`).

    A value is quoted as one segment, but servers and proxies normalise dot segments, and some
    decode percent-escapes (once or more) before they do.
    """
    for _ in range(3):
        if any(part in (".", "..") for part in re.split(r"[/\\]", value)):
            return True
        value = unquote(value)
    return False


def evaluate(document: Any, path: Path) -> Any:
    """The value at `path`, or `_MISSING`; never raises for a shape that does not fit."""
    node = document
    for step in path:
        fits_list = isinstance(step, int) and isinstance(node, list) and step < len(node)
        fits_dict = isinstance(step, str) and isinstance(node, dict) and step in node
        if not (fits_list or fits_dict):
            return _MISSING
        node = node[step]
    return node


def _path(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_path(value)
        except ValueError as exc:
            raise PydanticCustomError("json_path", str(exc)) from None
    return value


class HttpJsonConfig(PlatformConfig):
    """`[platforms.http_json]`: the URL template, request shape, and where the numbers are."""

    url: str | None = None
    id_url: str | None = None
    method: Literal["GET", "POST"] = "GET"
    headers: dict[HeaderName, HeaderText] = Field(default_factory=dict)
    # Headers whose values are redacted from logs, e.g. an API key header.
    secret_headers: dict[HeaderName, SecretStr] = Field(default_factory=dict)
    bearer_token: SecretStr | None = None
    body: str | None = None
    count_path: str | None = None
    id_path: str | None = None
    handle_path: str | None = None
    following_path: str | None = None
    posts_path: str | None = None
    # Only narrows the built-in pattern, which the watchlist is validated against at load time.
    handle_pattern: str | None = None
    rate_limit_prefix: str | None = None
    rate_limit_reset: ResetFormat = "epoch"
    max_wait: Duration = 300.0

    @field_validator("url", "id_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not _URL.match(value):
            raise PydanticCustomError("url", "must be an http:// or https:// URL")
        if value is not None:
            refuse_userinfo(value, "bearer_token_file or secret_headers")
        return value

    @field_validator("count_path", "id_path", "handle_path", "following_path", "posts_path")
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        return _path(value)

    @field_validator("handle_pattern")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise PydanticCustomError(
                    "regex", "not a regular expression: {e}", {"e": str(exc)}
                ) from None
        return value

    @model_validator(mode="after")
    def _templates(self) -> HttpJsonConfig:
        if self.url is not None and "{handle}" not in self.url + (self.body or ""):
            raise PydanticCustomError("template", "url or body must contain {handle}")
        if self.id_url is not None and "{id}" not in self.id_url + (self.body or ""):
            raise PydanticCustomError("template", "id_url or body must contain {id}")
        return self

    def secrets(self) -> list[str]:
        """Every secret value, secret header values included, for log redaction."""
        extra = [v.get_secret_value() for v in self.secret_headers.values()]
        return super().secrets() + [v for v in extra if v]


class HttpJsonSource(HttpSource):
    """Counts from any JSON endpoint, one request per account (a generic URL cannot batch)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Clock,
        url: str,
        count_path: str,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
        id_url: str | None = None,
        id_path: str | None = None,
        handle_path: str | None = None,
        following_path: str | None = None,
        posts_path: str | None = None,
        handle_pattern: str | None = None,
        rate_limit_prefix: str | None = None,
        rate_limit_reset: ResetFormat = "epoch",
        **settings: Unpack[Tuning],
    ) -> None:
        prefix = rate_limit_prefix
        parse = no_rate_headers if prefix is None else rate_headers(prefix, rate_limit_reset)
        super().__init__(SPEC, client, clock, parse, **settings)
        self._url = url
        self._id_url = id_url
        self._method = method
        self._headers = dict(headers or {})
        if body is not None and not any(k.lower() == "content-type" for k in self._headers):
            self._headers["Content-Type"] = "application/json"
        self._body = body
        try:
            self._count = parse_path(count_path)
            self._paths = {
                name: parse_path(text) if text is not None else None
                for name, text in (
                    ("id", id_path),
                    ("handle", handle_path),
                    ("following", following_path),
                    ("posts", posts_path),
                )
            }
            self._pattern = (
                re.compile(handle_pattern) if handle_pattern else self.spec.handle_pattern
            )
        except (ValueError, re.error) as exc:
            raise ConfigError(f"platforms.http_json: {exc}") from None

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        """One request per account; 404 is that account's NOT_FOUND, other errors raise."""
        tally = Tally()
        order = list(dict.fromkeys(accounts))

        async def ask(account: Account) -> dict[Account, Outcome]:
            return {account: await self._one(account, tally)}

        # With several accounts, one failing request costs only its own account.
        results = await each_call(order, lambda a: [a], ask, self._clock)
        return assemble(order, results, tally)

    async def _one(self, account: Account, tally: Tally) -> Outcome:
        by_id = self._id_url is not None and bool(account.platform_id)
        if not by_id and (
            not self._pattern.match(account.handle) or leaves_its_segment(account.handle)
        ):
            return Failure(
                account, self._clock.now(), FailureKind.NOT_FOUND, "handle does not match pattern"
            )
        if by_id and leaves_its_segment(account.platform_id or ""):
            # An id stored before ids were checked on arrival must not template another path.
            detail = f"stored id {account.platform_id!r} is not one path segment"[:200]
            return Failure(account, self._clock.now(), FailureKind.MALFORMED, detail)
        url = self._id_url if by_id and self._id_url is not None else self._url
        values = {"{handle}": account.handle, "{id}": account.platform_id or ""}
        kwargs: dict[str, Any] = {"headers": self._headers}
        if self._body is not None:
            body = self._body
            for marker, value in values.items():
                body = body.replace(marker, json.dumps(value)[1:-1])
            kwargs["content"] = body.encode("utf-8")
        for marker, value in values.items():
            url = url.replace(marker, quote(value, safe=""))
        response, received = await self._requester.send(self._method, url, tally, **kwargs)
        status = response.status_code
        if status in (404, 410):
            return Failure(account, received, FailureKind.NOT_FOUND, f"HTTP {status}")
        if status in (401, 403):
            raise AuthError(f"http_json endpoint refused the credentials (HTTP {status})")
        if not 200 <= status < 300:
            raise TransientError(f"http_json endpoint answered HTTP {status}")
        try:
            document = json_of(response)
        except ValueError:
            raise TransientError(
                f"http_json endpoint answered HTTP {status} without JSON"
            ) from None
        return self._outcome(account, document, received, checked_id=not by_id)

    def _outcome(
        self, account: Account, document: Any, when: datetime, *, checked_id: bool
    ) -> Outcome:
        followers = count(evaluate(document, self._count))
        if followers is None:
            shown = _show(evaluate(document, self._count))
            return Failure(account, when, FailureKind.MALFORMED, f"count_path gives {shown}")
        extra: dict[str, int | None] = {}
        for name in ("following", "posts"):
            path = self._paths[name]
            raw = None if path is None else evaluate(document, path)
            # These are optional extras: absent or null is "unknown", but a wrong type is not.
            extra[name] = None if raw is _MISSING or raw is None else count(raw)
            if extra[name] is None and raw is not _MISSING and raw is not None:
                return Failure(
                    account, when, FailureKind.MALFORMED, f"{name}_path gives {_show(raw)}"
                )
        uid = _text(document, self._paths["id"], ids=True)
        if uid is not None and leaves_its_segment(uid):
            # The id is put into id_url on later polls: it must not lead to another endpoint.
            detail = f"id_path gives {uid!r}, not one path segment"[:200]
            return Failure(account, when, FailureKind.MALFORMED, detail)
        if checked_id and account.platform_id and uid is not None and uid != account.platform_id:
            # The handle now names someone else: their count is not this account's.
            detail = f"{account.handle} now belongs to id {uid}, not {account.platform_id}"
            return Failure(account, when, FailureKind.NOT_FOUND, detail[:200])
        return Observation(
            account=account,
            time=when,
            followers=followers,
            following=extra["following"],
            posts=extra["posts"],
            platform_id=uid,
            handle=_text(document, self._paths["handle"], ids=False),
        )


def _text(document: Any, path: Path | None, *, ids: bool) -> str | None:
    """A string at `path`; ids may also be integers. Anything else is treated as absent."""
    if path is None:
        return None
    value = evaluate(document, path)
    if isinstance(value, str) and value:
        return value[:200]
    if ids and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _show(value: Any) -> str:
    return "nothing" if value is _MISSING else f"{value!r}, not a count"[:120]


def build(config: HttpJsonConfig, ctx: SourceContext) -> HttpJsonSource:
    """The generic source for the one configured endpoint."""
    if config.url is None or config.count_path is None:
        raise ConfigError("platforms.http_json.url and count_path are required to watch http_json")
    headers = dict(config.headers)
    headers.update({k: v.get_secret_value() for k, v in config.secret_headers.items()})
    if config.bearer_token is not None:
        headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
    return HttpJsonSource(
        ctx.client,
        clock=ctx.clock,
        url=config.url,
        count_path=config.count_path,
        method=config.method,
        headers=headers,
        body=config.body,
        id_url=config.id_url,
        id_path=config.id_path,
        handle_path=config.handle_path,
        following_path=config.following_path,
        posts_path=config.posts_path,
        handle_pattern=config.handle_pattern,
        rate_limit_prefix=config.rate_limit_prefix,
        rate_limit_reset=config.rate_limit_reset,
        **tuning(config, ctx),
    )


SPEC = SourceSpec(
    key="http_json",
    title="Generic JSON",
    config_model=HttpJsonConfig,
    build=build,
    # A generic URL cannot batch.
    batch_max=1,
    handle_pattern=re.compile(DEFAULT_HANDLE_PATTERN),
    rate_limit_ceiling=None,
    error_name="http_json",
)
