"""X (API v2): batched lookup by username, re-resolved by stored id when a handle stops working."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, NoReturn, Unpack

import httpx
from pydantic import SecretStr

from followerwatch.clock import Clock
from followerwatch.config.base import PlatformConfig
from followerwatch.config.fields import Duration, HttpUrl
from followerwatch.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    RateLimitedError,
    SourceError,
    TransientError,
)
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation, at_handle
from followerwatch.sources.base import HttpSource, SourceContext, SourceSpec, Tuning, tuning
from followerwatch.sources.common import (
    Outcome,
    Tally,
    assemble,
    chunks,
    json_object,
    json_of,
    rate_headers,
    screen,
    secret,
    strict_count,
)

API = "https://api.x.com"
BY_USERNAMES = "/2/users/by"
BY_IDS = "/2/users"
USER_FIELDS = "public_metrics"
_RATE_PREFIX = "x-rate-limit-"
_ID = re.compile(r"^[0-9]{1,20}$")
# Outcomes that a rename explains, so the stored id is worth asking about.
_RERESOLVE = frozenset({FailureKind.NOT_FOUND, FailureKind.NOT_RETURNED})
_INVALID = "not a valid X username"


class XConfig(PlatformConfig):
    """`[platforms.x]`: the app bearer token, and another API host for proxies or tests."""

    required_secrets: ClassVar[tuple[str, ...]] = ("bearer_token",)

    bearer_token: SecretStr | None = None
    base_url: HttpUrl = API
    max_wait: Duration = 900.0


class XSource(HttpSource):
    """Counts from `GET /2/users/by`; one instance per bearer token, since it holds that budget."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        bearer_token: str,
        clock: Clock,
        base_url: str = API,
        **settings: Unpack[Tuning],
    ) -> None:
        # X budgets each lookup endpoint separately: the path is the limiter bucket.
        super().__init__(SPEC, client, clock, rate_headers(_RATE_PREFIX), **settings)
        self._headers = {"Authorization": f"Bearer {bearer_token}"}
        self._base = base_url.rstrip("/")

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        """Look up every account; per-account problems become Failures, batch problems raise."""
        tally = Tally()
        fits = self.spec.handle_pattern.match
        order, valid, results = screen(accounts, lambda a: fits(a.handle), _INVALID, self._clock)
        for chunk in chunks(valid, lambda a: a.handle.lower(), self.spec.batch_max):
            names: dict[str, str] = {}
            for account in chunk:
                names.setdefault(account.handle.lower(), account.handle)
            params = {"usernames": ",".join(names.values()), "user.fields": USER_FIELDS}
            response, received = await self._get(BY_USERNAMES, params, tally)
            results.update(_match(chunk, _body(response), received, by_ids=False))
        await self._reresolve(results, tally)
        return assemble(order, results, tally)

    async def _reresolve(self, results: dict[Account, Outcome], tally: Tally) -> None:
        """Ask by stored id about accounts whose handle failed: a renamed user answers there."""
        stale = {
            a: outcome
            for a, outcome in results.items()
            if isinstance(outcome, Failure)
            and outcome.kind in _RERESOLVE
            and a.platform_id is not None
            and _ID.match(a.platform_id)
        }
        for chunk in chunks(list(stale), lambda a: a.platform_id or "", self.spec.batch_max):
            ids = ",".join(dict.fromkeys(a.platform_id or "" for a in chunk))
            try:
                response, received = await self._get(
                    BY_IDS, {"ids": ids, "user.fields": USER_FIELDS}, tally
                )
                found = _match(chunk, _body(response), received, by_ids=True)
            except AuthError:
                raise
            except SourceError as exc:
                # The username answer already stands; a failed second opinion must not lose it.
                for account in chunk:
                    old = stale[account]
                    detail = f"{old.detail}; lookup by id failed: {exc}".lstrip("; ")
                    results[account] = dataclasses.replace(old, detail=detail)
                continue
            for account, outcome in found.items():
                if isinstance(outcome, Observation) or outcome.kind != FailureKind.NOT_RETURNED:
                    results[account] = outcome

    async def _get(
        self, path: str, params: Mapping[str, str], tally: Tally
    ) -> tuple[httpx.Response, datetime]:
        """One successful (200) response and the time it arrived; waits out 429s within max_wait."""
        response, received = await self._requester.send(
            "GET",
            self._base + path,
            tally,
            bucket=path,
            params=params,
            headers=self._headers,
            is_rate_limited=lambda r: r.status_code == 429 and not _usage_capped(json_object(r)),
        )
        if response.status_code != 200:
            _raise_for(response.status_code, json_object(response))
        return response, received


