"""RedditSource on the local fake Reddit, with and without OAuth: batching, omissions, limits."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from pytest_httpserver import HTTPServer

from fakes.fake_reddit import CLIENT_ID, CLIENT_SECRET, TOO_MANY_HTML, USER_AGENT, FakeReddit
from followerwatch.clock import ManualClock
from followerwatch.errors import (
    AuthError,
    NotFoundError,
    RateLimitedError,
    SourceError,
    TransientError,
)
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation
from followerwatch.net.http import USER_AGENT as SHARED_AGENT
from followerwatch.sources.base import SourceContext
from followerwatch.sources.reddit import DEFAULT_USER_AGENT, RedditConfig, RedditSource, build

START = datetime(2026, 1, 1, tzinfo=UTC)
MODES = ["oauth", "public"]


@pytest.fixture
async def shared() -> AsyncIterator[httpx.AsyncClient]:
    """A client carrying the shared client's generic User-Agent, which the fake Reddit throttles."""
    async with httpx.AsyncClient(
        timeout=5.0, trust_env=False, headers={"User-Agent": SHARED_AGENT}
    ) as client:
        yield client


@pytest.fixture
def fake(httpserver: HTTPServer, clock: ManualClock) -> FakeReddit:
    """The fake Reddit, empty, with fresh rate windows."""
    return FakeReddit(httpserver, clock)


@pytest.fixture
def make(
    fake: FakeReddit, shared: httpx.AsyncClient, clock: ManualClock
) -> Callable[..., RedditSource]:
    """Build a RedditSource on the fake: `oauth=False` for the public pages."""

    def build(oauth: bool = True, **overrides: Any) -> RedditSource:
        kwargs: dict[str, Any] = {
            "clock": clock,
            "user_agent": USER_AGENT,
            "www_url": fake.base_url,
            "oauth_url": fake.base_url,
        }
        if oauth:
            kwargs |= {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        kwargs.update(overrides)
        return RedditSource(shared, **kwargs)

    return build


def acct(handle: str, platform_id: str | None = None) -> Account:
    return Account(platform="reddit", handle=handle, name=handle.lower(), platform_id=platform_id)


def by_handle(result: FetchResult) -> dict[str, Observation | Failure]:
    return {o.account.handle: o for o in (*result.observations, *result.failures)}


@pytest.mark.parametrize("mode", MODES)
async def test_batch_of_100_is_one_request(fake, make, mode: str) -> None:
    subs = [fake.make_sub(i) for i in range(100)]
    fake.add(*subs)

    result = await make(oauth=mode == "oauth").fetch([acct(s["display_name"]) for s in subs])

    api = fake.api_seen()
    assert len(api) == 1 and len(api[0].args["sr_name"].split(",")) == 100
    assert {s.user_agent for s in fake.seen} == {USER_AGENT}
    if mode == "oauth":
        token = fake.seen[0]
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        assert (token.method, token.authorization) == ("POST", f"Basic {basic}")
        assert (api[0].path, api[0].authorization) == ("/api/info", "bearer reddit-app-token-1")
    else:
        assert (api[0].path, api[0].authorization) == ("/api/info.json", None)
    assert result.requests == len(fake.seen) and result.failures == ()
    for obs, sub in zip(result.observations, subs, strict=True):
        assert (obs.followers, obs.platform_id, obs.handle, obs.time) == (
            sub["subscribers"],
            sub["name"],
            sub["display_name"],
            START,
        )
    limit = 1000 if mode == "oauth" else 100
    assert result.rate_limit is not None
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (limit, limit - 1)
    assert result.rate_limit.reset_at == START + timedelta(seconds=600)


@pytest.mark.parametrize(("size", "sent"), [(None, [100, 50]), (40, [40, 40, 40, 30])])
async def test_more_than_a_batch_is_split(fake, make, size: int | None, sent: list[int]) -> None:
    subs = [fake.make_sub(i) for i in range(150)]
    fake.add(*subs)
    source = make(**({"batch_size": size} if size else {}))

    result = await source.fetch([acct(s["display_name"]) for s in subs])

    assert [len(s.args["sr_name"].split(",")) for s in fake.api_seen()] == sent
    assert [o.followers for o in result.observations] == [1_000 + 7 * i for i in range(150)]


async def test_stored_ids_are_queried_by_id_and_the_current_name_reported(fake, make) -> None:
    subs = [fake.make_sub(i) for i in range(3)]
    fake.add(*subs)

    result = await make().fetch([acct(f"old_{i}", s["name"]) for i, s in enumerate(subs)])

    (sent,) = fake.api_seen()
    assert sent.args == {"id": ",".join(s["name"] for s in subs)}
    assert [(o.account.handle, o.handle) for o in result.observations] == [
        ("old_0", "Sub_000"),
        ("old_1", "Sub_001"),
        ("old_2", "Sub_002"),
    ]


async def test_documented_listing_fixture(fake, make) -> None:
    fake.serve(200, fake.load("info_ok.json"))

    result = await make(oauth=False).fetch([acct("python"), acct("AskReddit"), acct("nosuch_sub")])

    got = by_handle(result)
    assert isinstance(got["python"], Observation)
    assert (got["python"].followers, got["python"].platform_id) == (1_389_104, "t5_2qh0y")
    assert got["python"].handle == "Python"
    assert isinstance(got["AskReddit"], Observation) and got["AskReddit"].followers == 51_730_211
    assert isinstance(got["nosuch_sub"], Failure)
    assert got["nosuch_sub"].kind == FailureKind.NOT_FOUND  # the public site redirected to search


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("private", FailureKind.FORBIDDEN),
        ("quarantined", FailureKind.FORBIDDEN),
        ("gated", FailureKind.FORBIDDEN),
        ("banned", FailureKind.SUSPENDED),
        (None, FailureKind.NOT_FOUND),
    ],
)
async def test_omitted_subreddits_are_classified_by_about(
    fake, make, mode: str, status: str | None, kind: FailureKind
) -> None:
    fake.add(fake.make_sub(0), fake.make_sub(2))
    if status is not None:
        fake.add(fake.make_sub(1), status=status)

    result = await make(oauth=mode == "oauth").fetch(
        [acct("Sub_000"), acct("Sub_001"), acct("Sub_002")]
    )

    assert [o.account.handle for o in result.observations] == ["Sub_000", "Sub_002"]
    assert [(f.account.handle, f.kind) for f in result.failures] == [("Sub_001", kind)]
    suffix = "" if mode == "oauth" else ".json"
    assert [s.path for s in fake.api_seen()] == [f"/api/info{suffix}", f"/r/Sub_001/about{suffix}"]


