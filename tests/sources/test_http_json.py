"""HttpJsonSource against a local fake JSON API: paths, templates, errors, limits, config."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from pytest_httpserver import HTTPServer

from fakes.fake_http_json import API_KEY, BEARER, FakeJsonApi
from followerwatch.clock import ManualClock
from followerwatch.errors import AuthError, ConfigError, RateLimitedError, TransientError
from followerwatch.models import Account, FailureKind, FetchResult
from followerwatch.sources.base import SourceContext
from followerwatch.sources.http_json import (
    HttpJsonConfig,
    HttpJsonSource,
    build,
    parse_path,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = int(START.timestamp())
GRAPHQL_BODY = '{"query": "query($login: String!) { user(login: $login) { databaseId } }", '
GRAPHQL_BODY += '"variables": {"login": "{handle}"}}'


@pytest.fixture
def fake(httpserver: HTTPServer, clock: ManualClock) -> FakeJsonApi:
    """The fake API with a full rate-limit window."""
    return FakeJsonApi(httpserver, clock)


@pytest.fixture
def make(
    fake: FakeJsonApi, client: httpx.AsyncClient, clock: ManualClock
) -> Callable[..., HttpJsonSource]:
    """An HttpJsonSource on the fake's REST endpoint; keyword arguments override the defaults."""

    def build_source(**overrides: Any) -> HttpJsonSource:
        kwargs: dict[str, Any] = {
            "clock": clock,
            "url": fake.url("/v1/users/{handle}/stats"),
            "headers": {"X-Api-Key": API_KEY},
            "count_path": "data.stats.followers",
            "following_path": "data.stats.following",
            "posts_path": "data.stats.posts",
            "id_path": "data.id",
            "handle_path": "data.login",
            "rate_limit_prefix": "x-ratelimit-",
        }
        kwargs.update(overrides)
        return HttpJsonSource(client, **kwargs)

    return build_source


def acct(handle: str, platform_id: str | None = None) -> Account:
    return Account(platform="http_json", handle=handle, name=handle, platform_id=platform_id)


async def test_one_request_per_account_with_every_value(fake, make) -> None:
    fake.add("alice", "u-1", 12_873, 311, 2_048)
    fake.add("bob", "u-2", 40)

    result = await make().fetch([acct("alice"), acct("bob")])

    assert [s.path for s in fake.seen] == ["/v1/users/alice/stats", "/v1/users/bob/stats"]
    assert fake.seen[0].headers["X-Api-Key"] == API_KEY
    assert result.requests == 2 and result.failures == ()
    alice, bob = result.observations
    assert (alice.followers, alice.following, alice.posts) == (12_873, 311, 2_048)
    assert (alice.platform_id, alice.handle, alice.time) == ("u-1", "alice", START)
    assert (bob.followers, bob.platform_id) == (40, "u-2")
    assert result.rate_limit is not None
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (100, 98)
    assert result.rate_limit.reset_at == START + timedelta(seconds=60)


async def test_documented_rest_fixture(fake, make) -> None:
    fake.serve(200, fake.load("stats_ok.json"))

    (obs,) = (await make().fetch([acct("alice")])).observations

    assert (obs.followers, obs.following, obs.posts, obs.platform_id) == (
        12873,
        311,
        2048,
        "u-1842",
    )


async def test_handle_is_url_quoted(clock: ManualClock) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"n": 1})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as mock:
        source = HttpJsonSource(
            mock,
            clock=clock,
            url="https://api.example/u/{handle}?q={handle}",
            count_path="n",
            handle_pattern=r"^.{1,40}$",
        )
        await source.fetch([acct("a/b c@d&e=f")])

    assert seen[0].url.raw_path == b"/u/a%2Fb%20c%40d%26e%3Df?q=a%2Fb%20c%40d%26e%3Df"


