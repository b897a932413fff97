"""Bluesky (public AppView): `getProfiles` in batches of 25, keyed on the DID once it is known."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, NoReturn, Unpack

import httpx

from followerwatch.clock import Clock
from followerwatch.config.base import PlatformConfig
from followerwatch.config.fields import Duration, HttpUrl
from followerwatch.errors import AuthError, NotFoundError, SourceError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation, RateLimit
from followerwatch.net.ratelimit import parse_rate_limit, reset_from_epoch, reset_from_seconds
from followerwatch.sources.base import HttpSource, SourceContext, SourceSpec, Tuning, tuning
from followerwatch.sources.common import (
    Outcome,
    Tally,
    assemble,
    chunks,
    json_body,
    json_list,
    json_object,
    one_by_one,
    screen,
    strict_count,
)

APPVIEW = "https://public.api.bsky.app"
PROFILES = "/xrpc/app.bsky.actor.getProfiles"
PROFILE = "/xrpc/app.bsky.actor.getProfile"
INVALID_HANDLE = "handle.invalid"
_RATE_PREFIX = "ratelimit-"
_DID = r"did:(?:plc:[a-z2-7]{24}|web:[A-Za-z0-9.-]+(?:%3[Aa][0-9]{1,5})?)"
# atproto handle syntax, minus the TLDs it reserves (a handle there can never resolve).
_HANDLE = (
    r"(?=.{1,253}$)(?!.*\.(?:alt|arpa|example|internal|invalid|local|localhost|onion)$)"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
DID = re.compile(rf"^{_DID}$")
HANDLE = re.compile(rf"^(?:{_DID}|{_HANDLE})$")
# Below this, a "reset" cannot be an epoch stamp of this century: read it as seconds from now.
_EPOCH_FLOOR = 1_000_000_000
_FOLLOW_UP_KINDS = {
    "AccountTakedown": FailureKind.SUSPENDED,
    "AccountDeactivated": FailureKind.DEACTIVATED,
}
_INVALID = "not a Bluesky handle or DID"


class BlueskyConfig(PlatformConfig):
    """`[platforms.bluesky]`: the AppView to ask (the public, unauthenticated one by default)."""

    base_url: HttpUrl = APPVIEW
    max_wait: Duration = 300.0


def _parse_rate(headers: httpx.Headers, now: datetime) -> RateLimit | None:
    def reset(value: str | None) -> datetime | None:
        stamp = reset_from_epoch(value)
        if stamp is not None and stamp.timestamp() < _EPOCH_FLOOR:
            # The IETF draft's form; a proxy in front of a self-hosted AppView may send it.
            return reset_from_seconds(value, now)
        return stamp

    return parse_rate_limit(headers, _RATE_PREFIX, reset)


def actor(account: Account) -> str:
    """What to ask the AppView for: the stored DID when there is one, else the handle."""
    if account.platform_id is not None and DID.match(account.platform_id):
        return account.platform_id
    return account.handle if DID.match(account.handle) else account.handle.lower()


class BlueskySource(HttpSource):
    """Counts from `getProfiles`; accounts it leaves out get one `getProfile` each to say why."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Clock,
        base_url: str = APPVIEW,
        **settings: Unpack[Tuning],
    ) -> None:
        super().__init__(SPEC, client, clock, _parse_rate, **settings)
        self._base = base_url.rstrip("/")

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        """Look up every account; per-account problems become Failures, batch problems raise."""
        tally = Tally()
        fits = HANDLE.match
        order, valid, results = screen(accounts, lambda a: fits(a.handle), _INVALID, self._clock)
        omitted: list[Account] = []
        for chunk in chunks(valid, actor, self.spec.batch_max):
            params = [("actors", a) for a in dict.fromkeys(actor(a) for a in chunk)]
            response, received = await self._get(PROFILES, params, tally)
            found = _match(chunk, _profiles(response), received)
            results.update(found)
            omitted += [a for a in chunk if a not in found]
        await self._explain(omitted, results, tally)
        return assemble(order, results, tally)

    async def _explain(
        self, omitted: list[Account], results: dict[Account, Outcome], tally: Tally
    ) -> None:
        """Ask `getProfile` about each left-out account: missing, taken down or deactivated."""
        # Duplicates share one request: the first account of an actor asks for all of them.
        first: dict[str, Account] = {}
        for account in omitted:
            first.setdefault(actor(account), account)
        ask = partial(self._profile, tally=tally)
        found, _ = await one_by_one(list(first.values()), ask, _not_returned, self._clock)
        for account in omitted:
            results[account] = dataclasses.replace(found[first[actor(account)]], account=account)

    async def _profile(self, account: Account, *, tally: Tally) -> Outcome:
        name = actor(account)
        response, received = await self._requester.send(
            "GET", self._base + PROFILE, tally, params={"actor": name}
        )
        if response.status_code == 400:
            problem = json_object(response)
            error, message = _text(problem.get("error")), _text(problem.get("message"))
            detail = f"{error}: {message}" if message else error
            kind = _FOLLOW_UP_KINDS.get(error)
            if kind is None and error == "InvalidRequest" and "not found" in message.lower():
                kind = FailureKind.NOT_FOUND
            return Failure(
                account, received, kind or FailureKind.NOT_RETURNED, detail or "HTTP 400"
            )
        if response.status_code != 200:
            _raise_for(response)
        body = json_body(response, "Bluesky")
        if not isinstance(body, dict):
            return Failure(account, received, FailureKind.MALFORMED, "profile is not an object")
        if body.get("did") != name and name.startswith("did:"):
            return Failure(account, received, FailureKind.MALFORMED, "profile of another DID")
        return _outcome(account, body, received)

    async def _get(
        self, path: str, params: list[tuple[str, str]], tally: Tally
    ) -> tuple[httpx.Response, datetime]:
        response, received = await self._requester.send(
            "GET", self._base + path, tally, params=params
        )
        if response.status_code != 200:
            _raise_for(response)
        return response, received


