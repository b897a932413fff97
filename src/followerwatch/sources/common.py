"""What every HTTP source shares: the limiter-aware request loop, JSON bodies, chunking."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import httpx
from pydantic import SecretStr
from pydantic_core import from_json

from followerwatch.clock import Clock
from followerwatch.errors import AuthError, RateLimitedError, SourceError, TransientError
from followerwatch.models import (
    MAX_COUNT,
    Account,
    Failure,
    FailureKind,
    FetchResult,
    Observation,
    RateLimit,
    is_count,
)
from followerwatch.net.ratelimit import (
    MAX_BACKOFF,
    BudgetShare,
    RateLimiter,
    parse_rate_limit,
    parse_retry_after,
    reset_from_epoch,
    reset_from_iso,
    reset_from_seconds,
)
from followerwatch.net.urls import QueryUrls

# A count lookup never needs more; a bigger body is an error page or an attack.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ATTEMPTS = 3
# The whole exchange's deadline when the client's timeouts name none (see ReadLimits).
FALLBACK_DEADLINE = 20.0

RateParser = Callable[[httpx.Headers, datetime], RateLimit | None]
# How a platform's rate-limit reset header counts: epoch seconds, seconds from now, or ISO 8601.
ResetFormat = Literal["epoch", "seconds", "iso"]
Outcome = Observation | Failure
# When a rate-limited answer may be retried: (response, parsed budget, arrival, attempt from 0).
RetryTime = Callable[[httpx.Response, RateLimit | None, datetime, int], datetime | None]
BACKOFF_FIRST = 60.0


def retry_after_or_reset(
    response: httpx.Response, rl: RateLimit | None, received: datetime, attempt: int
) -> datetime | None:
    """The default RetryTime: `Retry-After`, else the reset the rate-limit headers gave."""
    reset_at = parse_retry_after(response.headers.get("retry-after"), received)
    if reset_at is None and rl is not None:
        reset_at = rl.reset_at
    return reset_at


def retry_after_reset_or_backoff(
    response: httpx.Response, rl: RateLimit | None, received: datetime, attempt: int
) -> datetime:
    """`Retry-After`; else the reset if the budget is spent; else 60 s, doubling per attempt."""
    reset_at = parse_retry_after(response.headers.get("retry-after"), received)
    if reset_at is not None:
        return reset_at
    if rl is not None and rl.remaining == 0 and rl.reset_at is not None and rl.reset_at > received:
        return rl.reset_at
    # A limit with budget left (a secondary or per-minute limit) names no reset: back off instead.
    return received + timedelta(seconds=BACKOFF_FIRST * 2**attempt)


@dataclass(frozen=True)
class ReadLimits:
    """What one request may cost: its body size, and its time from connect to the body's end.

    A per-read timeout alone lets a server trickling a byte at a time hold a poll for ever;
    the deadline bounds the whole exchange. None takes the client's connect + read timeouts.
    """

    max_body: int = MAX_BODY_BYTES
    deadline: float | None = None

    def deadline_for(self, client: httpx.AsyncClient) -> float:
        """The deadline of one exchange on `client`."""
        if self.deadline is not None:
            return self.deadline
        connect, read = client.timeout.connect, client.timeout.read
        if connect is None or read is None:
            return FALLBACK_DEADLINE
        return connect + read


DEFAULT_LIMITS = ReadLimits()


@dataclass
class Tally:
    """What one fetch spent, for FetchResult."""

    requests: int = 0
    rate_limit: RateLimit | None = None


@dataclass
class Requester:
    """Sends requests for one credential: waits on its limiter, retries 429s after the reset."""

    client: httpx.AsyncClient
    clock: Clock
    platform: str
    parse_rate: RateParser
    max_wait: float = 900.0
    limiters: dict[str, RateLimiter] = field(default_factory=dict)
    limits: ReadLimits = DEFAULT_LIMITS
    # No reset, Retry-After or back-off is believed beyond this: the platform is retried then.
    max_backoff: float = MAX_BACKOFF
    # Each group's URL, its query encoded once: the next cycle asks the same accounts again.
    urls: QueryUrls = field(default_factory=QueryUrls)
    # Other replicas spending the same credential: each limiter leaves them their part.
    share: BudgetShare | None = None

    def limiter(self, bucket: str) -> RateLimiter:
        """The limiter of one rate-limit bucket (an endpoint, or "" for the whole credential)."""
        limiter = self.limiters.get(bucket)
        if limiter is None:
            limiter = self.limiters[bucket] = RateLimiter(self.max_backoff, self.share)
        return limiter

    async def send(
        self,
        method: str,
        url: str,
        tally: Tally,
        *,
        bucket: str = "",
        is_rate_limited: Callable[[httpx.Response], bool] = lambda r: r.status_code == 429,
        retry_time: RetryTime = retry_after_or_reset,
        before_send: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> tuple[httpx.Response, datetime]:
        """The first answer that is not a rate limit, and when it arrived; raises typed errors.

        `before_send` runs before every attempt and may raise to stop it (e.g. a quota ledger).
        """
        target: str | httpx.URL = url
        # With client-wide params, httpx would replace a ready URL's query by them: encode anew.
        if kwargs.get("params") is not None and not self.client.params:
            ready = self.urls.url(url, kwargs["params"])
            if ready is not None:
                target = ready
                del kwargs["params"]
        limiter = self.limiter(bucket)
        for attempt in range(MAX_ATTEMPTS):
            await limiter.acquire(self.clock, self.max_wait)
            try:
                if before_send is not None:
                    before_send()
                tally.requests += 1
                response = await self._exchange(method, target, kwargs)
                received = self.clock.now()
                rl = self.parse_rate(response.headers, received)
                if rl is not None:
                    limiter.update(rl, received)
                    tally.rate_limit = rl
                limited = is_rate_limited(response)
                if limited:
                    # Recorded before release(): the requests waiting on this answer wait too.
                    # Without a future reset, the credential backs off (1 s, doubling).
                    reset_at = retry_time(response, rl, received, attempt)
                    limiter.refused(rl.limit if rl is not None else None, reset_at, received)
                else:
                    limiter.accepted()
            finally:
                limiter.release()
            if not limited:
                return response, received
        raise limiter.exhausted(
            f"{self.platform} still rate-limited after {MAX_ATTEMPTS} attempts "
            f"(last HTTP {response.status_code})"
        )

    async def _exchange(
        self, method: str, url: str | httpx.URL, kwargs: dict[str, Any]
    ) -> httpx.Response:
        """One request with its whole body, read within the deadline and up to the size cap."""
        deadline = self.limits.deadline_for(self.client)
        body = bytearray()
        try:
            async with (
                asyncio.timeout(deadline),
                self.client.stream(method, url, **kwargs) as streamed,
            ):
                # Decoded bytes count, so a small compressed body cannot unpack past the cap.
                async for chunk in streamed.aiter_bytes():
                    body += chunk
                    if len(body) > self.limits.max_body:
                        raise TransientError(f"{self.platform} answered with an oversized body")
        except TimeoutError:
            raise TransientError(
                f"{self.platform} did not answer in full within {deadline:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise TransientError(f"{self.platform} request failed: {type(exc).__name__}") from None
        # Decoded already, so no Content-Encoding (it would decode twice); copied as bytes, since
        # re-encoding their text refuses a non-ASCII value.
        headers = streamed.headers.copy()
        if "content-encoding" in headers:
            del headers["content-encoding"]
        return httpx.Response(
            streamed.status_code,
            headers=headers,
            content=bytes(body),
            request=streamed.request,
            extensions=streamed.extensions,
        )


def json_of(response: httpx.Response) -> Any:
    """`response.json()`, the same values for less CPU; a ValueError for what is not JSON."""
    try:
        # A third faster on a batch answer, and refuses all the stdlib refuses; what it refuses
        # besides (a BOM, UTF-16, deep nesting, a lone surrogate) the stdlib decides, as before.
        return from_json(response.content)
    except ValueError:
        return response.json()


def json_body(response: httpx.Response, platform: str) -> Any:
    """The parsed JSON of a response; a TransientError for anything that is not JSON."""
    try:
        return json_of(response)
    except ValueError:
        raise TransientError(
            f"{platform} answered HTTP {response.status_code} with a body that is not JSON"
        ) from None


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of an error answer, or {} when it has none."""
    try:
        body = json_of(response)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def chunks(
    accounts: Sequence[Account], key: Callable[[Account], str], size: int
) -> list[list[Account]]:
    """Accounts in groups of at most `size` distinct keys, so duplicates share one slot."""
    groups: dict[str, list[Account]] = {}
    for account in accounts:
        groups.setdefault(key(account), []).append(account)
    keys = list(groups)
    return [[a for k in keys[i : i + size] for a in groups[k]] for i in range(0, len(keys), size)]