async def test_post_body_template_with_bearer_and_json_escaping(fake, make) -> None:
    fake.add('quo"te', "u-5", 77)
    fake.add("octo", "u-583231", 21_455)
    source = make(
        url=fake.url("/graphql"),
        method="POST",
        body=GRAPHQL_BODY,
        headers={"Authorization": f"Bearer {BEARER}"},
        count_path="data.user.followers.totalCount",
        id_path="data.user.databaseId",
        handle_path="data.user.login",
        following_path=None,
        posts_path=None,
        handle_pattern=r'^[a-z"]+$',
    )

    result = await source.fetch([acct('quo"te'), acct("octo")])

    assert [o.followers for o in result.observations] == [77, 21_455]
    assert result.observations[1].platform_id == "583231"  # integer ids become strings
    assert fake.seen[0].headers["Content-Type"] == "application/json"
    assert '"login": "quo\\"te"' in fake.seen[0].body


async def test_graphql_null_user_is_malformed_not_zero(fake, make) -> None:
    source = make(
        url=fake.url("/graphql"),
        method="POST",
        body=GRAPHQL_BODY,
        headers={"Authorization": f"Bearer {BEARER}"},
        count_path="data.user.followers.totalCount",
        following_path=None,
        posts_path=None,
        id_path=None,
        handle_path=None,
    )

    result = await source.fetch([acct("nobody")])

    assert result.observations == ()
    assert [f.kind for f in result.failures] == [FailureKind.MALFORMED]


@pytest.mark.parametrize(
    ("fixture", "path", "expected"),
    [
        ("telegram_ok.json", "result", 48_213),
        ("items_ok.json", "items[0].count", 9_001),
        ("graphql_ok.json", '$.data["user"].followers.totalCount', 21_455),
    ],
)
async def test_documented_shapes(fake, make, fixture: str, path: str, expected: int) -> None:
    fake.serve(200, fake.load(fixture))

    result = await make(count_path=path, following_path=None, posts_path=None).fetch(
        [acct("someone")]
    )

    assert [o.followers for o in result.observations] == [expected]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (123, 123),
        ("456", 456),
        ("4.5", None),
        ("-3", None),
        (-1, None),
        (True, None),
        (1.0, None),
        (None, None),
        ("", None),
        ({"n": 1}, None),
    ],
)
async def test_count_must_be_a_non_negative_integer(fake, make, value: Any, expected: Any) -> None:
    fake.add("alice", "u-1", value)

    result = await make().fetch([acct("alice")])

    if expected is None:
        assert result.observations == ()
        assert [f.kind for f in result.failures] == [FailureKind.MALFORMED]
    else:
        assert [o.followers for o in result.observations] == [expected]


async def test_missing_count_path_is_malformed(fake, make) -> None:
    fake.add("alice", "u-1", 10)

    result = await make(count_path="data.stats.subscribers").fetch([acct("alice")])

    (failure,) = result.failures
    assert failure.kind == FailureKind.MALFORMED and "nothing" in failure.detail


@pytest.mark.parametrize(
    ("following", "kind"), [("x", FailureKind.MALFORMED), (-2, FailureKind.MALFORMED)]
)
async def test_bad_optional_count_fails_the_account(fake, make, following: Any, kind) -> None:
    fake.add("alice", "u-1", 10, following=following)

    result = await make().fetch([acct("alice")])

    assert [f.kind for f in result.failures] == [kind]


async def test_absent_optional_values_are_none(fake, make) -> None:
    fake.serve(200, {"data": {"stats": {"followers": 3}}})

    (obs,) = (await make().fetch([acct("alice")])).observations

    assert (obs.following, obs.posts, obs.platform_id, obs.handle) == (None, None, None, None)


async def test_not_found_fails_that_account_alone(fake, make) -> None:
    fake.add("alice", "u-1", 10)

    result = await make().fetch([acct("ghost"), acct("alice")])

    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("ghost", FailureKind.NOT_FOUND)
    ]
    assert [o.followers for o in result.observations] == [10]


