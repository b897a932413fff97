"""YouTube Data API v3: subscriber counts by channel id, 50 a call, under a saved daily quota."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cache, partial
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Unpack
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import Field, SecretStr

from followerwatch.clock import Clock
from followerwatch.config.base import PlatformConfig
from followerwatch.config.fields import Duration, HttpUrl
from followerwatch.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    RateLimitedError,
    TransientError,
)
from followerwatch.models import (
    MAX_COUNT,
    Account,
    Failure,
    FailureKind,
    FetchResult,
    Observation,
    RateLimit,
)
from followerwatch.sources.base import HttpSource, SourceContext, SourceSpec, Tuning, tuning
from followerwatch.sources.common import (
    Outcome,
    Tally,
    assemble,
    chunks,
    count,
    each_call,
    json_body,
    json_object,
    no_rate_headers,
    retry_after_reset_or_backoff,
    secret,
)

API = "https://www.googleapis.com"
CHANNELS = "/youtube/v3/channels"
PARTS = "statistics,snippet"
LEDGER_FILE = "quota.json"
# Handles are 3-30 letters (any script), digits, `_`, `-`, `.` or middle dots.
_HANDLE_SYNTAX = r"@[\w.\-\u00b7]{3,30}"
_ID_SYNTAX = r"UC[A-Za-z0-9_-]{22}"
_HANDLE = re.compile(_HANDLE_SYNTAX)
_CHANNEL_ID = re.compile(_ID_SYNTAX)
_AUTH_REASONS = frozenset({"keyInvalid", "badRequest", "API_KEY_INVALID", "keyExpired"})
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"})
_QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded"})
_NOT_FOUND = FailureKind.NOT_FOUND


@cache
def pacific() -> ZoneInfo:
    """The zone whose midnight resets the YouTube quota."""
    return ZoneInfo("America/Los_Angeles")


def next_quota_reset(now: datetime) -> datetime:
    """The next midnight in America/Los_Angeles, in UTC."""
    tomorrow = now.astimezone(pacific()).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=pacific()).astimezone(UTC)


def quota_day(now: datetime) -> str:
    """The Pacific calendar day a quota unit spent at `now` counts against."""
    return now.astimezone(pacific()).date().isoformat()


class YouTubeConfig(PlatformConfig):
    """`[platforms.youtube]`: the API key, the project's daily quota, and another API host."""

    required_secrets: ClassVar[tuple[str, ...]] = ("api_key",)

    api_key: SecretStr | None = None
    base_url: HttpUrl = API
    daily_quota: int = Field(default=10_000, ge=1, le=MAX_COUNT)
    max_wait: Duration = 900.0
    # The quota is daily: waiting for its reset is believed up to a day.
    max_backoff: Duration = 86400.0