def _text(value: Any) -> str:
    return value[:200] if isinstance(value, str) else ""


def _raise_for(response: httpx.Response) -> NoReturn:
    """XRPC errors are `{"error", "message"}`, server-written and free of anything we sent."""
    status = response.status_code
    problem = json_object(response)
    reason = _text(problem.get("message")) or _text(problem.get("error"))
    suffix = f": {reason}" if reason else ""
    if status in (401, 403):
        raise AuthError(f"Bluesky AppView refused the request (HTTP {status}){suffix}")
    if status == 404:
        raise NotFoundError(f"Bluesky AppView has no such method (HTTP 404){suffix}")
    raise TransientError(f"Bluesky answered HTTP {status}{suffix}")


def _not_returned(account: Account, when: datetime, exc: SourceError) -> Failure:
    return Failure(
        account, when, FailureKind.NOT_RETURNED, f"left out of getProfiles; getProfile: {exc}"[:300]
    )


def _profiles(response: httpx.Response) -> list[Any]:
    return json_list(response, "Bluesky", "profiles", "getProfiles")


def _match(
    accounts: Sequence[Account], profiles: list[Any], when: datetime
) -> dict[Account, Outcome]:
    """Pair accounts with profiles: by DID when asked by DID, else by (lowercased) handle."""
    by_did: dict[str, Mapping[str, Any]] = {}
    by_handle: dict[str, Mapping[str, Any]] = {}
    for raw in profiles:
        if not isinstance(raw, dict):
            continue
        did, handle = raw.get("did"), raw.get("handle")
        if isinstance(did, str):
            by_did.setdefault(did, raw)
        if isinstance(handle, str) and handle != INVALID_HANDLE:
            by_handle.setdefault(handle.lower(), raw)
    out: dict[Account, Outcome] = {}
    for account in accounts:
        name = actor(account)
        raw = by_did.get(name) if name.startswith("did:") else by_handle.get(name)
        if raw is not None:
            out[account] = _outcome(account, raw, when)
    return out


def _outcome(account: Account, raw: Mapping[str, Any], when: datetime) -> Outcome:
    """A profileViewDetailed read into an Observation; a count of 0 is what the AppView says."""
    did = raw.get("did")
    if not isinstance(did, str) or not DID.match(did):
        return Failure(account, when, FailureKind.MALFORMED, "profile without a valid did")
    try:
        followers = strict_count(raw, "followersCount")
        following = strict_count(raw, "followsCount")
        posts = strict_count(raw, "postsCount")
    except ValueError as exc:
        return Failure(account, when, FailureKind.MALFORMED, str(exc))
    if followers is None:
        return Failure(account, when, FailureKind.MALFORMED, "profile without followersCount")
    handle = raw.get("handle")
    # An unverified handle is no name at all; the DID keeps the account polled.
    known = isinstance(handle, str) and handle != INVALID_HANDLE and HANDLE.match(handle)
    return Observation(
        account=account,
        time=when,
        followers=followers,
        following=following,
        posts=posts,
        platform_id=did,
        handle=handle if known and isinstance(handle, str) else None,
    )


def build(config: BlueskyConfig, ctx: SourceContext) -> BlueskySource:
    """The Bluesky source for the configured AppView."""
    return BlueskySource(
        ctx.client, clock=ctx.clock, base_url=config.base_url, **tuning(config, ctx)
    )


SPEC = SourceSpec(
    key="bluesky",
    title="Bluesky",
    config_model=BlueskyConfig,
    build=build,
    batch_max=25,
    handle_pattern=HANDLE,
    # No published AppView figure; the RateLimit-* headers, when sent, are what the limiter obeys.
    rate_limit_ceiling=None,
)