def _usage_capped(problem: Mapping[str, Any]) -> bool:
    entries = [problem, *(e for e in _list(problem.get("errors")) if isinstance(e, dict))]
    return any(str(e.get("type", "")).endswith("/usage-capped") for e in entries)


def _describe(problem: Mapping[str, Any]) -> str:
    """A short, server-written explanation; never includes the request, so never the token."""
    for entry in (problem, *(e for e in _list(problem.get("errors")) if isinstance(e, dict))):
        for name in ("detail", "message", "title"):
            value = entry.get(name)
            if isinstance(value, str) and value:
                return value[:200]
    return ""


def _raise_for(status: int, problem: Mapping[str, Any]) -> NoReturn:
    detail = _describe(problem)
    suffix = f": {detail}" if detail else ""
    if _usage_capped(problem):
        raise RateLimitedError(f"X usage cap reached (HTTP {status}){suffix}", retry_at=None)
    if status == 401:
        raise AuthError("X rejected the bearer token (HTTP 401)")
    if status == 403:
        raise AuthError(f"X refused the request (HTTP 403){suffix}")
    if status == 404:
        raise NotFoundError(f"X has no such endpoint (HTTP 404){suffix}")
    raise TransientError(f"X answered HTTP {status}{suffix}")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _body(response: httpx.Response) -> tuple[list[Any], list[Any]]:
    """`data` and `errors` of a 200 answer; anything else about its shape is a TransientError."""
    try:
        payload = json_of(response)
    except ValueError:
        raise TransientError("X answered 200 with a body that is not JSON") from None
    if not isinstance(payload, dict) or not ("data" in payload or "errors" in payload):
        raise TransientError("X answered 200 without `data` or `errors`")
    data = payload.get("data", [])
    errors = payload.get("errors", [])
    if not isinstance(data, list):
        raise TransientError("X answered 200 with `data` that is not a list")
    if not isinstance(errors, list):
        raise TransientError("X answered 200 with `errors` that is not a list")
    return data, errors


def _match(
    accounts: Sequence[Account], body: tuple[list[Any], list[Any]], when: datetime, *, by_ids: bool
) -> dict[Account, Outcome]:
    """Pair each requested account with its user object, error entry, or NOT_RETURNED."""
    data, errors = body
    by_name: dict[str, list[Account]] = {}
    by_id: dict[str, list[Account]] = {}
    for account in accounts:
        by_name.setdefault(account.handle.lower(), []).append(account)
        if account.platform_id is not None:
            by_id.setdefault(account.platform_id, []).append(account)
    out: dict[Account, Outcome] = {}

    def settle(account: Account, outcome: Outcome) -> None:
        # A user object beats an error entry or a mismatch found earlier; otherwise first wins.
        old = out.get(account)
        if old is None or (isinstance(outcome, Observation) and isinstance(old, Failure)):
            out[account] = outcome

    for raw in data:
        if not isinstance(raw, dict):
            continue
        uid = raw.get("id") if isinstance(raw.get("id"), str) else None
        name = raw.get("username") if isinstance(raw.get("username"), str) else None
        targets = [] if by_ids or name is None else list(by_name.get(name.lower(), []))
        targets += [a for a in by_id.get(uid or "", []) if a not in targets]
        for account in targets:
            settle(account, _outcome(account, raw, uid, name, when))
    for entry in errors:
        if not isinstance(entry, dict):
            continue
        value = entry.get("value") or entry.get("resource_id")
        if not isinstance(value, str):
            continue
        kind, detail = _classify(entry)
        targets = by_id.get(value, []) if by_ids else by_name.get(value.lower(), [])
        for account in targets:
            settle(account, Failure(account, when, kind, detail))
    for account in accounts:
        if account not in out:
            out[account] = Failure(
                account, when, FailureKind.NOT_RETURNED, "absent from both data and errors"
            )
    return out


