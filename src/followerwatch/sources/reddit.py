"""Reddit: subreddit subscribers batched through `/api/info`; omitted ones classified via `about`.

With `client_id`/`client_secret` it uses an app-only OAuth token and https://oauth.reddit.com
(about 100 requests a minute); without, the public `.json` pages of https://www.reddit.com, which
allow about 10 a minute. `rate_limit_ceiling` states the OAuth figure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn, Unpack
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from followerwatch import __version__
from followerwatch.clock import Clock
from followerwatch.config.base import PlatformConfig
from followerwatch.config.fields import Duration, HttpUrl
from followerwatch.errors import (
    AuthError,
    NotFoundError,
    RateLimitedError,
    SourceError,
    TransientError,
)
from followerwatch.models import (
    Account,
    Failure,
    FailureKind,
    FetchResult,
    Observation,
    RateLimit,
    is_count,
)
from followerwatch.net.ratelimit import header, parse_count, reset_from_seconds
from followerwatch.sources.base import HttpSource, SourceContext, SourceSpec, Tuning, tuning
from followerwatch.sources.common import (
    Outcome,
    Tally,
    assemble,
    chunks,
    each_call,
    json_object,
    json_of,
    screen,
    secret,
)
from followerwatch.sources.oauth import ClientCredentials, server_message

WWW_URL = "https://www.reddit.com"
OAUTH_URL = "https://oauth.reddit.com"
DEFAULT_USER_AGENT = f"followerwatch:{__version__} (by /u/<configure me>)"
_PREFIX = re.compile(r"^/?[rR]/")
_T5 = re.compile(r"^t5_[0-9a-z]{1,13}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# `reason`s of a 403/404 from `about`: what each says about the subreddit.
_REASONS = {
    "private": FailureKind.FORBIDDEN,
    "quarantined": FailureKind.FORBIDDEN,
    "gated": FailureKind.FORBIDDEN,
    "banned": FailureKind.SUSPENDED,
}
# A subreddit listed with `subscribers: null` is closed to us rather than hiding its count.
_CLOSED_TYPES = frozenset({"private", "employees_only", "gold_restricted", "gold_only"})
_INVALID = "not a valid subreddit name"


class RedditConfig(PlatformConfig):
    """`[platforms.reddit]`: optional OAuth app credentials, the User-Agent, and the hosts."""

    client_id: str | None = None
    client_secret: SecretStr | None = None
    # Reddit bans generic agents; name the app and a contact: `<app>:<version> (by /u/<you>)`.
    user_agent: str = Field(default=DEFAULT_USER_AGENT, min_length=1, max_length=256)
    www_url: HttpUrl = WWW_URL
    oauth_url: HttpUrl = OAUTH_URL
    # Longer than the 10-minute window, so a drained budget is waited out rather than skipped.
    max_wait: Duration = 900.0
    # Its budget is counted over 10-minute periods, whose end X-Ratelimit-Reset counts down to.
    max_backoff: Duration = 600.0

    @field_validator("user_agent")
    @classmethod
    def _printable(cls, value: str) -> str:
        # It is the User-Agent header, which httpx encodes as ASCII.
        if _CONTROL.search(value) or not value.strip() or not value.isascii():
            raise PydanticCustomError("user_agent", "must be printable ASCII text")
        return value.strip()

    @model_validator(mode="after")
    def _both_or_neither(self) -> RedditConfig:
        if (self.client_id is None) != (self.client_secret is None):
            raise PydanticCustomError(
                "reddit_oauth", "set both client_id and client_secret, or neither"
            )
        return self


def subreddit(account: Account) -> str:
    """The bare subreddit name of an account's handle (`r/` prefix dropped)."""
    return _PREFIX.sub("", account.handle)


def _stored_id(account: Account) -> str | None:
    pid = account.platform_id
    return pid if pid is not None and _T5.match(pid) else None


def _rate(headers: httpx.Headers, now: datetime) -> RateLimit | None:
    """X-Ratelimit-Used/-Remaining (a float such as "598.0") and -Reset in seconds from now."""
    used = parse_count(header(headers, "x-ratelimit-used"))
    remaining = parse_count(header(headers, "x-ratelimit-remaining"))
    reset_at = reset_from_seconds(header(headers, "x-ratelimit-reset"), now)
    if used is None and remaining is None and reset_at is None:
        return None
    limit = used + remaining if used is not None and remaining is not None else None
    return RateLimit(limit=limit, remaining=remaining, reset_at=reset_at)