@dataclass
class QuotaLedger:
    """Units spent on the current Pacific quota day; saved before each call, so restarts keep it."""

    path: Path
    daily_quota: int
    clock: Clock
    day: str = ""
    spent: int = 0
    exhausted: bool = False

    @classmethod
    def open(cls, path: Path, daily_quota: int, clock: Clock) -> QuotaLedger:
        """The ledger saved at `path`; a missing or unreadable file starts an empty day."""
        ledger = cls(path, daily_quota, clock)
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # Google's own 403 quotaExceeded still stops us if the lost file undercounts.
            return ledger
        saved = saved if isinstance(saved, dict) else {}
        day, spent, exhausted = saved.get("day"), count(saved.get("spent")), saved.get("exhausted")
        if isinstance(day, str) and spent is not None and isinstance(exhausted, bool):
            ledger.day, ledger.spent, ledger.exhausted = day, spent, exhausted
        return ledger

    def spend(self) -> None:
        """Record one unit before a call; raise RateLimitedError instead if it would overspend."""
        now = self.clock.now()
        day = quota_day(now)
        spent, exhausted = (self.spent, self.exhausted) if day == self.day else (0, False)
        if exhausted or spent + 1 > self.daily_quota:
            raise RateLimitedError(
                f"YouTube daily quota of {self.daily_quota} units is spent; it resets at "
                "midnight Pacific",
                retry_at=next_quota_reset(now),
            )
        self._save(day, spent + 1, exhausted)

    def exhaust(self) -> None:
        """Google said the quota is gone: spend nothing more until the next Pacific day."""
        day = quota_day(self.clock.now())
        self._save(day, self.spent if day == self.day else 0, True)

    def budget(self) -> RateLimit:
        """What is left today, for FetchResult.rate_limit."""
        now = self.clock.now()
        same_day = quota_day(now) == self.day
        left = self.daily_quota - self.spent if same_day else self.daily_quota
        if same_day and self.exhausted:
            left = 0
        return RateLimit(self.daily_quota, max(left, 0), next_quota_reset(now))

    def _save(self, day: str, spent: int, exhausted: bool) -> None:
        text = json.dumps({"day": day, "spent": spent, "exhausted": exhausted})
        temp = self.path.with_name(self.path.name + ".tmp")
        try:
            temp.write_text(text, encoding="utf-8")
            os.replace(temp, self.path)
        except OSError as exc:
            # Spending units we cannot record could overspend after a restart: send nothing.
            raise TransientError(
                f"cannot record YouTube quota use in {self.path}: {exc.strerror or 'error'}"
            ) from None
        self.day, self.spent, self.exhausted = day, spent, exhausted


@dataclass(frozen=True)
class _Call:
    """One channels.list call: the accounts it answers and its filter (`id` or `forHandle`)."""

    accounts: tuple[Account, ...]
    param: str
    value: str