def _outcome(
    account: Account, raw: Mapping[str, Any], uid: str | None, name: str | None, when: datetime
) -> Outcome:
    if uid is None:
        return Failure(account, when, FailureKind.MALFORMED, "user object without a string id")
    if account.platform_id is not None and account.platform_id != uid:
        # The old handle was taken by someone else after a rename: their counts are not ours.
        return Failure(
            account,
            when,
            FailureKind.NOT_FOUND,
            f"{at_handle(account.handle)} now belongs to another user (id {uid})",
        )
    try:
        followers, following, posts = _counts(raw)
    except ValueError as exc:
        return Failure(account, when, FailureKind.MALFORMED, str(exc))
    return Observation(
        account=account,
        time=when,
        followers=followers,
        following=following,
        posts=posts,
        platform_id=uid,
        handle=name,
    )


def _counts(raw: Mapping[str, Any]) -> tuple[int, int | None, int | None]:
    metrics = raw.get("public_metrics")
    if not isinstance(metrics, dict):
        raise ValueError("user object without public_metrics")
    followers = strict_count(metrics, "followers_count", "public_metrics.followers_count")
    if followers is None:
        raise ValueError("public_metrics without followers_count")
    posts = strict_count(metrics, "post_count", "public_metrics.post_count")
    tweets = strict_count(metrics, "tweet_count", "public_metrics.tweet_count")
    return (
        followers,
        strict_count(metrics, "following_count", "public_metrics.following_count"),
        posts if posts is not None else tweets,
    )


def _classify(entry: Mapping[str, Any]) -> tuple[FailureKind, str]:
    """The kind of a partial-batch error entry; X types suspensions as not-found, so check first."""
    detail = entry.get("detail")
    title = entry.get("title")
    kind_type = entry.get("type")
    text = detail if isinstance(detail, str) else ""
    lowered = text.lower()
    type_ = kind_type if isinstance(kind_type, str) else ""
    # Phrases, not words: a username such as "suspended_fan" appears inside not-found details.
    if "has been suspended" in lowered:
        kind = FailureKind.SUSPENDED
    elif "not authorized to see" in lowered or type_.endswith("/not-authorized-for-resource"):
        kind = FailureKind.FORBIDDEN
    elif type_.endswith("/2/problems/resource-not-found") or title == "Not Found Error":
        kind = FailureKind.NOT_FOUND
    elif title == "Forbidden":
        kind = FailureKind.FORBIDDEN
    else:
        kind = FailureKind.NOT_RETURNED
    return kind, text[:200] or (title if isinstance(title, str) else "")


def build(config: XConfig, ctx: SourceContext) -> XSource:
    """The X source for one configured credential."""
    token = secret(config.bearer_token)
    if not token:
        raise ConfigError("platforms.x.bearer_token (or bearer_token_file) is required to watch X")
    return XSource(
        ctx.client,
        bearer_token=token,
        clock=ctx.clock,
        base_url=config.base_url,
        **tuning(config, ctx),
    )


SPEC = SourceSpec(
    key="x",
    title="X",
    config_model=XConfig,
    build=build,
    batch_max=100,
    handle_pattern=re.compile(r"^[A-Za-z0-9_]{1,15}$"),
    rate_limit_ceiling=(300, 900),
)
