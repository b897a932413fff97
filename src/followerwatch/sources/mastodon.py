"""Mastodon: counts from each account's home instance, 40 ids a request (4.3+) or one by one."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, NoReturn, Unpack

import httpx
from pydantic import Field, SecretStr, field_validator

from followerwatch.clock import Clock
from followerwatch.config.base import PlatformConfig
from followerwatch.config.fields import Duration, HttpUrl
from followerwatch.errors import AuthError, SourceError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation, is_count
from followerwatch.sources.base import HttpSource, SourceContext, SourceSpec, Tuning, tuning
from followerwatch.sources.common import (
    Outcome,
    Tally,
    assemble,
    chunks,
    json_body,
    json_object,
    one_by_one,
    rate_headers,
    screen,
    secret,
)

ACCOUNTS = "/api/v1/accounts"
LOOKUP = "/api/v1/accounts/lookup"
_RATE_PREFIX = "x-ratelimit-"
# How servers without the 4.3 batch endpoint (older Mastodon, forks) answer `GET /api/v1/accounts`.
_NO_BATCH = frozenset({400, 404, 405, 422, 501})
# Mastodon ids are digits; forks use flake ids or ULIDs. Anything else is not worth sending.
_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_USERNAME = r"[A-Za-z0-9_]+(?:[.-]+[A-Za-z0-9_]+)*"
_DOMAIN = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]"
)
DOMAIN = re.compile(rf"^{_DOMAIN}$")
HANDLE = re.compile(rf"^(?=.{{3,320}}$){_USERNAME}@{_DOMAIN}$")
HIDDEN = -1
_INVALID = "not a user@domain handle"


def group_key(account: Account) -> str:
    """The account's home instance: each instance is polled in its own batches."""
    return account.handle.rpartition("@")[2].lower()


class MastodonConfig(PlatformConfig):
    """`[platforms.mastodon]`: optional bearer tokens; base URLs of instances not at https://<domain>."""

    # Sent to every instance without its own entry in `tokens`: for single-instance watchlists.
    access_token: SecretStr | None = None
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    instance_urls: dict[str, HttpUrl] = Field(default_factory=dict)
    max_wait: Duration = 300.0
    # 300 requests per 5 minutes.
    max_backoff: Duration = 300.0

    @field_validator("tokens", "instance_urls")
    @classmethod
    def _domain_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not DOMAIN.match(key):
                raise ValueError(f"{key!r} is not an instance domain such as mastodon.social")
        return {key.lower(): val for key, val in value.items()}

    def secrets(self) -> list[str]:
        """Every secret value, including the per-instance tokens, for log redaction."""
        extra = [t.get_secret_value() for t in self.tokens.values() if t.get_secret_value()]
        return [*super().secrets(), *extra]


@dataclass
class _Run:
    """One fetch's bookkeeping: what was spent, and whether any request got a usable answer."""

    tally: Tally = field(default_factory=Tally)
    answered: int = 0
    error: SourceError | None = None