async def test_private_listed_without_a_count_is_forbidden_without_follow_up(fake, make) -> None:
    fake.info_lists_private = True
    fake.add(fake.make_sub(1), status="private")

    result = await make().fetch([acct("Sub_001")])

    assert [f.kind for f in result.failures] == [FailureKind.FORBIDDEN]
    assert len(fake.api_seen()) == 1


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        ({"subscribers": None}, FailureKind.HIDDEN),
        ({"subscribers": None, "quarantine": True}, FailureKind.FORBIDDEN),
        ({"subscribers": "abc"}, FailureKind.MALFORMED),
        ({"subscribers": "12"}, FailureKind.MALFORMED),
        ({"subscribers": -1}, FailureKind.MALFORMED),
        ({"subscribers": True}, FailureKind.MALFORMED),
        ({"subscribers": 1.5}, FailureKind.MALFORMED),
        ({"name": "2qh0y"}, FailureKind.MALFORMED),
    ],
)
async def test_one_bad_item_fails_alone(
    fake, make, extra: dict[str, Any], kind: FailureKind
) -> None:
    good_a, bad, good_b = (fake.make_sub(i) for i in range(3))
    bad |= extra
    listing = fake.load("info_empty.json")
    listing["data"]["children"] = [{"kind": "t5", "data": d} for d in (good_a, bad, good_b)]
    fake.serve(200, listing)

    result = await make(oauth=False).fetch([acct("Sub_000"), acct("Sub_001"), acct("Sub_002")])

    assert [o.followers for o in result.observations] == [1_000, 1_014]
    assert [(f.account.handle, f.kind) for f in result.failures] == [("Sub_001", kind)]


async def test_about_answering_with_a_count_is_observed(fake, make) -> None:
    fake.serve(200, fake.load("info_empty.json"))
    fake.serve(200, fake.load("about_python.json"))

    result = await make(oauth=False).fetch([acct("r/Python")])

    (obs,) = result.observations
    assert (obs.followers, obs.platform_id, obs.handle) == (1_389_104, "t5_2qh0y", "Python")
    assert fake.api_seen()[0].args == {"sr_name": "Python"}  # the r/ prefix is not sent
    assert result.requests == 2


async def test_stored_id_now_naming_another_subreddit_is_not_found(fake, make) -> None:
    fake.add(fake.make_sub(7) | {"display_name": "Reused"})

    result = await make().fetch([acct("Reused", "t5_aaaaa")])

    (failure,) = result.failures
    assert failure.kind == FailureKind.NOT_FOUND and "t5_aaaaa" in failure.detail


