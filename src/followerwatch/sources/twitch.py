"""Twitch (Helix): users looked up 100 at a time, then one follower total per channel.

Requests per poll of N accounts: ⌈N / 100⌉ `helix/users` lookups (by stored id when known, so a
renamed login is followed and a deleted or suspended channel is never read as zero followers)
plus N `channels/followers` calls, because that endpoint takes one broadcaster per call (see
`requests_per_batch`); plus an app-token fetch when the token is missing or about to expire.
Twitch documents a user token for `channels/followers`; the app token is tried first, and once
it is refused there the configured `user_token` is used for that endpoint from then on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal, NoReturn, Unpack

import httpx
from pydantic import SecretStr

from followerwatch.clock import Clock
from followerwatch.config.base import PlatformConfig
from followerwatch.config.fields import Duration, HeaderText, HttpUrl
from followerwatch.errors import AuthError, ConfigError, NotFoundError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation, is_count
from followerwatch.sources.base import HttpSource, SourceContext, SourceSpec, Tuning, tuning
from followerwatch.sources.common import (
    Outcome,
    Tally,
    assemble,
    chunks,
    each_call,
    json_list,
    json_object,
    json_of,
    rate_headers,
    screen,
    secret,
)
from followerwatch.sources.oauth import ClientCredentials, server_message

ID_URL = "https://id.twitch.tv"
API_URL = "https://api.twitch.tv"
USERS = "/helix/users"
FOLLOWERS = "/helix/channels/followers"
TOKEN = "/oauth2/token"
_RATE_PREFIX = "ratelimit-"
_ID = re.compile(r"^[0-9]{1,20}$")
_INVALID = "not a valid Twitch login"

Credential = Literal["app", "user"]


class TwitchConfig(PlatformConfig):
    """`[platforms.twitch]`: the app's client id and secret, an optional user token, API hosts."""

    required_secrets: ClassVar[tuple[str, ...]] = ("client_secret",)

    client_id: HeaderText | None = None
    client_secret: SecretStr | None = None
    # Only used if channels/followers refuses the app token (Twitch documents a user token there).
    user_token: SecretStr | None = None
    id_url: HttpUrl = ID_URL
    api_url: HttpUrl = API_URL
    max_wait: Duration = 120.0
    # A bucket of 800 points a minute.
    max_backoff: Duration = 60.0


def _by_id(account: Account) -> str | None:
    """The stored numeric id, if there is a usable one."""
    pid = account.platform_id
    return pid if pid is not None and _ID.match(pid) else None


def _lookup_key(account: Account) -> str:
    uid = _by_id(account)
    return f"id:{uid}" if uid is not None else f"login:{account.handle.lower()}"


class TwitchSource(HttpSource):
    """Follower totals from Helix; one instance per app, since it holds that app's budget."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        clock: Clock,
        user_token: str | None = None,
        id_url: str = ID_URL,
        api_url: str = API_URL,
        **settings: Unpack[Tuning],
    ) -> None:
        # Twitch budgets each token separately, so "app" and "user" are separate limiter buckets.
        super().__init__(SPEC, client, clock, rate_headers(_RATE_PREFIX), **settings)
        self._client_id = client_id
        self._user_token = user_token
        self._api = api_url.rstrip("/")
        self._secrets = tuple(s for s in (client_secret, user_token) if s)
        self._app = ClientCredentials(
            self._requester,
            clock,
            id_url.rstrip("/") + TOKEN,
            platform="Twitch",
            data={
                "client_id": client_id,
                "client_secret": client_secret,
                "grant_type": "client_credentials",
            },
            secrets=self._secrets,
        )
        # Set once channels/followers has refused the app token; then the user token is used there.
        self._followers_need_user = False

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        """Resolve every account, then read each found channel's follower total."""
        tally = Tally()
        fits = self.spec.handle_pattern.match
        order, valid, results = screen(
            accounts, lambda a: _by_id(a) is not None or fits(a.handle), _INVALID, self._clock
        )
        users: dict[Account, tuple[str, str]] = {}

        async def lookup(chunk: Sequence[Account]) -> dict[Account, Outcome]:
            params: list[tuple[str, str]] = []
            for key in dict.fromkeys(_lookup_key(a) for a in chunk):
                kind, _, value = key.partition(":")
                params.append((kind, value))
            response, received = await self._helix(USERS, params, tally)
            found = _match_users(chunk, _users(response), received)
            users.update((a, f) for a, f in found.items() if not isinstance(f, Failure))
            return {a: f for a, f in found.items() if isinstance(f, Failure)}

        lookups = chunks(valid, _lookup_key, self.spec.batch_max)
        results.update(await each_call(lookups, lambda c: c, lookup, self._clock))
        channels: dict[str, list[Account]] = {}
        for account, (uid, _) in users.items():
            channels.setdefault(uid, []).append(account)

        async def read_total(uid: str) -> dict[Account, Outcome]:
            return await self._total(uid, {a: users[a][1] for a in channels[uid]}, tally)

        # One call per channel, so one failing channel costs only its own accounts.
        results.update(
            await each_call(list(channels), channels.__getitem__, read_total, self._clock)
        )
        return assemble(order, results, tally)

    async def _total(
        self, uid: str, logins: Mapping[Account, str], tally: Tally
    ) -> dict[Account, Outcome]:
        """The follower total of one channel, for every account that resolved to it."""
        params = [("broadcaster_id", uid), ("first", "1")]
        response, received = await self._helix(FOLLOWERS, params, tally)
        try:
            body = json_of(response)
        except ValueError:
            body = None
        total = body.get("total") if isinstance(body, dict) else None
        if not is_count(total):
            detail = f"channels/followers `total` is {total!r}, not a count"[:200]
            return {a: Failure(a, received, FailureKind.MALFORMED, detail) for a in logins}
        return {
            account: Observation(
                account=account, time=received, followers=total, platform_id=uid, handle=login
            )
            for account, login in logins.items()
        }

    async def _helix(
        self, path: str, params: Sequence[tuple[str, str]], tally: Tally
    ) -> tuple[httpx.Response, datetime]:
        """A 200 answer; a refused app token is renewed once, then a user token is tried."""
        followers = path == FOLLOWERS
        credential: Credential = "user" if followers and self._followers_need_user else "app"
        renewed = False
        while True:
            if credential == "user":
                token = self._user_token or ""
            else:
                token = await self._app.token(tally)
            response, received = await self._requester.send(
                "GET",
                self._api + path,
                tally,
                bucket=credential,
                params=list(params),
                headers={"Authorization": f"Bearer {token}", "Client-Id": self._client_id},
            )
            if response.status_code == 200:
                return response, received
            detail = server_message(json_object(response), (*self._secrets, token))
            if response.status_code != 401:
                _raise_for(path, response.status_code, detail)
            if credential == "app" and not renewed:
                # The token may have been revoked or expired early: ask for a new one, once.
                self._app.invalidate()
                renewed = True
                continue
            if credential == "app" and followers:
                if self._user_token is None:
                    raise AuthError(
                        f"Twitch refused the app access token on channels/followers (HTTP 401: "
                        f"{detail}); set platforms.twitch.user_token"
                    )
                self._followers_need_user = True
                credential = "user"
                continue
            which = "configured user_token" if credential == "user" else "app access token"
            raise AuthError(f"Twitch refused the {which} (HTTP 401: {detail})")