class RedditSource(HttpSource):
    """Subscriber counts; one instance per OAuth app (or per IP when unauthenticated)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Clock,
        user_agent: str = DEFAULT_USER_AGENT,
        client_id: str | None = None,
        client_secret: str | None = None,
        www_url: str = WWW_URL,
        oauth_url: str = OAUTH_URL,
        batch_size: int = 100,
        **settings: Unpack[Tuning],
    ) -> None:
        super().__init__(SPEC, client, clock, _rate, **settings)
        self._ua = {"User-Agent": user_agent}
        self._size = max(1, min(batch_size, self.spec.batch_max))
        self._secrets = tuple(s for s in (client_secret,) if s)
        self._token: ClientCredentials | None = None
        if client_id is not None and client_secret is not None:
            self._base, self._suffix = oauth_url.rstrip("/"), ""
            self._token = ClientCredentials(
                self._requester,
                clock,
                www_url.rstrip("/") + "/api/v1/access_token",
                platform="Reddit",
                data={"grant_type": "client_credentials"},
                headers=self._ua,
                auth=(client_id, client_secret),
                secrets=self._secrets,
            )
        else:
            self._base, self._suffix = www_url.rstrip("/"), ".json"

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        """Look up every subreddit; per-subreddit problems become Failures, batch ones raise."""
        tally = Tally()
        fits = self.spec.handle_pattern.match
        order, valid, results = screen(
            accounts, lambda a: _stored_id(a) is not None or fits(a.handle), _INVALID, self._clock
        )
        by_id = [a for a in valid if _stored_id(a) is not None]
        by_name = [a for a in valid if _stored_id(a) is None]
        calls: list[tuple[Sequence[Account], dict[str, str]]] = []
        for chunk in chunks(by_id, lambda a: _stored_id(a) or "", self._size):
            ids = ",".join(dict.fromkeys(_stored_id(a) or "" for a in chunk))
            calls.append((chunk, {"id": ids}))
        for chunk in chunks(by_name, lambda a: subreddit(a).lower(), self._size):
            names: dict[str, str] = {}
            for account in chunk:
                names.setdefault(subreddit(account).lower(), subreddit(account))
            calls.append((chunk, {"sr_name": ",".join(names.values())}))

        omitted: list[Account] = []

        async def ask(call: tuple[Sequence[Account], dict[str, str]]) -> dict[Account, Outcome]:
            response, received = await self._get("/api/info", call[1], tally)
            found = _match(call[0], _listing(response), received)
            omitted.extend(
                a
                for a, o in found.items()
                if isinstance(o, Failure) and o.kind == FailureKind.NOT_RETURNED
            )
            return found

        # A failed call leaves its accounts NOT_RETURNED; only those the listing left out get
        # the `about` follow-up, so one 5xx never turns into a hundred more requests.
        results.update(await each_call(calls, lambda c: c[0], ask, self._clock))
        await self._classify_missing(omitted, results, tally)
        return assemble(order, results, tally)

    async def _classify_missing(
        self, omitted: Sequence[Account], results: dict[Account, Outcome], tally: Tally
    ) -> None:
        """Ask `r/{sub}/about` why each omitted subreddit was left out (one request per name)."""
        missing: dict[str, list[Account]] = {}
        for account in omitted:
            if self.spec.handle_pattern.match(account.handle):
                missing.setdefault(subreddit(account).lower(), []).append(account)
        for group in missing.values():
            name = subreddit(group[0])
            try:
                response, received = await self._get(
                    f"/r/{quote(name, safe='')}/about", {}, tally, accept=(301, 302, 403, 404)
                )
            except (AuthError, RateLimitedError):
                raise
            except SourceError as exc:
                # The batch answer stands; a failed second opinion must not lose it.
                for account in group:
                    old = results[account]
                    if isinstance(old, Failure):
                        results[account] = Failure(
                            account, old.time, old.kind, f"{old.detail}; about failed: {exc}"
                        )
                continue
            for account in group:
                results[account] = _about(account, response, received)

    async def _get(
        self,
        path: str,
        params: Mapping[str, str],
        tally: Tally,
        accept: tuple[int, ...] = (),
    ) -> tuple[httpx.Response, datetime]:
        """A 200 (or `accept`ed) answer; with OAuth a refused token is renewed once."""
        renewed = False
        while True:
            headers = dict(self._ua)
            secrets = self._secrets
            if self._token is not None:
                token = await self._token.token(tally)
                headers["Authorization"] = f"bearer {token}"
                secrets = (*secrets, token)
            response, received = await self._requester.send(
                "GET", self._base + path + self._suffix, tally, params=params, headers=headers
            )
            status = response.status_code
            if status == 200 or status in accept:
                return response, received
            if status == 401 and self._token is not None and not renewed:
                # Tokens live a day and may be revoked early: ask for a new one, once.
                self._token.invalidate()
                renewed = True
                continue
            _raise_for(status, server_message(json_object(response), secrets))


def _raise_for(status: int, detail: str) -> NoReturn:
    suffix = f": {detail}" if detail else ""
    if status == 401:
        raise AuthError(f"Reddit refused the access token (HTTP 401){suffix}")
    if status == 403:
        raise AuthError(
            f"Reddit refused the request (HTTP 403){suffix}; check user_agent and credentials"
        )
    if status == 404:
        raise NotFoundError(f"Reddit has no such endpoint (HTTP 404){suffix}")
    raise TransientError(f"Reddit answered HTTP {status}{suffix}")


def _listing(response: httpx.Response) -> list[dict[str, Any]]:
    """The `data` of each child of a Listing; anything else about its shape is a TransientError."""
    try:
        payload = json_of(response)
    except ValueError:
        raise TransientError("Reddit answered 200 with a body that is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    children = data.get("children") if isinstance(data, dict) else None
    if not isinstance(payload, dict) or payload.get("kind") != "Listing":
        raise TransientError("Reddit answered 200 with something other than a Listing")
    if not isinstance(children, list):
        raise TransientError("Reddit answered a Listing without a `children` list")
    return [c["data"] for c in children if isinstance(c, dict) and isinstance(c.get("data"), dict)]


def _match(
    accounts: Sequence[Account], items: Sequence[Mapping[str, Any]], when: datetime
) -> dict[Account, Outcome]:
    """Pair each asked subreddit with its t5 item by id or name; absent ones are NOT_RETURNED."""
    by_id = {i["name"]: i for i in items if isinstance(i.get("name"), str)}
    by_name = {
        i["display_name"].lower(): i for i in items if isinstance(i.get("display_name"), str)
    }
    out: dict[Account, Outcome] = {}
    for account in accounts:
        sid = _stored_id(account)
        item = by_id.get(sid) if sid is not None else by_name.get(subreddit(account).lower())
        if item is None:
            out[account] = Failure(account, when, FailureKind.NOT_RETURNED, "absent from listing")
        else:
            out[account] = _outcome(account, item, when)
    return out


def _about(account: Account, response: httpx.Response, when: datetime) -> Outcome:
    """What `r/{sub}/about` says about one subreddit that /api/info left out."""
    status = response.status_code
    body = json_object(response)
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    if status in (301, 302):
        location = response.headers.get("location", "")
        # Without OAuth, Reddit sends an unknown name to its search page; other redirects (such
        # as an over-18 gate) mean the page exists but is closed to us.
        if "/subreddits/search" in location:
            return Failure(account, when, FailureKind.NOT_FOUND, "redirected to search")
        detail = f"redirected to {httpx.URL(location).path[:100]}"
        return Failure(account, when, FailureKind.FORBIDDEN, detail)
    if status in (403, 404):
        default = FailureKind.FORBIDDEN if status == 403 else FailureKind.NOT_FOUND
        kind = _REASONS.get(reason or "", default)
        return Failure(account, when, kind, f"HTTP {status}" + (f" ({reason})" if reason else ""))
    data = body.get("data")
    if body.get("kind") != "t5" or not isinstance(data, dict):
        return Failure(account, when, FailureKind.MALFORMED, "about answered without a t5 object")
    return _outcome(account, data, when)


def _outcome(account: Account, item: Mapping[str, Any], when: datetime) -> Outcome:
    name = item.get("name")
    if not isinstance(name, str) or not _T5.match(name):
        return Failure(account, when, FailureKind.MALFORMED, "subreddit without a t5_ name")
    sid = _stored_id(account)
    if sid is not None and sid != name:
        detail = f"r/{subreddit(account)} is now another subreddit ({name}), not {sid}"
        return Failure(account, when, FailureKind.NOT_FOUND, detail)
    subscribers = item.get("subscribers")
    if subscribers is None:
        closed = item.get("subreddit_type") in _CLOSED_TYPES or item.get("quarantine") is True
        kind = FailureKind.FORBIDDEN if closed else FailureKind.HIDDEN
        return Failure(account, when, kind, "listed without a subscriber count")
    if not is_count(subscribers):
        detail = f"subscribers is {subscribers!r}, not a count"[:200]
        return Failure(account, when, FailureKind.MALFORMED, detail)
    display = item.get("display_name")
    return Observation(
        account=account,
        time=when,
        followers=subscribers,
        platform_id=name,
        handle=display if isinstance(display, str) else None,
    )


def build(config: RedditConfig, ctx: SourceContext) -> RedditSource:
    """The Reddit source: OAuth when credentials are configured, the public pages otherwise."""
    return RedditSource(
        ctx.client,
        clock=ctx.clock,
        user_agent=config.user_agent,
        client_id=config.client_id or None,
        client_secret=secret(config.client_secret) or None,
        www_url=config.www_url,
        oauth_url=config.oauth_url,
        batch_size=config.batch_size or SPEC.batch_max,
        **tuning(config, ctx),
    )


def ceiling_for(config: RedditConfig) -> tuple[int, float]:
    """100 requests a minute with OAuth, about 10 on the public pages."""
    return (100, 60.0) if config.client_id else (10, 60.0)


SPEC = SourceSpec(
    key="reddit",
    title="Reddit",
    config_model=RedditConfig,
    build=build,
    # Unsure upstream; `batch_size` in the config lowers it if Reddit turns out to cap lower.
    batch_max=100,
    handle_pattern=re.compile(r"^(?:/?[rR]/)?[A-Za-z0-9_]{2,21}$"),
    # OAuth figure; unauthenticated use gets about (10, 60).
    rate_limit_ceiling=(100, 60),
    ceiling_for=ceiling_for,
)