async def test_custom_pattern_is_checked_before_sending(fake, make) -> None:
    fake.add("alice", "u-1", 10)

    result = await make(handle_pattern=r"^[a-z]+$").fetch([acct("Alice_1"), acct("alice")])

    assert [s.path for s in fake.seen] == ["/v1/users/alice/stats"]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("Alice_1", FailureKind.NOT_FOUND)
    ]


async def test_renamed_account_is_followed_through_id_url(fake, make) -> None:
    fake.add("new_name", "u-1", 500)

    result = await make(id_url=fake.url("/v1/ids/{id}/stats")).fetch([acct("old_name", "u-1")])

    assert [s.path for s in fake.seen] == ["/v1/ids/u-1/stats"]
    (obs,) = result.observations
    assert (obs.account.handle, obs.handle, obs.platform_id, obs.followers) == (
        "old_name",
        "new_name",
        "u-1",
        500,
    )


async def test_handle_now_naming_someone_else_is_not_their_count(fake, make) -> None:
    fake.add("old_name", "u-99", 12_345)

    result = await make().fetch([acct("old_name", "u-1")])

    assert result.observations == ()
    assert [f.kind for f in result.failures] == [FailureKind.NOT_FOUND]


async def test_no_accounts_no_request(fake, make) -> None:
    assert await make().fetch([]) == FetchResult()
    assert fake.seen == []


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_auth_error(fake, make, status: int) -> None:
    fake.serve(status, fake.load("unauthorized.json"))

    with pytest.raises(AuthError, match=str(status)) as info:
        await make(headers={"X-Api-Key": "secret-key-value"}).fetch([acct("alice")])

    assert "secret-key-value" not in str(info.value)


async def test_fake_refuses_a_wrong_key(fake, make) -> None:
    with pytest.raises(AuthError):
        await make(headers={"X-Api-Key": "nope"}).fetch([acct("alice")])


async def test_429_waits_for_retry_after(fake, make, clock) -> None:
    fake.add("alice", "u-1", 10)
    fake.remaining, fake.reset = 0, EPOCH + 20

    result = await make(rate_limit_prefix=None).fetch([acct("alice")])

    assert clock.sleeps == [21.0]
    assert [s.time for s in fake.seen] == [START, START + timedelta(seconds=21)]
    assert [o.followers for o in result.observations] == [10]


async def test_429_beyond_max_wait_raises(fake, make, clock) -> None:
    fake.remaining, fake.reset = 0, EPOCH + 900

    with pytest.raises(RateLimitedError) as info:
        await make(max_wait=60).fetch([acct("alice")])

    assert info.value.retry_at == START + timedelta(seconds=900)
    assert (len(fake.seen), clock.sleeps) == (1, [])


async def test_429_without_any_reset_backs_off_then_retries(fake, make, clock) -> None:
    fake.add("alice", "u-1", 10)
    fake.serve(429, "slow down")

    result = await make().fetch([acct("alice")])

    assert clock.sleeps == [2.0]  # a 1 s back-off, plus the 1 s safety margin
    assert [o.followers for o in result.observations] == [10]


async def test_remaining_zero_makes_the_next_fetch_wait(fake, make, clock) -> None:
    fake.add("alice", "u-1", 10)
    fake.remaining, fake.reset = 1, EPOCH + 30
    source = make()

    first = await source.fetch([acct("alice")])
    assert first.rate_limit is not None and first.rate_limit.remaining == 0
    await source.fetch([acct("alice")])

    assert clock.sleeps == [31.0]
    assert [s.time for s in fake.seen] == [START, START + timedelta(seconds=31)]