async def test_failed_about_keeps_not_returned(fake, make) -> None:
    fake.serve(200, fake.load("info_empty.json"))
    fake.serve(503, "upstream unavailable")

    result = await make(oauth=False).fetch([acct("Sub_001")])

    (failure,) = result.failures
    assert failure.kind == FailureKind.NOT_RETURNED and "about failed" in failure.detail


async def test_invalid_name_is_never_sent_and_duplicates_share_a_slot(fake, make) -> None:
    fake.add(fake.make_sub(1))

    result = await make().fetch([acct("Sub_001"), acct("no spaces!"), acct("r/SUB_001")])

    assert fake.api_seen()[0].args["sr_name"] == "Sub_001"
    assert len(result.observations) == 2
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("no spaces!", FailureKind.NOT_FOUND)
    ]


async def test_no_accounts_no_request(fake, make) -> None:
    assert await make().fetch([]) == FetchResult()
    assert fake.seen == []


async def test_token_is_reused_then_renewed_before_expiry(fake, make, clock) -> None:
    fake.add(fake.make_sub(1))
    fake.token_lifetime = 3_600
    source = make()

    for step in (0, 3_000, 301):
        clock.advance(step)
        await source.fetch([acct("Sub_001")])

    tokens = [s.time for s in fake.seen if s.path == "/api/v1/access_token"]
    assert tokens == [START, START + timedelta(seconds=3_301)]


async def test_revoked_token_is_fetched_again_once(fake, make) -> None:
    fake.add(fake.make_sub(1))
    source = make()
    await source.fetch([acct("Sub_001")])
    fake.tokens.clear()

    result = await source.fetch([acct("Sub_001")])

    assert [o.followers for o in result.observations] == [1_007]
    assert result.requests == 3


async def test_persistent_401_is_auth_error(fake, make) -> None:
    fake.serve(401, fake.load("unauthorized.json"))
    fake.serve(401, fake.load("unauthorized.json"))

    with pytest.raises(AuthError, match="401"):
        await make().fetch([acct("Sub_001")])

    assert len([s for s in fake.seen if s.path == "/api/v1/access_token"]) == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, "unauthorized.json"), (200, "token_unsupported_grant.json")],
)
async def test_refused_credentials_are_auth_error_without_the_secret(
    fake, make, status: int, body: str
) -> None:
    fake.serve_token(status, fake.load(body))

    with pytest.raises(AuthError, match="client credentials") as info:
        await make().fetch([acct("Sub_001")])

    assert CLIENT_SECRET not in str(info.value)
    assert fake.api_seen() == []


async def test_wrong_secret_against_the_fake(fake, make) -> None:
    with pytest.raises(AuthError) as info:
        await make(client_secret="wrong-secret-123").fetch([acct("Sub_001")])

    assert "wrong-secret-123" not in str(info.value)


async def test_429_with_html_body_waits_for_the_reset_in_seconds(fake, make, clock) -> None:
    fake.add(fake.make_sub(1))
    fake.serve(
        429,
        TOO_MANY_HTML,
        {"X-Ratelimit-Used": "100", "X-Ratelimit-Remaining": "0.0", "X-Ratelimit-Reset": "42"},
    )

    result = await make(oauth=False).fetch([acct("Sub_001")])

    assert clock.sleeps == [43.0]
    assert [s.time for s in fake.api_seen()] == [START, START + timedelta(seconds=43)]
    assert [o.followers for o in result.observations] == [1_007]


async def test_429_beyond_max_wait_raises(fake, make, clock) -> None:
    window = fake.window("www")
    window.used = window.limit

    with pytest.raises(RateLimitedError) as info:
        await make(oauth=False, max_wait=300).fetch([acct("Sub_001")])

    assert info.value.retry_at == START + timedelta(seconds=600)
    assert (len(fake.api_seen()), clock.sleeps) == (1, [])


async def test_429_without_any_reset_backs_off_then_retries(fake, make, clock) -> None:
    fake.add(fake.make_sub(1))
    fake.serve(429, TOO_MANY_HTML)

    result = await make(oauth=False).fetch([acct("Sub_001")])

    assert clock.sleeps == [2.0]  # a 1 s back-off, plus the 1 s safety margin
    assert (len(fake.api_seen()), len(result.observations)) == (2, 1)


async def test_remaining_zero_makes_the_next_fetch_wait(fake, make, clock) -> None:
    fake.add(fake.make_sub(1))
    window = fake.window("oauth")
    window.used = window.limit - 1
    source = make()

    first = await source.fetch([acct("Sub_001")])
    assert first.rate_limit is not None and first.rate_limit.remaining == 0
    second = await source.fetch([acct("Sub_001")])

    assert clock.sleeps == [601.0]
    assert [s.time for s in fake.api_seen()] == [START, START + timedelta(seconds=601)]
    assert second.requests == 1 and len(second.observations) == 1


