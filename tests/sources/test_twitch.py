"""TwitchSource against the local fake Twitch: tokens, id resolution, per-channel totals, limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_twitch import CLIENT_ID, CLIENT_SECRET, USER_TOKEN, FakeTwitch
from followerwatch.clock import ManualClock
from followerwatch.errors import (
    AuthError,
    ConfigError,
    RateLimitedError,
    SourceError,
    TransientError,
)
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation
from followerwatch.sources.base import SourceContext
from followerwatch.sources.twitch import TwitchConfig, TwitchSource, build, requests_per_batch

START = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = int(START.timestamp())
SECRETS = (CLIENT_SECRET, USER_TOKEN)


@pytest.fixture
def fake(httpserver: HTTPServer, clock: ManualClock) -> FakeTwitch:
    """The fake Twitch, empty, with full rate buckets."""
    return FakeTwitch(httpserver, clock)


@pytest.fixture
def make(
    fake: FakeTwitch, client: httpx.AsyncClient, clock: ManualClock
) -> Callable[..., TwitchSource]:
    """Build a TwitchSource pointed at the fake; keyword arguments override the defaults."""

    def build(**overrides: Any) -> TwitchSource:
        kwargs: dict[str, Any] = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "clock": clock,
            "id_url": fake.base_url,
            "api_url": fake.base_url,
        }
        kwargs.update(overrides)
        return TwitchSource(client, **kwargs)

    return build


def acct(handle: str, platform_id: str | None = None) -> Account:
    return Account(platform="twitch", handle=handle, name=handle.lower(), platform_id=platform_id)


def by_handle(result: FetchResult) -> dict[str, Observation | Failure]:
    return {o.account.handle: o for o in (*result.observations, *result.failures)}


async def test_batch_of_100_is_one_lookup_plus_one_total_per_channel(fake, make) -> None:
    users = [fake.make_user(i) for i in range(100)]
    fake.add(*users)

    result = await make().fetch([acct(u["login"].upper()) for u in users])

    token, lookup, *totals = fake.seen
    assert (token.method, token.path) == ("POST", "/oauth2/token")
    assert token.form == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "client_credentials",
    }
    assert token.args == []  # the secret never travels in a URL
    assert lookup.path == "/helix/users" and len(lookup.values("login")) == 100
    assert lookup.values("login")[0] == "user_000"  # logins are sent lower-cased
    assert len(totals) == 100 and {s.path for s in totals} == {"/helix/channels/followers"}
    assert [s.values("broadcaster_id") for s in totals] == [[u["id"]] for u in users]
    assert {s.values("first")[0] for s in totals} == {"1"}
    for seen in fake.helix_seen():
        assert (seen.authorization, seen.client_id) == ("Bearer app-token-1", CLIENT_ID)
    assert result.requests == 102 and result.failures == ()
    for obs, u in zip(result.observations, users, strict=True):
        assert (obs.followers, obs.platform_id, obs.handle) == (
            fake.totals[u["id"]],
            u["id"],
            u["login"],
        )
        assert (obs.following, obs.posts, obs.time) == (None, None, START)
    assert result.rate_limit is not None
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (800, 699)
    assert result.rate_limit.reset_at == START + timedelta(seconds=60)


async def test_150_accounts_are_two_lookups_and_150_totals(fake, make) -> None:
    users = [fake.make_user(i) for i in range(150)]
    fake.add(*users)

    result = await make().fetch([acct(u["login"]) for u in users])

    lookups = fake.helix_seen("/users")
    assert [len(s.values("login")) for s in lookups] == [100, 50]
    assert len(fake.helix_seen("/channels/followers")) == 150
    assert result.requests == 1 + 2 + 150
    assert [o.followers for o in result.observations] == [1_000 + 7 * i for i in range(150)]


async def test_stored_ids_are_queried_by_id_and_the_token_is_reused(fake, make) -> None:
    users = [fake.make_user(i) for i in range(3)]
    fake.add(*users)
    source = make()
    first = await source.fetch([acct(u["login"]) for u in users])

    second = await source.fetch([acct(o.account.handle, o.platform_id) for o in first.observations])

    lookup = fake.helix_seen("/users")[-1]
    assert lookup.values("id") == [u["id"] for u in users] and lookup.values("login") == []
    assert second.requests == 4  # one lookup and three totals; no new token
    assert len([s for s in fake.seen if s.path == "/oauth2/token"]) == 1
    assert [o.followers for o in second.observations] == [o.followers for o in first.observations]


async def test_documented_fixtures(fake, make) -> None:
    fake.app_tokens["app-token-1"] = START
    fake.serve(200, fake.load("users_ok.json"))
    fake.serve(200, fake.load("followers_ok.json"))
    fake.serve(200, fake.load("followers_total_only.json"))

    result = await make().fetch([acct("TwitchDev"), acct("twitch"), acct("nobody_here")])

    got = by_handle(result)
    assert isinstance(got["TwitchDev"], Observation)
    assert (got["TwitchDev"].followers, got["TwitchDev"].platform_id) == (8, "141981764")
    assert isinstance(got["twitch"], Observation) and got["twitch"].followers == 1_534_789
    assert isinstance(got["nobody_here"], Failure)
    assert got["nobody_here"].kind == FailureKind.NOT_FOUND


async def test_unknown_and_banned_channels_fail_without_a_total_call(fake, make) -> None:
    users = [fake.make_user(i) for i in range(3)]
    fake.add(*users)
    fake.banned.add(users[1]["id"])

    result = await make().fetch(
        [acct("user_000"), acct("user_001", users[1]["id"]), acct("ghost_x"), acct("user_002")]
    )

    assert [o.account.handle for o in result.observations] == ["user_000", "user_002"]
    assert {f.account.handle: f.kind for f in result.failures} == {
        "user_001": FailureKind.NOT_FOUND,
        "ghost_x": FailureKind.NOT_FOUND,
    }
    assert "deleted or suspended" in by_handle(result)["user_001"].detail  # type: ignore[union-attr]
    # The banned channel's "total: 0" is never asked for, so it can never be read as a count.
    asked = [s.values("broadcaster_id")[0] for s in fake.helix_seen("/channels/followers")]
    assert asked == [users[0]["id"], users[2]["id"]]


async def test_renamed_channel_is_followed_by_id_and_reports_the_new_login(fake, make) -> None:
    renamed = fake.make_user(1) | {"id": "42", "login": "new_login"}
    squatter = fake.make_user(2) | {"id": "77", "login": "old_login"}
    fake.add(renamed, squatter)

    result = await make().fetch([acct("old_login", platform_id="42")])

    assert fake.helix_seen("/users")[0].values("id") == ["42"]
    (obs,) = result.observations
    assert (obs.account.handle, obs.handle, obs.platform_id) == ("old_login", "new_login", "42")
    assert obs.followers == fake.totals["42"]


async def test_garbage_stored_id_falls_back_to_the_login(fake, make) -> None:
    fake.add(fake.make_user(5))

    result = await make().fetch([acct("user_005", platform_id="not-a-number")])

    assert fake.helix_seen("/users")[0].values("login") == ["user_005"]
    assert [o.platform_id for o in result.observations] == ["10000005"]


async def test_invalid_login_is_never_sent_and_duplicates_share_requests(fake, make) -> None:
    fake.add(fake.make_user(1))

    result = await make().fetch([acct("user_001"), acct("bad-login!"), acct("USER_001")])

    assert fake.helix_seen("/users")[0].values("login") == ["user_001"]
    assert len(fake.helix_seen("/channels/followers")) == 1
    assert len(result.observations) == 2
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("bad-login!", FailureKind.NOT_FOUND)
    ]


async def test_no_accounts_no_request(fake, make) -> None:
    assert await make().fetch([]) == FetchResult()
    assert fake.seen == []


async def test_token_is_renewed_shortly_before_it_expires(fake, make, clock) -> None:
    fake.add(fake.make_user(1))
    fake.token_lifetime = 3_600
    source = make()
    await source.fetch([acct("user_001")])

    clock.advance(3_000)
    await source.fetch([acct("user_001")])
    clock.advance(301)  # now within the 300 s margin before expiry
    await source.fetch([acct("user_001")])

    tokens = [s.time for s in fake.seen if s.path == "/oauth2/token"]
    assert tokens == [START, START + timedelta(seconds=3_301)]
    assert fake.helix_seen()[-1].authorization == "Bearer app-token-2"


async def test_revoked_app_token_is_fetched_again_once(fake, make) -> None:
    fake.add(fake.make_user(1))
    source = make()
    await source.fetch([acct("user_001")])
    fake.app_tokens.clear()  # revoked server-side

    result = await source.fetch([acct("user_001")])

    assert [o.followers for o in result.observations] == [1_000]
    assert result.requests == 4  # refused lookup, new token, lookup, total


async def test_persistent_401_is_auth_error_after_one_renewal(fake, make) -> None:
    fake.serve(401, fake.load("unauthorized.json"))
    fake.serve(401, fake.load("unauthorized.json"))

    with pytest.raises(AuthError, match="Invalid OAuth token") as info:
        await make().fetch([acct("user_001")])

    assert [s.path for s in fake.seen] == ["/oauth2/token", "/helix/users"] * 2
    assert not any(secret in str(info.value) for secret in SECRETS)


async def test_followers_refusing_the_app_token_falls_back_to_the_user_token(fake, make) -> None:
    fake.add(fake.make_user(1))
    fake.app_token_gets_followers = False
    source = make(user_token=USER_TOKEN)

    first = await source.fetch([acct("user_001")])
    second = await source.fetch([acct("user_001")])

    assert [o.followers for o in (*first.observations, *second.observations)] == [1_000, 1_000]
    auths = [s.authorization for s in fake.helix_seen("/channels/followers")]
    app, user = "Bearer app-token-1", f"Bearer {USER_TOKEN}"
    # Refused, refused with a fresh app token, user token; then straight to the user token.
    assert auths == [app, "Bearer app-token-2", user, user]
    assert {s.authorization for s in fake.helix_seen("/users")} == {app, "Bearer app-token-2"}


async def test_followers_refusing_the_app_token_without_user_token_says_so(fake, make) -> None:
    fake.add(fake.make_user(1))
    fake.app_token_gets_followers = False

    with pytest.raises(AuthError, match="user_token") as info:
        await make().fetch([acct("user_001")])

    assert not any(secret in str(info.value) for secret in SECRETS)


async def test_refused_user_token_is_auth_error(fake, make) -> None:
    fake.add(fake.make_user(1))
    fake.app_token_gets_followers = False
    fake.user_token = "a-different-token"

    with pytest.raises(AuthError, match="configured user_token") as info:
        await make(user_token=USER_TOKEN).fetch([acct("user_001")])

    assert USER_TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"client_secret": "wrong-secret-value"}, "invalid client secret"),
        ({"client_id": "wrong-client-id"}, "invalid client"),
    ],
)
async def test_refused_client_credentials_are_auth_error_without_secrets(
    fake, make, overrides: dict[str, str], fragment: str
) -> None:
    with pytest.raises(AuthError, match=fragment) as info:
        await make(**overrides).fetch([acct("user_001")])

    assert "wrong-secret-value" not in str(info.value) and CLIENT_SECRET not in str(info.value)
    assert fake.helix_seen() == []


async def test_secret_echoed_by_the_server_is_masked(fake, make) -> None:
    fake.serve_token(403, {"status": 403, "message": f"bad secret {CLIENT_SECRET}"})

    with pytest.raises(AuthError) as info:
        await make().fetch([acct("user_001")])

    assert CLIENT_SECRET not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, "upstream unavailable"),
        (200, "<html>oops</html>"),
        (200, {"token_type": "bearer"}),
        (200, {"access_token": "t", "expires_in": "soon"}),
    ],
)
async def test_broken_token_endpoint_is_transient(fake, make, status: int, body: Any) -> None:
    fake.serve_token(status, body)

    with pytest.raises(TransientError):
        await make().fetch([acct("user_001")])


async def test_429_waits_for_ratelimit_reset_then_retries(fake, make, clock) -> None:
    fake.add(fake.make_user(1))
    bucket = fake.bucket("app")
    bucket.remaining, bucket.reset = 0, EPOCH + 30

    result = await make().fetch([acct("user_001")])

    assert clock.sleeps == [31.0]
    helix = fake.helix_seen()
    assert [s.time for s in helix] == [START] + [START + timedelta(seconds=31)] * 2
    assert [o.followers for o in result.observations] == [1_000]
    assert result.observations[0].time == START + timedelta(seconds=31)


async def test_429_beyond_max_wait_raises(fake, make, clock) -> None:
    bucket = fake.bucket("app")
    bucket.remaining, bucket.reset = 0, EPOCH + 50

    with pytest.raises(RateLimitedError) as info:
        await make(max_wait=30).fetch([acct("user_001")])

    assert info.value.retry_at == START + timedelta(seconds=50)
    assert (len(fake.helix_seen()), clock.sleeps) == (1, [])


async def test_remaining_zero_makes_the_next_request_wait(fake, make, clock) -> None:
    fake.add(fake.make_user(1))
    bucket = fake.bucket("app")
    bucket.remaining, bucket.reset = 2, EPOCH + 45
    source = make()

    first = await source.fetch([acct("user_001")])
    assert first.rate_limit is not None and first.rate_limit.remaining == 0
    second = await source.fetch([acct("user_001")])

    assert clock.sleeps == [46.0]
    assert [s.time for s in fake.helix_seen()][2] == START + timedelta(seconds=46)
    assert second.requests == 2 and len(second.observations) == 1


@pytest.mark.parametrize(
    "body",
    ["<html>502 Bad Gateway</html>", [], {}, {"data": {"id": "1"}}, {"data": "x"}],
    ids=["not-json", "list", "empty", "data-object", "data-string"],
)
async def test_malformed_users_body_is_transient(fake, make, body: Any) -> None:
    fake.app_tokens["app-token-1"] = START
    fake.serve(200, body)

    with pytest.raises(TransientError):
        await make().fetch([acct("user_001")])


@pytest.mark.parametrize(
    "body",
    ["<html>oops</html>", {"total": -1}, {"total": True}, {"total": "12"}, {"total": 1.5}, {}, []],
)
async def test_malformed_total_fails_that_channel_alone(fake, make, body: Any) -> None:
    users = [fake.make_user(i) for i in range(3)]
    fake.add(*users)
    fake.app_tokens["app-token-1"] = START
    fake.serve(200, {"data": users})
    fake.serve(200, {"total": 5, "data": [], "pagination": {}})
    fake.serve(200, body)
    fake.serve(200, {"total": 7, "data": [], "pagination": {}})

    result = await make().fetch([acct(u["login"]) for u in users])

    assert [(o.account.handle, o.followers) for o in result.observations] == [
        ("user_000", 5),
        ("user_002", 7),
    ]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("user_001", FailureKind.MALFORMED)
    ]


async def test_user_object_without_id_is_malformed(fake, make) -> None:
    fake.app_tokens["app-token-1"] = START
    fake.serve(200, {"data": [{"login": "user_001"}, "garbage"]})

    result = await make().fetch([acct("user_001")])

    assert [f.kind for f in result.failures] == [FailureKind.MALFORMED]
    assert result.observations == ()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "Bad Request", "status": 400, "message": "Invalid broadcaster_id"}),
        (503, "upstream unavailable"),
    ],
)
async def test_error_on_one_total_costs_that_channel_alone(
    fake, make, status: int, body: Any
) -> None:
    users = [fake.make_user(i) for i in range(2)]
    fake.add(*users)
    fake.app_tokens["app-token-1"] = START
    fake.serve(200, {"data": users})
    fake.serve(status, body)

    result = await make().fetch([acct("user_000"), acct("user_001")])

    (failure,) = result.failures
    assert (failure.account.handle, failure.kind) == ("user_000", FailureKind.NOT_RETURNED)
    assert str(status) in failure.detail
    assert [o.account.handle for o in result.observations] == ["user_001"]


async def test_every_total_failing_is_a_batch_error(fake, make) -> None:
    users = [fake.make_user(i) for i in range(2)]
    fake.add(*users)
    fake.app_tokens["app-token-1"] = START
    fake.serve(200, {"data": users})
    fake.serve(502, "bad gateway")
    fake.serve(502, "bad gateway")

    with pytest.raises(TransientError, match="502"):
        await make().fetch([acct("user_000"), acct("user_001")])


def test_planner_cost_is_one_lookup_plus_one_total_per_channel() -> None:
    config = TwitchConfig(client_id="c", client_secret="s")  # type: ignore[arg-type]
    assert [requests_per_batch(config, n) for n in (1, 100)] == [2, 101]


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransientError), (503, TransientError), (400, TransientError), (403, AuthError)],
)
async def test_batch_errors_on_the_lookup(
    fake, make, status: int, error: type[SourceError]
) -> None:
    fake.app_tokens["app-token-1"] = START
    fake.serve(status, fake.load("bad_request.json") if status == 400 else "nope")

    with pytest.raises(error, match=str(status)):
        await make().fetch([acct("user_001")])


async def test_fake_rejects_what_twitch_rejects(fake, client: httpx.AsyncClient) -> None:
    token = (
        await client.post(
            fake.base_url + "/oauth2/token",
            data={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_type": "client_credentials",
            },
        )
    ).json()["access_token"]
    url = fake.base_url + "/helix/users"
    auth = {"Authorization": f"Bearer {token}", "Client-Id": CLIENT_ID}
    too_many = [("login", f"u{i}") for i in range(101)]

    assert (await client.get(url, params=too_many, headers=auth)).status_code == 400
    assert (await client.get(url, params={"login": "a-b"}, headers=auth)).status_code == 400
    assert (await client.get(url, params={"login": "ab"})).status_code == 401
    no_client = {"Authorization": f"Bearer {token}"}
    assert (await client.get(url, params={"login": "ab"}, headers=no_client)).status_code == 401
    followers = fake.base_url + "/helix/channels/followers"
    assert (await client.get(followers, headers=auth)).status_code == 400


async def test_token_echoed_by_helix_is_masked(fake, make) -> None:
    fake.app_tokens["app-token-1"] = START
    fake.serve_token(200, {"access_token": "app-token-1", "expires_in": 3600})
    fake.serve(403, {"error": "Forbidden", "status": 403, "message": "app-token-1 lacks scope"})

    with pytest.raises(AuthError) as info:
        await make().fetch([acct("user_001")])

    assert "app-token-1" not in str(info.value)


def test_build_needs_client_id_and_secret(client: httpx.AsyncClient, clock, tmp_path) -> None:
    ctx = SourceContext(client, clock, tmp_path)
    config = TwitchConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, user_token=USER_TOKEN)

    assert isinstance(build(config, ctx), TwitchSource)
    assert sorted(config.secrets()) == sorted(SECRETS)
    with pytest.raises(ConfigError, match="client_id"):
        build(TwitchConfig(client_secret=CLIENT_SECRET), ctx)
    with pytest.raises(ConfigError, match="client_secret"):
        build(TwitchConfig(client_id=CLIENT_ID), ctx)