class MastodonSource(HttpSource):
    """Counts from each account's home instance; one limiter per instance, each its own budget."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Clock,
        access_token: str = "",
        tokens: Mapping[str, str] | None = None,
        instance_urls: Mapping[str, str] | None = None,
        **settings: Unpack[Tuning],
    ) -> None:
        # Every instance budgets separately: the instance domain is the limiter bucket.
        super().__init__(SPEC, client, clock, rate_headers(_RATE_PREFIX, "iso"), **settings)
        self._default_token = access_token
        self._tokens = {k.lower(): v for k, v in (tokens or {}).items()}
        self._urls = {k.lower(): v.rstrip("/") for k, v in (instance_urls or {}).items()}
        self._no_batch: set[str] = set()

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        """Look up every account on its home instance; per-account problems become Failures."""
        run = _Run()
        fits = HANDLE.match
        order, valid, results = screen(accounts, lambda a: fits(a.handle), _INVALID, self._clock)
        instances: dict[str, list[Account]] = {}
        for account in valid:
            instances.setdefault(group_key(account), []).append(account)
        for domain, members in instances.items():
            await self._fetch_instance(domain, members, results, run)
        if run.error is not None and run.answered == 0:
            raise run.error
        return assemble(order, results, run.tally)

    async def _fetch_instance(
        self, domain: str, members: list[Account], results: dict[Account, Outcome], run: _Run
    ) -> None:
        known = [a for a in members if _known_id(a)]
        # Without a stored id the lookup is the one-off resolution, and its answer has the counts.
        lookups = [a for a in members if not _known_id(a)]
        batches = (
            [] if domain in self._no_batch else chunks(known, _platform_id, self.spec.batch_max)
        )
        if not batches:
            lookups += known
        for index, chunk in enumerate(batches):
            found = await self._batch(domain, chunk, run)
            if found is None:
                self._no_batch.add(domain)
                lookups += [a for later in batches[index:] for a in later]
                break
            for account in chunk:
                if account in found:
                    results[account] = found[account]
                else:
                    # Omitted ids are usually deleted or unapproved; the handle tells which.
                    lookups.append(account)
        await self._lookups(domain, lookups, results, run)

    async def _batch(
        self, domain: str, chunk: list[Account], run: _Run
    ) -> dict[Account, Outcome] | None:
        """`GET /api/v1/accounts?id[]=…`; None when the instance does not have that endpoint."""
        ids = list(dict.fromkeys(_platform_id(a) for a in chunk))
        response, received = await self._get(domain, ACCOUNTS, [("id[]", i) for i in ids], run)
        if response.status_code in _NO_BATCH:
            return None
        if response.status_code != 200:
            _raise_for(response)
        body = json_body(response, "Mastodon")
        if not isinstance(body, list):
            raise TransientError("Mastodon answered the batch lookup with something not a list")
        run.answered += 1
        by_id = {
            raw["id"]: raw
            for raw in body
            if isinstance(raw, dict) and isinstance(raw.get("id"), str)
        }
        return {
            a: _outcome(a, by_id[_platform_id(a)], received)
            for a in chunk
            if _platform_id(a) in by_id
        }

    async def _lookups(
        self, domain: str, accounts: list[Account], results: dict[Account, Outcome], run: _Run
    ) -> None:
        """One `lookup?acct=` per account; one failed lookup costs only its own account."""
        found, error = await one_by_one(
            accounts, partial(self._lookup, domain, run=run), _unanswered, self._clock
        )
        results.update(found)
        run.error = run.error or error

    async def _lookup(self, domain: str, account: Account, *, run: _Run) -> Outcome:
        username = account.handle.rpartition("@")[0]
        response, received = await self._get(domain, LOOKUP, [("acct", username)], run)
        status = response.status_code
        if status in (404, 410):
            run.answered += 1
            reason = _error_text(json_object(response))
            if status == 410:
                # Servers before 3.3 answered a suspended account with 410 Gone.
                return Failure(
                    account, received, FailureKind.SUSPENDED, reason or "gone (HTTP 410)"
                )
            # Mastodon's 404 is JSON; anything else suggests the domain is not the API host.
            hint = f"HTTP 404 without a Mastodon error; map {domain} in instance_urls?"
            return Failure(account, received, FailureKind.NOT_FOUND, reason or hint)
        if status != 200:
            _raise_for(response)
        body = json_body(response, "Mastodon")
        run.answered += 1
        if not isinstance(body, dict):
            return Failure(
                account, received, FailureKind.MALFORMED, "lookup answer is not an object"
            )
        return _outcome(account, body, received)

    async def _get(
        self, domain: str, path: str, params: list[tuple[str, str]], run: _Run
    ) -> tuple[httpx.Response, datetime]:
        token = self._tokens.get(domain) or self._default_token
        return await self._requester.send(
            "GET",
            self._urls.get(domain, f"https://{domain}") + path,
            run.tally,
            bucket=domain,
            params=params,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )


def _known_id(account: Account) -> bool:
    return account.platform_id is not None and _ID.match(account.platform_id) is not None


def _platform_id(account: Account) -> str:
    return account.platform_id or ""


def _unanswered(account: Account, when: datetime, exc: SourceError) -> Failure:
    return Failure(account, when, FailureKind.NOT_RETURNED, f"lookup failed: {exc}"[:300])


def _error_text(body: Mapping[str, Any]) -> str:
    """Mastodon's `{"error": "..."}`; server-written, so it never holds the token."""
    error = body.get("error")
    return error[:200] if isinstance(error, str) else ""