class YouTubeSource(HttpSource):
    """Counts from `channels.list`; one instance per API key, since it holds that quota."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        clock: Clock,
        ledger_path: Path,
        base_url: str = API,
        daily_quota: int = 10_000,
        **settings: Unpack[Tuning],
    ) -> None:
        # No rate-limit headers: the ledger is the budget.
        super().__init__(SPEC, client, clock, no_rate_headers, **settings)
        self._key = api_key
        self._url = base_url.rstrip("/") + CHANNELS
        self._ledger = QuotaLedger.open(ledger_path, daily_quota, clock)
        # Handles resolved by this process, for callers that do not pass platform_id back.
        self._known: dict[str, str] = {}

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        """Ask by channel id where known (50 a unit), resolve the rest by handle (1 unit each)."""
        tally = Tally()
        order = list(dict.fromkeys(accounts))
        results: dict[Account, Outcome] = {}
        ids: dict[Account, str] = {}
        handles: list[Account] = []
        for account in order:
            cid = self._channel_id(account)
            if cid is not None:
                ids[account] = cid
            elif _HANDLE.fullmatch(account.handle):
                handles.append(account)
            else:
                detail = "not a YouTube handle (@name) or channel id (UC…)"
                results[account] = Failure(account, self._clock.now(), _NOT_FOUND, detail)
        calls = [
            _Call(tuple(chunk), "id", ",".join(dict.fromkeys(ids[a] for a in chunk)))
            for chunk in chunks(list(ids), ids.__getitem__, self.spec.batch_max)
        ]
        calls += [
            _Call(tuple(group), "forHandle", group[0].handle)
            for group in chunks(handles, lambda a: a.handle.lower(), 1)
        ]
        ask = partial(self._call, ids=ids, tally=tally)
        results.update(await each_call(calls, lambda c: c.accounts, ask, self._clock))
        tally.rate_limit = self._ledger.budget() if tally.requests else None
        return assemble(order, results, tally)

    def _channel_id(self, account: Account) -> str | None:
        if _CHANNEL_ID.fullmatch(account.handle):
            return account.handle
        if account.platform_id is not None and _CHANNEL_ID.fullmatch(account.platform_id):
            return account.platform_id
        return self._known.get(account.handle.lower())

    async def _call(
        self, call: _Call, ids: Mapping[Account, str], tally: Tally
    ) -> dict[Account, Outcome]:
        """The outcomes of one call; a 404 (another form of "no such channel") is per account."""
        try:
            items, received = await self._ask({call.param: call.value}, tally)
        except NotFoundError as exc:
            kind = _NOT_FOUND if "," not in call.value else FailureKind.NOT_RETURNED
            now = self._clock.now()
            return {a: Failure(a, now, kind, str(exc)) for a in call.accounts}
        if call.param == "forHandle":
            return self._resolved(call.accounts, items, received)
        return _match_ids(call.accounts, ids, items, received)

    def _resolved(
        self, accounts: Sequence[Account], items: list[Any], when: datetime
    ) -> dict[Account, Outcome]:
        """The answer to `forHandle`: one channel, or none when the handle is unknown."""
        found = [item for item in items if isinstance(item, dict)]
        if not found:
            return {a: Failure(a, when, _NOT_FOUND, "no channel has this handle") for a in accounts}
        cid = found[0].get("id")
        if isinstance(cid, str) and _CHANNEL_ID.fullmatch(cid):
            self._known[accounts[0].handle.lower()] = cid
        return {a: _outcome(a, found[0], when) for a in accounts}

    async def _ask(self, params: dict[str, str], tally: Tally) -> tuple[list[Any], datetime]:
        """The `items` of one channels.list answer (one quota unit per attempt) and its arrival."""
        query = {"part": PARTS, **params, "key": self._key}
        response, received = await self._requester.send(
            "GET",
            self._url,
            tally,
            params=query,
            is_rate_limited=_is_rate_limited,
            retry_time=retry_after_reset_or_backoff,
            before_send=self._ledger.spend,
        )
        if response.status_code != 200:
            self._raise_for(response)
        return _items(response), received

    def _raise_for(self, response: httpx.Response) -> NoReturn:
        """A typed error for a non-200 answer; never mentions the request, which holds the key."""
        status = response.status_code
        body = json_object(response)
        reasons = _reasons(body)
        detail = _message(body)
        suffix = f": {detail}" if detail else ""
        if reasons & _QUOTA_REASONS:
            self._ledger.exhaust()
            raise RateLimitedError(
                f"YouTube daily quota exceeded (HTTP {status}); not retried before midnight "
                "Pacific",
                retry_at=next_quota_reset(self._clock.now()),
            )
        if status == 401 or (status == 400 and reasons & _AUTH_REASONS):
            raise AuthError(f"YouTube rejected the API key (HTTP {status}){suffix}")
        if status == 403:
            raise AuthError(f"YouTube refused the request (HTTP {status}){suffix}")
        if status == 404:
            raise NotFoundError(f"YouTube found no such channel (HTTP 404){suffix}")
        raise TransientError(f"YouTube answered HTTP {status}{suffix}")


def _reasons(body: Mapping[str, Any]) -> set[str]:
    """Every `reason` in `error.errors[]` and in the newer `error.details[]` entries."""
    error = body.get("error")
    entries: list[Any] = []
    for name in ("errors", "details"):
        value = error.get(name) if isinstance(error, dict) else None
        entries += value if isinstance(value, list) else []
    return {
        e["reason"] for e in entries if isinstance(e, dict) and isinstance(e.get("reason"), str)
    }


def _message(body: Mapping[str, Any]) -> str:
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return message[:200] if isinstance(message, str) else ""


def _is_rate_limited(response: httpx.Response) -> bool:
    """A short-term limit worth waiting out; the daily quota is handled apart, not retried."""
    if response.status_code not in (403, 429):
        return False
    reasons = _reasons(json_object(response))
    if reasons & _QUOTA_REASONS:
        return False
    return response.status_code == 429 or bool(reasons & _RATE_REASONS)


def _items(response: httpx.Response) -> list[Any]:
    """`items` of a 200 answer, [] when it has none; any other shape is a TransientError."""
    payload = json_body(response, "YouTube")
    if not isinstance(payload, dict):
        raise TransientError("YouTube answered 200 with a body that is not an object")
    if not {"items", "pageInfo", "kind"} & payload.keys():
        raise TransientError("YouTube answered 200 without `items` or `pageInfo`")
    items = payload.get("items") or []
    if not isinstance(items, list):
        raise TransientError("YouTube answered 200 with `items` that is not a list")
    return items


def _match_ids(
    accounts: Sequence[Account], ids: Mapping[Account, str], items: list[Any], when: datetime
) -> dict[Account, Outcome]:
    """Pair each account with the channel of its id; an id left out is NOT_RETURNED."""
    by_id = {i["id"]: i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)}
    # Deleted and terminated channels are dropped silently; so might anything else be.
    absent = "channel absent from the answer (deleted, terminated or unknown)"
    return {
        a: _outcome(a, by_id[ids[a]], when)
        if ids[a] in by_id
        else Failure(a, when, FailureKind.NOT_RETURNED, absent)
        for a in accounts
    }


def _outcome(account: Account, item: Mapping[str, Any], when: datetime) -> Outcome:
    malformed = partial(Failure, account, when, FailureKind.MALFORMED)
    cid = item.get("id")
    if not isinstance(cid, str) or not _CHANNEL_ID.fullmatch(cid):
        return malformed("channel without a UC… id")
    stats = item.get("statistics")
    if not isinstance(stats, dict):
        return malformed("channel without statistics")
    hidden = stats.get("hiddenSubscriberCount")
    if hidden is True:
        return Failure(account, when, FailureKind.HIDDEN, "the channel hides its subscriber count")
    if hidden not in (None, False):
        return malformed(f"hiddenSubscriberCount is {hidden!r}")
    followers = count(stats.get("subscriberCount"))
    if followers is None:
        return malformed(f"subscriberCount is {stats.get('subscriberCount')!r}, not a count")
    videos = stats.get("videoCount")
    posts = count(videos)
    if videos is not None and posts is None:
        return malformed(f"videoCount is {videos!r}, not a count")
    snippet = item.get("snippet")
    custom = snippet.get("customUrl") if isinstance(snippet, dict) else None
    return Observation(
        account=account,
        time=when,
        followers=followers,
        posts=posts,
        platform_id=cid,
        # Legacy custom URLs without `@` are not handles.
        handle=custom if isinstance(custom, str) and custom.startswith("@") else None,
        resolution=resolution(followers),
    )


def resolution(subscribers: int) -> int:
    """The granularity of a published count: exact below 1,000, else 3 significant figures."""
    if subscribers < 1_000:
        return 1
    return int(10 ** (len(str(subscribers)) - 3))


def build(config: YouTubeConfig, ctx: SourceContext) -> YouTubeSource:
    """The YouTube source for one API key; its quota ledger lives in the source's state folder."""
    key = secret(config.api_key)
    if not key:
        raise ConfigError("platforms.youtube.api_key (or api_key_file) is required for YouTube")
    try:
        pacific()
    except ZoneInfoNotFoundError:
        raise ConfigError(
            "platforms.youtube: the time zone America/Los_Angeles is unknown here "
            "(install the tzdata package); the quota resets at its midnight"
        ) from None
    return YouTubeSource(
        ctx.client,
        api_key=key,
        clock=ctx.clock,
        ledger_path=ctx.state_dir / LEDGER_FILE,
        base_url=config.base_url,
        daily_quota=config.daily_quota,
        **tuning(config, ctx),
    )


def ceiling_for(config: YouTubeConfig) -> tuple[int, float]:
    """The planner's ceiling: the project's daily quota, one unit per call."""
    return (config.daily_quota, 86_400.0)


SPEC = SourceSpec(
    key="youtube",
    title="YouTube",
    config_model=YouTubeConfig,
    build=build,
    batch_max=50,
    handle_pattern=re.compile(rf"^(?:{_HANDLE_SYNTAX}|{_ID_SYNTAX})$"),
    # The default quota; channels.list costs one unit whatever the number of ids.
    rate_limit_ceiling=(10_000, 86_400),
    ceiling_for=ceiling_for,
)
