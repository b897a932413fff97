"""GitHubSource against the local fake GitHub: GraphQL batches, anonymous REST, renames, limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_github import START, TOKEN, FakeGitHub
from followerwatch.clock import ManualClock
from followerwatch.errors import AuthError, RateLimitedError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation
from followerwatch.sources.base import SourceContext
from followerwatch.sources.github import (
    SPEC,
    GitHubConfig,
    GitHubSource,
    build,
    graphql_endpoint,
)

EPOCH = int(START.timestamp())


@pytest.fixture
def fake_gh(httpserver: HTTPServer, clock: ManualClock) -> FakeGitHub:
    """The fake GitHub API, empty, with full rate-limit windows."""
    return FakeGitHub(httpserver, clock)


@pytest.fixture
def make_gh(
    fake_gh: FakeGitHub, client: httpx.AsyncClient, clock: ManualClock
) -> Callable[..., GitHubSource]:
    """Build a GitHubSource (with the token unless told otherwise) pointed at the fake."""

    def make(**overrides: Any) -> GitHubSource:
        kwargs: dict[str, Any] = {"clock": clock, "token": TOKEN, "base_url": fake_gh.base_url}
        kwargs.update(overrides)
        return GitHubSource(client, **kwargs)

    return make


def acct(handle: str, platform_id: str | None = None) -> Account:
    return Account(platform="github", handle=handle, name=handle.lower(), platform_id=platform_id)


def by_handle(result: FetchResult) -> dict[str, Observation | Failure]:
    return {o.account.handle: o for o in (*result.observations, *result.failures)}


def paths(fake: FakeGitHub) -> list[str]:
    return [s.path for s in fake.seen]


async def test_batch_of_50_users_and_repos_is_one_graphql_request(fake_gh, make_gh) -> None:
    users = [fake_gh.make_user(i) for i in range(25)]
    repos = [fake_gh.make_repo(i) for i in range(25)]
    fake_gh.add(*users, *repos)

    result = await make_gh().fetch(
        [acct(u["login"]) for u in users] + [acct(r["full_name"]) for r in repos]
    )

    assert result.requests == 1 and paths(fake_gh) == ["/graphql"]
    assert fake_gh.seen[0].method == "POST"
    assert fake_gh.seen[0].authorization == f"Bearer {TOKEN}"
    assert fake_gh.graphql_queries()[0].count(": user(login:") == 25
    assert result.failures == ()
    got = by_handle(result)
    for u in users:
        obs = got[u["login"]]
        assert isinstance(obs, Observation)
        assert (obs.followers, obs.following, obs.posts) == (
            u["followers"],
            u["following"],
            u["public_repos"],
        )
        assert (obs.platform_id, obs.handle, obs.time) == (str(u["id"]), u["login"], START)
    for r in repos:
        obs = got[r["full_name"]]
        assert isinstance(obs, Observation)
        assert (obs.followers, obs.following, obs.posts) == (r["stargazers_count"], None, None)
        assert (obs.platform_id, obs.handle) == (str(r["id"]), r["full_name"])
    assert result.rate_limit is not None
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (5_000, 4_999)
    assert result.rate_limit.reset_at == START + timedelta(seconds=3600)


async def test_120_accounts_are_three_graphql_requests(fake_gh, make_gh) -> None:
    users = [fake_gh.make_user(i) for i in range(120)]
    fake_gh.add(*users)

    result = await make_gh().fetch([acct(u["login"]) for u in users])

    assert result.requests == 3
    assert [q.count(": user(") for q in fake_gh.graphql_queries()] == [50, 50, 20]
    assert [o.followers for o in result.observations] == [u["followers"] for u in users]


async def test_documented_graphql_fixtures(fake_gh, make_gh) -> None:
    fake_gh.serve(200, fake_gh.load("graphql_ok.json"))

    result = await make_gh().fetch([acct("octocat"), acct("octocat/Hello-World")])

    got = by_handle(result)
    user, repo = got["octocat"], got["octocat/Hello-World"]
    assert isinstance(user, Observation) and isinstance(repo, Observation)
    assert (user.followers, user.following, user.posts, user.platform_id) == (21345, 9, 8, "583231")
    assert (repo.followers, repo.platform_id, repo.handle) == (
        3047,
        "1296269",
        "octocat/Hello-World",
    )


async def test_graphql_partial_batch_is_not_found_after_rest_agrees(fake_gh, make_gh) -> None:
    fake_gh.serve(200, fake_gh.load("graphql_partial.json"))
    handles = ["octocat", "no-such-user-4711", "octocat/no-such-repo"]

    result = await make_gh().fetch([acct(h) for h in handles])

    assert [o.account.handle for o in result.observations] == ["octocat"]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("no-such-user-4711", FailureKind.NOT_FOUND),
        ("octocat/no-such-repo", FailureKind.NOT_FOUND),
    ]
    # REST is asked once about each: organisations and renamed repositories resolve there.
    assert paths(fake_gh) == ["/graphql", "/users/no-such-user-4711", "/repos/octocat/no-such-repo"]
    assert result.requests == 3


async def test_alias_absent_from_data_and_errors_is_not_returned(fake_gh, make_gh) -> None:
    fake_gh.serve(200, {"data": {"a0": fake_gh.load("graphql_ok.json")["data"]["a0"]}})

    result = await make_gh().fetch([acct("octocat"), acct("quiet-one")])

    assert [o.account.handle for o in result.observations] == ["octocat"]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("quiet-one", FailureKind.NOT_RETURNED)
    ]
    assert result.requests == 1


async def test_forbidden_alias_is_forbidden(fake_gh, make_gh) -> None:
    error = {"type": "FORBIDDEN", "path": ["a0"], "message": "Resource protected by SAML"}
    fake_gh.serve(200, {"data": {"a0": None}, "errors": [error]})

    result = await make_gh().fetch([acct("corp/secret")])

    assert [(f.kind, f.detail) for f in result.failures] == [
        (FailureKind.FORBIDDEN, "Resource protected by SAML")
    ]


async def test_renamed_user_is_found_again_by_stored_id(fake_gh, make_gh) -> None:
    fake_gh.add(fake_gh.make_user(42, login="new-name"))

    result = await make_gh().fetch([acct("old-name", platform_id="1042")])

    assert paths(fake_gh) == ["/graphql", "/user/1042"]
    (obs,) = result.observations
    assert (obs.account.handle, obs.handle, obs.platform_id) == ("old-name", "new-name", "1042")


async def test_old_login_taken_by_someone_else_is_not_their_count(fake_gh, make_gh) -> None:
    fake_gh.add(fake_gh.make_user(42, login="new-name"), fake_gh.make_user(77, login="old-name"))

    result = await make_gh().fetch([acct("old-name", platform_id="1042")])

    (obs,) = result.observations
    assert (obs.handle, obs.platform_id, obs.followers) == ("new-name", "1042", 100 + 7 * 42)


@pytest.mark.parametrize("graphql_follows", [False, True])
async def test_renamed_repository(fake_gh, make_gh, graphql_follows: bool) -> None:
    fake_gh.graphql_follows_renames = graphql_follows
    fake_gh.add(fake_gh.make_repo(7, full_name="octo/new-repo"))
    fake_gh.moved["octo/old-repo"] = 500_007

    result = await make_gh().fetch([acct("octo/old-repo")])

    (obs,) = result.observations
    assert (obs.handle, obs.platform_id, obs.followers) == ("octo/new-repo", "500007", 70)
    if not graphql_follows:
        # REST answers 301 with the durable /repositories/{id}; nothing else is followed.
        assert paths(fake_gh) == ["/graphql", "/repos/octo/old-repo", "/repositories/500007"]


async def test_organisation_resolves_over_rest(fake_gh, make_gh) -> None:
    fake_gh.add(fake_gh.load("org_github.json"))

    first = await make_gh().fetch([acct("github")])
    (obs,) = first.observations
    again = await make_gh().fetch([acct("github", platform_id=obs.platform_id)])

    assert (obs.followers, obs.following, obs.posts, obs.platform_id) == (55120, 0, 515, "9919")
    assert paths(fake_gh) == ["/graphql", "/users/github", "/graphql", "/user/9919"]
    assert again.observations[0].followers == 55120


async def test_failed_rest_second_opinion_keeps_the_graphql_answer(fake_gh, make_gh) -> None:
    fake_gh.serve(200, fake_gh.load("graphql_partial.json"))
    fake_gh.serve(502, "<html>Bad Gateway</html>")

    result = await make_gh().fetch([acct("octocat"), acct("no-such-user-4711")])

    failure = by_handle(result)["no-such-user-4711"]
    assert isinstance(failure, Failure) and failure.kind == FailureKind.NOT_FOUND
    assert "REST lookup failed" in failure.detail


async def test_anonymous_rest_is_one_request_per_account(fake_gh, make_gh) -> None:
    fake_gh.add(fake_gh.load("user_octocat.json"), fake_gh.load("repo_hello_world.json"))
    fake_gh.add(fake_gh.make_user(5, login="renamed-user"))

    result = await make_gh(token=None).fetch(
        [acct("octocat"), acct("octocat/Hello-World"), acct("before-rename", platform_id="1005")]
    )

    assert paths(fake_gh) == ["/users/octocat", "/repos/octocat/Hello-World", "/user/1005"]
    assert {s.authorization for s in fake_gh.seen} == {None}
    got = by_handle(result)
    assert isinstance(got["octocat"], Observation)
    assert (got["octocat"].followers, got["octocat"].following, got["octocat"].posts) == (
        21345,
        9,
        8,
    )
    assert isinstance(got["octocat/Hello-World"], Observation)
    assert got["octocat/Hello-World"].followers == 3047
    assert isinstance(got["before-rename"], Observation)
    assert got["before-rename"].handle == "renamed-user"
    assert result.rate_limit is not None
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (60, 57)


async def test_anonymous_rest_not_found_blocked_and_stored_repo_id(fake_gh, make_gh) -> None:
    fake_gh.add(fake_gh.make_repo(3))
    fake_gh.blocked.add("dmca/taken-down")

    result = await make_gh(token=None).fetch(
        [acct("ghost-user"), acct("dmca/taken-down"), acct("owner-3/old-name", "500003")]
    )

    got = by_handle(result)
    assert (
        isinstance(got["ghost-user"], Failure) and got["ghost-user"].kind == FailureKind.NOT_FOUND
    )
    blocked = got["dmca/taken-down"]
    assert isinstance(blocked, Failure) and blocked.kind == FailureKind.FORBIDDEN
    assert "blocked" in blocked.detail
    assert isinstance(got["owner-3/old-name"], Observation)
    assert got["owner-3/old-name"].handle == "owner-3/repo-3"
    assert paths(fake_gh)[-1] == "/repositories/500003"


async def test_one_failed_rest_request_costs_only_its_account(fake_gh, make_gh) -> None:
    fake_gh.add(fake_gh.make_user(1), fake_gh.make_user(2))
    fake_gh.serve(502, "<html>Bad Gateway</html>")

    result = await make_gh(token=None).fetch([acct("user-001"), acct("user-002")])

    assert [o.account.handle for o in result.observations] == ["user-002"]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("user-001", FailureKind.NOT_RETURNED)
    ]


async def test_invalid_handles_are_never_sent(fake_gh, make_gh) -> None:
    result = await make_gh().fetch([acct("-bad"), acct("a--b"), acct("o/..")])

    assert fake_gh.seen == [] and result.requests == 0
    assert {f.kind for f in result.failures} == {FailureKind.NOT_FOUND}


async def test_no_accounts_no_request(fake_gh, make_gh) -> None:
    assert await make_gh().fetch([]) == FetchResult()
    assert fake_gh.seen == []


@pytest.mark.parametrize("token", ["ghp_wrong-secret-token", None], ids=["graphql", "rest"])
async def test_bad_credentials_is_auth_error_without_the_token(
    fake_gh, make_gh, token: str | None
) -> None:
    if token is None:
        fake_gh.serve(401, fake_gh.load("bad_credentials.json"))
    with pytest.raises(AuthError, match="Bad credentials") as info:
        await make_gh(token=token).fetch([acct("octocat")])
    assert "ghp_wrong-secret-token" not in str(info.value)


async def test_network_errors_are_transient(clock: ManualClock) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(boom)) as refused:
        for token in (TOKEN, None):
            with pytest.raises(TransientError, match="ConnectError") as info:
                await GitHubSource(refused, clock=clock, token=token).fetch([acct("octocat")])
            assert TOKEN not in str(info.value)


async def test_other_403_is_auth_error(fake_gh, make_gh) -> None:
    fake_gh.serve(403, {"message": "Resource not accessible by personal access token"})

    with pytest.raises(AuthError, match="not accessible"):
        await make_gh().fetch([acct("octocat")])


async def test_rest_limit_waits_for_the_reset_then_retries(
    fake_gh, make_gh, clock: ManualClock
) -> None:
    fake_gh.add(fake_gh.make_user(1))
    fake_gh.buckets["core-anonymous"].remaining = 0
    fake_gh.buckets["core-anonymous"].reset = EPOCH + 60

    result = await make_gh(token=None).fetch([acct("user-001")])

    assert clock.sleeps == [61.0]  # reset - now, plus the 1 s safety margin
    assert [s.time for s in fake_gh.seen] == [START, START + timedelta(seconds=61)]
    assert result.requests == 2 and result.observations[0].time == START + timedelta(seconds=61)


async def test_graphql_rate_limited_waits_for_the_reset(fake_gh, make_gh, clock) -> None:
    fake_gh.add(fake_gh.make_user(1))
    fake_gh.buckets["graphql"].remaining = 0
    fake_gh.buckets["graphql"].reset = EPOCH + 120

    result = await make_gh().fetch([acct("user-001")])

    assert clock.sleeps == [121.0]
    assert [s.time for s in fake_gh.seen] == [START, START + timedelta(seconds=121)]
    assert len(result.observations) == 1


async def test_limit_beyond_max_wait_raises_with_the_reset(fake_gh, make_gh, clock) -> None:
    fake_gh.buckets["graphql"].remaining = 0
    fake_gh.buckets["graphql"].reset = EPOCH + 1800

    with pytest.raises(RateLimitedError) as info:
        await make_gh(max_wait=300).fetch([acct("user-001")])

    assert info.value.retry_at == START + timedelta(seconds=1800)
    assert (len(fake_gh.seen), clock.sleeps) == (1, [])


@pytest.mark.parametrize("status", [403, 429])
async def test_retry_after_is_honoured(fake_gh, make_gh, clock, status: int) -> None:
    fake_gh.add(fake_gh.make_user(1))
    fake_gh.serve(status, fake_gh.load("secondary_rate_limited.json"), {"Retry-After": "30"})

    result = await make_gh().fetch([acct("user-001")])

    assert clock.sleeps == [31.0] and len(result.observations) == 1


async def test_secondary_limit_without_retry_after_backs_off_a_minute(
    fake_gh, make_gh, clock
) -> None:
    fake_gh.add(fake_gh.make_user(1))
    headers = {"x-ratelimit-remaining": "4990", "x-ratelimit-reset": str(EPOCH + 3000)}
    fake_gh.serve(403, fake_gh.load("secondary_rate_limited.json"), headers)

    result = await make_gh().fetch([acct("user-001")])

    # Budget is left, so the hour-away reset is not the wait: a minute of backoff is.
    assert clock.sleeps == [61.0] and len(result.observations) == 1


async def test_remaining_zero_makes_the_next_fetch_wait_before_sending(
    fake_gh, make_gh, clock
) -> None:
    fake_gh.add(fake_gh.make_user(1))
    fake_gh.buckets["graphql"].remaining = 1
    fake_gh.buckets["graphql"].reset = EPOCH + 200
    source = make_gh()

    first = await source.fetch([acct("user-001")])
    assert first.rate_limit is not None and first.rate_limit.remaining == 0
    second = await source.fetch([acct("user-001")])

    assert clock.sleeps == [201.0]
    assert [s.time for s in fake_gh.seen] == [START, START + timedelta(seconds=201)]
    assert second.requests == 1 and len(second.observations) == 1


@pytest.mark.parametrize(
    "body",
    [
        "<html>Unicorn!</html>",
        '{"data": {',
        [],
        {},
        {"data": "x"},
        {"data": {}, "errors": "x"},
        {"errors": [{"message": 'Parse error on "}"'}]},
    ],
    ids=["html", "truncated", "list", "empty", "data-string", "errors-string", "query-error"],
)
async def test_malformed_graphql_body_is_transient(fake_gh, make_gh, body: Any) -> None:
    fake_gh.serve(200, body)

    with pytest.raises(TransientError):
        await make_gh().fetch([acct("octocat")])


@pytest.mark.parametrize(
    "node",
    [
        {"databaseId": "1", "login": "x", "followers": {"totalCount": 1}},
        {"databaseId": 1, "login": "x", "followers": {"totalCount": "12"}},
        {"databaseId": 1, "login": "x", "followers": {"totalCount": -1}},
        {"databaseId": 1, "login": "x", "followers": {"totalCount": True}},
        {"databaseId": 1, "login": "x", "followers": None},
        {"databaseId": 1, "login": None, "followers": {"totalCount": 1}},
        {
            "databaseId": 1,
            "login": "x",
            "followers": {"totalCount": 1},
            "following": {"totalCount": 1.5},
        },
    ],
)
async def test_one_malformed_node_fails_alone(fake_gh, make_gh, node: dict[str, Any]) -> None:
    good = fake_gh.load("graphql_ok.json")["data"]["a0"]
    fake_gh.serve(200, {"data": {"a0": good, "a1": node}})

    result = await make_gh().fetch([acct("octocat"), acct("broken")])

    assert [o.account.handle for o in result.observations] == ["octocat"]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("broken", FailureKind.MALFORMED)
    ]


async def test_malformed_rest_object_is_malformed_and_non_json_transient(fake_gh, make_gh) -> None:
    fake_gh.serve(200, {"login": "x", "id": 1, "followers": "many"})
    fake_gh.serve(200, "<html>Unicorn!</html>")

    first = await make_gh(token=None).fetch([acct("x")])
    assert [f.kind for f in first.failures] == [FailureKind.MALFORMED]
    with pytest.raises(TransientError):
        await make_gh(token=None).fetch([acct("x")])


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(fake_gh, make_gh, status: int) -> None:
    fake_gh.serve(status, "Service Unavailable")

    with pytest.raises(TransientError, match=str(status)):
        await make_gh().fetch([acct("octocat")])


async def test_redirect_elsewhere_is_not_followed(fake_gh, make_gh) -> None:
    fake_gh.serve(301, {"message": "Moved"}, {"Location": "https://evil.example/steal"})

    with pytest.raises(TransientError, match="301"):
        await make_gh(token=None).fetch([acct("octo/repo")])
    assert len(fake_gh.seen) == 1


@pytest.mark.parametrize(
    ("handle", "valid"),
    [
        ("octocat", True),
        ("a", True),
        ("a-b-c", True),
        ("A1", True),
        ("x" * 39, True),
        ("octocat/Hello-World", True),
        ("o/.github", True),
        ("o/a.b_c-d", True),
        ("o/" + "r" * 100, True),
        ("x" * 40, False),
        ("-a", False),
        ("a-", False),
        ("a--b", False),
        ("a_b", False),
        ("o/", False),
        ("o/.", False),
        ("o/..", False),
        ("o/r/x", False),
        ("o/r r", False),
        ("o/" + "r" * 101, False),
        ("", False),
        ("-o/r", False),
    ],
)
def test_handle_pattern(handle: str, valid: bool) -> None:
    assert bool(SPEC.handle_pattern.fullmatch(handle)) is valid


@pytest.mark.parametrize(
    ("base", "graphql"),
    [
        ("https://api.github.com", "https://api.github.com/graphql"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com/api/graphql"),
        ("https://ghe.example.com/api/v3/", "https://ghe.example.com/api/graphql"),
    ],
)
def test_graphql_endpoint_derived_from_base(base: str, graphql: str) -> None:
    assert graphql_endpoint(base) == graphql


def test_config_token_is_optional_and_may_come_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")

    config = GitHubConfig.model_validate({"token_file": str(token_file)})

    assert config.token is not None and config.token.get_secret_value() == TOKEN
    assert GitHubConfig().required_secrets == ()
    assert GitHubConfig().token is None and GitHubConfig().base_url == "https://api.github.com"


async def test_build_uses_configured_urls(
    fake_gh, client: httpx.AsyncClient, clock: ManualClock, tmp_path: Path
) -> None:
    fake_gh.add(fake_gh.make_user(1))
    config = GitHubConfig.model_validate(
        {
            "token": TOKEN,
            "base_url": "http://127.0.0.1:9/unused",
            "graphql_url": fake_gh.base_url + "/graphql",
        }
    )

    result = await build(config, SourceContext(client, clock, tmp_path)).fetch([acct("user-001")])

    assert len(result.observations) == 1 and paths(fake_gh) == ["/graphql"]


async def test_fake_rejects_what_github_rejects(fake_gh, client: httpx.AsyncClient) -> None:
    url = fake_gh.base_url + "/graphql"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    assert (await client.post(url, json={"query": "{ viewer { login } }"})).status_code == 401
    unknown = await client.post(
        url, json={"query": 'query { a0: user(login: "x") { karma } }'}, headers=auth
    )
    assert "data" not in unknown.json() and "karma" in unknown.json()["errors"][0]["message"]
    no_total = await client.post(
        url, json={"query": 'query { a0: user(login: "x") { followers } }'}, headers=auth
    )
    assert "errors" in no_total.json() and "data" not in no_total.json()
    assert (
        await client.get(fake_gh.base_url + "/users/x", headers={"Authorization": "Bearer nope"})
    ).status_code == 401