# A decimal string longer than MAX_COUNT's cannot be a count (and int() refuses over 4,300 digits).
_MAX_DIGITS = len(str(MAX_COUNT))


def count(value: Any) -> int | None:
    """A count in 0 … MAX_COUNT from JSON (an int, or a decimal string), else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        value = int(value)
    return value if is_count(value) else None


CallT = TypeVar("CallT")


async def each_call(
    calls: Sequence[CallT],
    accounts_of: Callable[[CallT], Sequence[Account]],
    ask: Callable[[CallT], Awaitable[Mapping[Account, Observation | Failure]]],
    clock: Clock,
) -> dict[Account, Observation | Failure]:
    """Every call's outcomes; a failed call costs only its own accounts (as NOT_RETURNED).

    AuthError always propagates, and so does the first error when no call answered at all.
    """
    out: dict[Account, Observation | Failure] = {}
    answered = False
    first_error: SourceError | None = None
    for call in calls:
        try:
            outcomes = await ask(call)
        except AuthError:
            raise
        except SourceError as exc:
            # Answers other calls already paid for (quota, rate budget) must not be thrown away.
            first_error = first_error or exc
            now = clock.now()
            for account in accounts_of(call):
                out[account] = Failure(account, now, FailureKind.NOT_RETURNED, str(exc)[:200])
            continue
        answered = True
        out.update(outcomes)
    if first_error is not None and not answered:
        raise first_error
    return out


def assemble(
    order: Sequence[Account], results: Mapping[Account, Observation | Failure], tally: Tally
) -> FetchResult:
    """The FetchResult of a fetch: every requested account's outcome, in request order."""
    outcomes = [results[a] for a in order]
    return FetchResult(
        observations=tuple(o for o in outcomes if isinstance(o, Observation)),
        failures=tuple(o for o in outcomes if isinstance(o, Failure)),
        requests=tally.requests,
        rate_limit=tally.rate_limit,
    )