@pytest.mark.parametrize(
    ("fmt", "reset", "expected"),
    [
        ("epoch", str(EPOCH + 90), 90),
        ("seconds", "90", 90),
        ("iso", "2026-01-01T00:01:30Z", 90),
    ],
)
async def test_reset_formats(fake, make, fmt: str, reset: str, expected: int) -> None:
    headers = {"RateLimit-Limit": "10", "RateLimit-Remaining": "4", "RateLimit-Reset": reset}
    fake.serve(200, {"data": {"stats": {"followers": 1}}}, headers)

    result = await make(rate_limit_prefix="ratelimit-", rate_limit_reset=fmt).fetch([acct("a")])

    assert result.rate_limit is not None
    assert result.rate_limit.reset_at == START + timedelta(seconds=expected)
    assert result.rate_limit.remaining == 4


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, "<html>maintenance</html>"),
        (200, '{"data": '),
        (500, "{}"),
        (503, "x"),
        (400, "{}"),
        (302, ""),
    ],
)
async def test_transient_answers(fake, make, status: int, body: str) -> None:
    fake.serve(status, body)

    with pytest.raises(TransientError, match=str(status)):
        await make().fetch([acct("alice")])


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("data.stats.followers", ("data", "stats", "followers")),
        ("items[0].count", ("items", 0, "count")),
        ("[2][0]", (2, 0)),
        ("$", ()),
        ("$.a", ("a",)),
        ("a[\"b.c\"]['d']", ("a", "b.c", "d")),
        ("result", ("result",)),
    ],
)
def test_parse_path(text: str, steps: tuple[Any, ...]) -> None:
    assert parse_path(text) == steps


@pytest.mark.parametrize("text", ["a..b", "a.", "a[x]", "a[0]b", "a[-1]", "a[", "a]", "a['b]"])
def test_parse_path_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_path(text)


def test_config_validation() -> None:
    ok = HttpJsonConfig(url="https://x.example/{handle}", count_path="a.b")
    assert ok.method == "GET" and ok.handle_pattern is None
    assert HttpJsonConfig(url="https://x.example/q", body='{"h": "{handle}"}', count_path="n")
    for bad in (
        {"url": "https://x.example/static", "count_path": "n"},
        {"url": "ftp://x.example/{handle}", "count_path": "n"},
        {"url": "https://x.example/{handle}", "count_path": "a..b"},
        {"url": "https://x.example/{handle}", "count_path": "n", "handle_pattern": "("},
        {"url": "https://x.example/{handle}", "count_path": "n", "id_url": "https://x.example/"},
        {"url": "https://x.example/{handle}", "count_path": "n", "headers": {"A": "b\nc"}},
        {"url": "https://x.example/{handle}", "count_path": "n", "method": "DELETE"},
    ):
        with pytest.raises(ValidationError):
            HttpJsonConfig(**bad)


def test_secret_header_values_are_redacted_secrets() -> None:
    cfg = HttpJsonConfig(
        url="https://x.example/{handle}",
        count_path="n",
        headers={"Accept": "application/json"},
        secret_headers={"X-Api-Key": "k-123"},
        bearer_token="tok-456",
    )
    assert sorted(cfg.secrets()) == ["k-123", "tok-456"]


async def test_build_from_config(fake, client: httpx.AsyncClient, clock, tmp_path: Path) -> None:
    fake.add("alice", "u-1", 10)
    cfg = HttpJsonConfig(
        url=fake.url("/v1/users/{handle}/stats"),
        count_path="data.stats.followers",
        secret_headers={"X-Api-Key": API_KEY},
        bearer_token="tok-456",
    )

    source = build(cfg, SourceContext(client, clock, tmp_path))
    result = await source.fetch([acct("alice")])

    assert [o.followers for o in result.observations] == [10]
    assert fake.seen[0].headers["Authorization"] == "Bearer tok-456"
    with pytest.raises(ConfigError, match="url and count_path"):
        build(HttpJsonConfig(), SourceContext(client, clock, tmp_path))


async def test_one_failing_request_costs_only_its_account(fake, make) -> None:
    fake.add("alice", "u-1", 10)
    fake.serve(503, "busy")

    result = await make().fetch([acct("bob"), acct("alice")])

    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("bob", FailureKind.NOT_RETURNED)
    ]
    assert [o.followers for o in result.observations] == [10]