def _raise_for(path: str, status: int, detail: str) -> NoReturn:
    suffix = f": {detail}" if detail else ""
    if status == 403:
        raise AuthError(f"Twitch refused the request to {path} (HTTP 403){suffix}")
    if status == 404:
        raise NotFoundError(f"Twitch has no endpoint {path} (HTTP 404){suffix}")
    raise TransientError(f"Twitch answered HTTP {status} on {path}{suffix}")


def _users(response: httpx.Response) -> list[Any]:
    """`data` of a users answer; anything else about its shape is a TransientError."""
    return json_list(response, "Twitch", "data", "helix/users")


def _match_users(
    accounts: Sequence[Account], data: Sequence[Any], when: datetime
) -> dict[Account, tuple[str, str] | Failure]:
    """Each account's (id, current login), or why it has none; omitted users are not found."""
    by_id: dict[str, dict[str, Any]] = {}
    by_login: dict[str, dict[str, Any]] = {}
    for raw in data:
        if not isinstance(raw, dict):
            continue
        uid, login = raw.get("id"), raw.get("login")
        if isinstance(uid, str):
            by_id[uid] = raw
        if isinstance(login, str):
            by_login[login.lower()] = raw
    out: dict[Account, tuple[str, str] | Failure] = {}
    for account in accounts:
        uid = _by_id(account)
        raw = by_id.get(uid) if uid is not None else by_login.get(account.handle.lower())
        if raw is None:
            detail = (
                f"no Twitch user with id {uid} (deleted or suspended)"
                if uid is not None
                else f"no Twitch user with login {account.handle}"
            )
            out[account] = Failure(account, when, FailureKind.NOT_FOUND, detail)
            continue
        got_id, login = raw.get("id"), raw.get("login")
        if not isinstance(got_id, str) or not _ID.match(got_id) or not isinstance(login, str):
            out[account] = Failure(
                account, when, FailureKind.MALFORMED, "user object without a string id and login"
            )
            continue
        out[account] = (got_id, login)
    return out


def build(config: TwitchConfig, ctx: SourceContext) -> TwitchSource:
    """The Twitch source for one configured app."""
    client_secret = secret(config.client_secret)
    if not config.client_id or not client_secret:
        raise ConfigError(
            "platforms.twitch.client_id and client_secret (or client_secret_file) are required "
            "to watch Twitch"
        )
    return TwitchSource(
        ctx.client,
        client_id=config.client_id,
        client_secret=client_secret,
        user_token=secret(config.user_token) or None,
        clock=ctx.clock,
        id_url=config.id_url,
        api_url=config.api_url,
        **tuning(config, ctx),
    )


def requests_per_batch(config: TwitchConfig, accounts: int) -> int:
    """Requests one batch costs the planner: one users lookup plus one total per channel."""
    return accounts + 1


SPEC = SourceSpec(
    key="twitch",
    title="Twitch",
    config_model=TwitchConfig,
    build=build,
    # The users lookup takes 100; follower totals cost one request per account on top.
    batch_max=100,
    handle_pattern=re.compile(r"^[A-Za-z0-9_]{1,25}$"),
    rate_limit_ceiling=(800, 60),
    requests_per_batch=requests_per_batch,
)