def strict_count(raw: Mapping[str, Any], name: str, label: str | None = None) -> int | None:
    """A JSON count that is absent (None) or an int in 0 … MAX_COUNT; else a ValueError."""
    value = raw.get(name)
    if value is None:
        return None
    if not is_count(value):
        raise ValueError(f"{label or name} is {value!r}, not a count")
    return value


def json_list(response: httpx.Response, platform: str, key: str, what: str) -> list[Any]:
    """`body[key]` of a 200 answer, which must be a list; anything else is a TransientError."""
    body = json_body(response, platform)
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise TransientError(f"{platform} answered {what} without a `{key}` list")
    return items


def rate_headers(prefix: str, reset: ResetFormat = "epoch") -> RateParser:
    """The parser of `{prefix}limit`, `-remaining` and `-reset` headers, read as `reset` says."""

    def parse(headers: httpx.Headers, now: datetime) -> RateLimit | None:
        if reset == "seconds":
            return parse_rate_limit(headers, prefix, lambda v: reset_from_seconds(v, now))
        stamp = reset_from_iso if reset == "iso" else reset_from_epoch
        return parse_rate_limit(headers, prefix, stamp)

    return parse


def no_rate_headers(headers: httpx.Headers, now: datetime) -> None:
    """The RateParser of a platform that sends no rate-limit headers."""
    return None


def secret(value: SecretStr | None) -> str:
    """A config secret's value, or "" when it is unset."""
    return value.get_secret_value() if value else ""


def screen(
    accounts: Sequence[Account], fits: Callable[[Account], object], detail: str, clock: Clock
) -> tuple[list[Account], list[Account], dict[Account, Outcome]]:
    """A fetch's preamble: the accounts once each in order, those that `fits`, and NOT_FOUND
    for the others (a platform would reject a whole batch for one malformed name)."""
    order = list(dict.fromkeys(accounts))
    valid: list[Account] = []
    refused: dict[Account, Outcome] = {}
    for account in order:
        if fits(account):
            valid.append(account)
        else:
            refused[account] = Failure(account, clock.now(), FailureKind.NOT_FOUND, detail)
    return order, valid, refused


async def one_by_one(
    accounts: Sequence[Account],
    ask: Callable[[Account], Awaitable[Outcome]],
    unanswered: Callable[[Account, datetime, SourceError], Failure],
    clock: Clock,
) -> tuple[dict[Account, Outcome], SourceError | None]:
    """One request per account, each failure costing only its own account; and the first error.

    After a rate limit the rest are not asked (they would only hit it again); AuthError raises.
    """
    out: dict[Account, Outcome] = {}
    first: SourceError | None = None
    limited: RateLimitedError | None = None
    for account in accounts:
        if limited is not None:
            out[account] = unanswered(account, clock.now(), limited)
            continue
        try:
            out[account] = await ask(account)
        except AuthError:
            raise
        except SourceError as exc:
            first = first or exc
            out[account] = unanswered(account, clock.now(), exc)
            if isinstance(exc, RateLimitedError):
                limited = exc
    return out, first