def _raise_for(response: httpx.Response) -> NoReturn:
    status = response.status_code
    reason = _error_text(json_object(response))
    suffix = f": {reason}" if reason else ""
    if status in (401, 403):
        raise AuthError(f"Mastodon refused the request (HTTP {status}){suffix}")
    raise TransientError(f"Mastodon answered HTTP {status}{suffix}")


def _outcome(account: Account, raw: Mapping[str, Any], when: datetime) -> Outcome:
    """An Account entity read into an Observation, or the Failure that explains its counts."""
    uid = raw.get("id")
    username = raw.get("username")
    if not isinstance(uid, str) or not isinstance(username, str) or not username:
        return Failure(account, when, FailureKind.MALFORMED, "account without a string id/username")
    uri = raw.get("uri") if isinstance(raw.get("uri"), str) else ""
    where = f" ({uri})" if uri else ""
    if account.platform_id is not None and account.platform_id != uid:
        return Failure(
            account,
            when,
            FailureKind.NOT_FOUND,
            f"{account.handle} now answers as id {uid}, not the stored id {account.platform_id}",
        )
    if raw.get("suspended") is True:
        # Its counts are zeroed by the server, not real.
        return Failure(account, when, FailureKind.SUSPENDED, f"account is suspended{where}")
    followers = raw.get("followers_count")
    if type(followers) is int and followers == HIDDEN:
        return Failure(account, when, FailureKind.HIDDEN, f"followers count is hidden{where}")
    try:
        counts = [
            _count(raw, name) for name in ("followers_count", "following_count", "statuses_count")
        ]
    except ValueError as exc:
        return Failure(account, when, FailureKind.MALFORMED, str(exc))
    if counts[0] is None:
        return Failure(account, when, FailureKind.MALFORMED, "account without followers_count")
    # A moved account's counts are still real for it; the collector keeps polling the old id.
    domain = account.handle.rpartition("@")[2]
    return Observation(
        account=account,
        time=when,
        followers=counts[0],
        following=counts[1],
        posts=counts[2],
        platform_id=uid,
        handle=f"{username}@{domain}",
    )


def _count(raw: Mapping[str, Any], name: str) -> int | None:
    """A count that is absent or hidden (None), or a non-negative int; else malformed."""
    value = raw.get(name)
    if value is None:
        return None
    if type(value) is int and value == HIDDEN:
        return None
    if not is_count(value):
        raise ValueError(f"{name} is {value!r}, not a count")
    return value


def build(config: MastodonConfig, ctx: SourceContext) -> MastodonSource:
    """The Mastodon source for every watched instance."""
    return MastodonSource(
        ctx.client,
        clock=ctx.clock,
        access_token=secret(config.access_token),
        tokens={d: t.get_secret_value() for d, t in config.tokens.items()},
        instance_urls=dict(config.instance_urls),
        **tuning(config, ctx),
    )


SPEC = SourceSpec(
    key="mastodon",
    title="Mastodon",
    config_model=MastodonConfig,
    build=build,
    batch_max=40,
    handle_pattern=HANDLE,
    # Mastodon's default, per IP (no token) or per token, on each instance separately.
    rate_limit_ceiling=(300, 300.0),
    group_key=group_key,
)