async def test_fractional_remaining_is_floored(fake, make) -> None:
    fake.add(fake.make_sub(1))
    headers = {
        "X-Ratelimit-Used": "3",
        "X-Ratelimit-Remaining": "596.7",
        "X-Ratelimit-Reset": "120",
    }
    fake.serve(
        200,
        {"kind": "Listing", "data": {"children": [{"kind": "t5", "data": fake.make_sub(1)}]}},
        headers,
    )

    result = await make(oauth=False).fetch([acct("Sub_001")])

    assert result.rate_limit is not None
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (599, 596)
    assert result.rate_limit.reset_at == START + timedelta(seconds=120)


@pytest.mark.parametrize(
    "body",
    [
        "<html>502 Bad Gateway</html>",
        [],
        {},
        {"kind": "t5", "data": {}},
        {"kind": "Listing", "data": {"children": "nope"}},
        {"kind": "Listing"},
    ],
    ids=["not-json", "list", "empty", "not-listing", "children-string", "no-data"],
)
async def test_malformed_listing_is_transient(fake, make, body: Any) -> None:
    fake.serve(200, body)

    with pytest.raises(TransientError):
        await make(oauth=False).fetch([acct("Sub_001")])


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (403, "<html>blocked</html>", AuthError),
        (404, "not_found.json", NotFoundError),
        (400, "bad_request.json", TransientError),
        (500, "oops", TransientError),
        (503, "oops", TransientError),
    ],
)
async def test_batch_errors(fake, make, status: int, body: str, error: type[SourceError]) -> None:
    fake.serve(status, fake.load(body) if body.endswith(".json") else body)

    with pytest.raises(error, match=str(status)):
        await make(oauth=False).fetch([acct("Sub_001")])


def test_config_needs_both_credentials_and_a_printable_agent() -> None:
    assert RedditConfig().user_agent == DEFAULT_USER_AGENT
    assert RedditConfig(client_id="a", client_secret="b").client_secret is not None
    with pytest.raises(ValidationError, match="both"):
        RedditConfig(client_id="a")
    with pytest.raises(ValidationError, match="printable"):
        RedditConfig(user_agent="bad\nagent")


async def test_fake_rejects_what_reddit_rejects(fake, shared: httpx.AsyncClient) -> None:
    url = fake.base_url + "/api/info.json"
    agent = {"User-Agent": USER_AGENT}
    too_many = ",".join(f"sub{i}" for i in range(101))

    assert (await shared.get(url, params={"sr_name": "python"})).status_code == 429
    assert (await shared.get(url, params={"sr_name": too_many}, headers=agent)).status_code == 400
    oauth = fake.base_url + "/api/info"
    assert (await shared.get(oauth, params={"sr_name": "python"}, headers=agent)).status_code == 401


async def test_over_18_redirect_is_forbidden_not_missing(fake, make) -> None:
    fake.serve(200, fake.load("info_empty.json"))
    fake.serve(302, "", {"Location": "https://www.reddit.com/over18?dest=https%3A%2F%2Fx"})

    result = await make(oauth=False).fetch([acct("Sub_001")])

    (failure,) = result.failures
    assert failure.kind == FailureKind.FORBIDDEN and "/over18" in failure.detail


def test_build_from_config(shared: httpx.AsyncClient, clock, tmp_path) -> None:
    ctx = SourceContext(shared, clock, tmp_path)

    assert isinstance(build(RedditConfig(), ctx), RedditSource)
    config = RedditConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, batch_size=25)
    assert isinstance(build(config, ctx), RedditSource)
    assert config.secrets() == [CLIENT_SECRET]


async def test_failed_batch_costs_its_own_subreddits_without_follow_ups(fake, make) -> None:
    subs = [fake.make_sub(i) for i in range(150)]
    fake.add(*subs)
    fake.serve(
        200,
        {"kind": "Listing", "data": {"children": [{"kind": "t5", "data": s} for s in subs[:100]]}},
    )
    fake.serve(503, "upstream unavailable")

    result = await make(oauth=False).fetch([acct(s["display_name"]) for s in subs])

    assert len(result.observations) == 100
    assert {f.kind for f in result.failures} == {FailureKind.NOT_RETURNED}
    assert len(result.failures) == 50 and "503" in result.failures[0].detail
    assert len(fake.api_seen()) == 2  # no `about` requests for a failed batch
