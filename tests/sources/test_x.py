"""XSource against the local fake X API (conftest.py): batching, partial batches, limits, errors."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from followerwatch.clock import ManualClock
from followerwatch.errors import AuthError, NotFoundError, RateLimitedError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation
from followerwatch.sources.x import XSource

START = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = int(START.timestamp())


def acct(handle: str, platform_id: str | None = None) -> Account:
    return Account(platform="x", handle=handle, name=handle.lower(), platform_id=platform_id)


def by_handle(result: FetchResult) -> dict[str, Observation | Failure]:
    return {o.account.handle: o for o in (*result.observations, *result.failures)}


def user(uid: str, username: str, followers: Any, **metrics: Any) -> dict[str, Any]:
    return {
        "id": uid,
        "name": username.title(),
        "username": username,
        "public_metrics": {"followers_count": followers, "following_count": 1, **metrics},
    }


async def test_batch_of_100_is_one_request_with_every_count(fake_x, make_x) -> None:
    users = [fake_x.make_user(i) for i in range(100)]
    fake_x.add(*users)

    result = await make_x().fetch([acct(u["username"]) for u in users])

    assert result.requests == 1
    assert len(fake_x.seen) == 1
    sent = fake_x.seen[0]
    assert len(sent.args["usernames"].split(",")) == 100
    assert "public_metrics" in sent.args["user.fields"].split(",")
    assert sent.authorization == f"Bearer {fake_x.token}"
    assert result.failures == ()
    assert len(result.observations) == 100
    for obs, u in zip(result.observations, users, strict=True):
        assert obs.account.handle == u["username"]
        assert obs.followers == u["public_metrics"]["followers_count"]
        assert obs.following == u["public_metrics"]["following_count"]
        assert obs.posts == u["public_metrics"]["tweet_count"]
        assert obs.platform_id == u["id"]
        assert obs.handle == u["username"]
        assert obs.time == START
    assert result.rate_limit is not None
    assert result.rate_limit.limit == 300
    assert result.rate_limit.remaining == 299
    assert result.rate_limit.reset_at == START + timedelta(seconds=900)


async def test_150_accounts_are_split_into_two_requests(fake_x, make_x) -> None:
    users = [fake_x.make_user(i) for i in range(150)]
    fake_x.add(*users)

    result = await make_x().fetch([acct(u["username"]) for u in users])

    assert result.requests == 2
    assert [len(s.args["usernames"].split(",")) for s in fake_x.seen] == [100, 50]
    assert [o.followers for o in result.observations] == [1_000 + 7 * i for i in range(150)]
    assert result.rate_limit is not None and result.rate_limit.remaining == 298


async def test_documented_partial_batch_fixture(fake_x, make_x) -> None:
    fake_x.serve(200, fake_x.load("users_by_partial.json"))
    handles = ["XDevelopers", "X", "gone_for_good", "spam_bot_9000"]

    result = await make_x().fetch([acct(h) for h in handles])

    got = by_handle(result)
    assert isinstance(got["XDevelopers"], Observation) and got["XDevelopers"].followers == 570842
    assert isinstance(got["X"], Observation) and got["X"].followers == 67934512
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("gone_for_good", FailureKind.NOT_FOUND),
        ("spam_bot_9000", FailureKind.SUSPENDED),
    ]
    assert "suspended" in result.failures[1].detail


async def test_partial_batch_from_the_model(fake_x, make_x) -> None:
    fake_x.add(*(fake_x.make_user(i) for i in range(5)))
    fake_x.suspended.add("user_001")
    fake_x.protected.add("user_002")
    # A not-found name that contains "suspended" must still read as not found.
    handles = ["user_000", "user_001", "user_002", "suspended_fan", "user_004"]

    result = await make_x().fetch([acct(h) for h in handles])

    assert [o.account.handle for o in result.observations] == ["user_000", "user_004"]
    assert {f.account.handle: f.kind for f in result.failures} == {
        "user_001": FailureKind.SUSPENDED,
        "user_002": FailureKind.FORBIDDEN,
        "suspended_fan": FailureKind.NOT_FOUND,
    }


async def test_account_absent_from_data_and_errors_is_not_returned(fake_x, make_x) -> None:
    fake_x.serve(200, fake_x.load("users_by_ok.json"))

    result = await make_x().fetch([acct("XDevelopers"), acct("X"), acct("quiet_one")])

    assert len(result.observations) == 2
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("quiet_one", FailureKind.NOT_RETURNED)
    ]


async def test_body_with_only_errors_is_a_normal_answer(fake_x, make_x) -> None:
    fake_x.serve(200, fake_x.load("users_by_none_found.json"))

    result = await make_x().fetch([acct("gone_for_good")])

    assert result.observations == ()
    assert [f.kind for f in result.failures] == [FailureKind.NOT_FOUND]


@pytest.mark.parametrize(
    ("fixture", "posts", "followers"),
    [("users_by_ok.json", 14052, 570842), ("users_by_post_count.json", 14060, 570901)],
)
async def test_posts_from_tweet_count_or_post_count(
    fake_x, make_x, fixture: str, posts: int, followers: int
) -> None:
    fake_x.serve(200, fake_x.load(fixture))

    result = await make_x().fetch([acct("XDevelopers")])

    (obs,) = [o for o in result.observations if o.account.handle == "XDevelopers"]
    assert (obs.followers, obs.posts, obs.platform_id) == (followers, posts, "2244994945")


async def test_username_matching_ignores_case(fake_x, make_x) -> None:
    fake_x.serve(200, fake_x.load("users_by_ok.json"))

    result = await make_x().fetch([acct("xdevelopers"), acct("x")])

    got = by_handle(result)
    assert isinstance(got["xdevelopers"], Observation)
    assert got["xdevelopers"].followers == 570842
    assert got["xdevelopers"].handle == "XDevelopers"
    assert isinstance(got["x"], Observation) and got["x"].followers == 67934512


async def test_renamed_user_is_found_again_by_stored_id(fake_x, make_x) -> None:
    fake_x.add(user("42", "new_name", 500, tweet_count=7))

    result = await make_x().fetch([acct("old_name", platform_id="42")])

    assert result.requests == 2
    assert [s.path for s in fake_x.seen] == ["/2/users/by", "/2/users"]
    assert fake_x.seen[1].args["ids"] == "42"
    (obs,) = result.observations
    assert (obs.followers, obs.platform_id, obs.handle) == (500, "42", "new_name")


async def test_old_handle_taken_by_someone_else_is_not_their_count(fake_x, make_x) -> None:
    fake_x.add(user("42", "new_name", 500), user("77", "old_name", 99_999))

    result = await make_x().fetch([acct("old_name", platform_id="42")])

    (obs,) = result.observations
    assert (obs.followers, obs.platform_id, obs.handle) == (500, "42", "new_name")


async def test_user_returned_under_another_name_is_not_misassigned(fake_x, make_x) -> None:
    body = {"data": [user("42", "new_name", 500)]}
    fake_x.serve(200, body)
    fake_x.serve(200, body)

    unknown = await make_x().fetch([acct("old_name")])
    known = await make_x().fetch([acct("old_name", platform_id="42")])

    assert unknown.observations == ()
    assert [f.kind for f in unknown.failures] == [FailureKind.NOT_RETURNED]
    (obs,) = known.observations
    assert (obs.followers, obs.handle, known.requests) == (500, "new_name", 1)


async def test_renamed_user_without_stored_id_is_not_found(fake_x, make_x) -> None:
    result = await make_x().fetch([acct("old_name")])

    assert result.requests == 1
    assert [f.kind for f in result.failures] == [FailureKind.NOT_FOUND]


async def test_failed_id_lookup_keeps_the_username_answer(fake_x, make_x) -> None:
    fake_x.serve(200, fake_x.load("users_by_none_found.json"))
    fake_x.serve(503, "upstream unavailable")

    result = await make_x().fetch([acct("gone_for_good", platform_id="42")])

    (failure,) = result.failures
    assert failure.kind == FailureKind.NOT_FOUND
    assert "lookup by id failed" in failure.detail
    assert result.requests == 2


async def test_invalid_handle_is_never_sent(fake_x, make_x) -> None:
    fake_x.add(fake_x.make_user(1))

    result = await make_x().fetch([acct("user_001"), acct("not-valid!"), acct("USER_001")])

    assert fake_x.seen[0].args["usernames"] == "user_001"
    assert len(result.observations) == 2
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("not-valid!", FailureKind.NOT_FOUND)
    ]


async def test_no_accounts_no_request(fake_x, make_x) -> None:
    assert await make_x().fetch([]) == FetchResult()
    assert fake_x.seen == []


async def test_401_is_auth_error_without_the_token(fake_x, make_x) -> None:
    with pytest.raises(AuthError) as info:
        await make_x(bearer_token="wrong-secret-token").fetch([acct("user_001")])

    assert "wrong-secret-token" not in str(info.value)
    assert fake_x.seen[0].authorization == "Bearer wrong-secret-token"


async def test_usage_cap_is_rate_limited_without_retry(fake_x, make_x) -> None:
    fake_x.serve(403, fake_x.load("usage_capped.json"))

    with pytest.raises(RateLimitedError, match="usage cap"):
        await make_x().fetch([acct("user_001")])

    assert len(fake_x.seen) == 1


async def test_other_403_is_auth_error(fake_x, make_x) -> None:
    fake_x.serve(
        403,
        {
            "title": "Client Forbidden",
            "detail": "app not attached to a project",
            "type": "https://api.twitter.com/2/problems/client-forbidden",
        },
    )

    with pytest.raises(AuthError, match="not attached"):
        await make_x().fetch([acct("user_001")])


@pytest.mark.parametrize("body", ["rate_limited_code88.json", "rate_limited_problem.json"])
async def test_429_waits_for_reset_then_retries(
    fake_x, make_x, clock: ManualClock, body: str
) -> None:
    fake_x.add(fake_x.make_user(1))
    fake_x.limited_body = body
    fake_x.remaining, fake_x.reset = 0, EPOCH + 60

    result = await make_x().fetch([acct("user_001")])

    assert clock.sleeps == [61.0]  # reset - now, plus the 1 s safety margin
    assert [s.time for s in fake_x.seen] == [START, START + timedelta(seconds=61)]
    assert result.requests == 2
    assert [o.followers for o in result.observations] == [1_007]
    assert result.observations[0].time == START + timedelta(seconds=61)


async def test_429_with_reset_beyond_max_wait_raises(fake_x, make_x, clock) -> None:
    fake_x.remaining, fake_x.reset = 0, EPOCH + 600

    with pytest.raises(RateLimitedError) as info:
        await make_x(max_wait=300).fetch([acct("user_001")])

    assert info.value.retry_at == START + timedelta(seconds=600)
    assert clock.sleeps == []
    assert len(fake_x.seen) == 1


async def test_429_without_reset_backs_off_then_retries(fake_x, make_x, clock) -> None:
    fake_x.add(fake_x.make_user(1))
    fake_x.serve(429, fake_x.load("rate_limited_problem.json"))

    result = await make_x().fetch([acct("user_001")])

    assert clock.sleeps == [2.0]  # a 1 s back-off, plus the 1 s safety margin
    assert [s.time for s in fake_x.seen] == [START, START + timedelta(seconds=2)]
    assert [o.followers for o in result.observations] == [1_007]


async def test_remaining_zero_makes_the_next_fetch_wait_before_sending(
    fake_x, make_x, clock
) -> None:
    fake_x.add(fake_x.make_user(1))
    fake_x.remaining, fake_x.reset = 1, EPOCH + 120
    source = make_x()

    first = await source.fetch([acct("user_001")])
    assert first.rate_limit is not None and first.rate_limit.remaining == 0
    second = await source.fetch([acct("user_001")])

    assert clock.sleeps == [121.0]
    # The server saw nothing between the two polls: the second request came after the sleep.
    assert [s.time for s in fake_x.seen] == [START, START + timedelta(seconds=121)]
    assert second.requests == 1 and len(second.observations) == 1


async def test_remaining_zero_beyond_max_wait_raises_without_sending(fake_x, make_x, clock) -> None:
    fake_x.add(fake_x.make_user(1))
    fake_x.remaining, fake_x.reset = 1, EPOCH + 800
    source = make_x(max_wait=60)
    await source.fetch([acct("user_001")])

    with pytest.raises(RateLimitedError) as info:
        await source.fetch([acct("user_001")])

    assert info.value.retry_at == START + timedelta(seconds=800)
    assert (len(fake_x.seen), clock.sleeps) == (1, [])


@pytest.mark.parametrize(
    "body",
    [
        "<html>502 Bad Gateway</html>",
        [{"id": "1"}],
        {},
        {"data": {"id": "1", "username": "user_001"}},
        {"data": "nope"},
        {"data": [], "errors": "nope"},
    ],
    ids=["not-json", "top-level-list", "empty-object", "data-object", "data-string", "errors-str"],
)
async def test_malformed_body_is_transient(fake_x, make_x, body: Any) -> None:
    fake_x.serve(200, body)

    with pytest.raises(TransientError):
        await make_x().fetch([acct("user_001")])


@pytest.mark.parametrize(
    "bad",
    [
        {"followers_count": "abc"},
        {"followers_count": -5},
        {"followers_count": True},
        {"followers_count": 1.5},
        {"followers_count": None},
        {"followers_count": 10, "following_count": "x"},
        {"followers_count": 10, "post_count": -1},
    ],
)
async def test_one_malformed_user_fails_alone(fake_x, make_x, bad: dict[str, Any]) -> None:
    broken = user("2", "broken", 0)
    broken["public_metrics"] = {"following_count": 3, **bad}
    fake_x.serve(200, {"data": [user("1", "fine_a", 10), broken, user("3", "fine_b", 30)]})

    result = await make_x().fetch([acct("fine_a"), acct("broken"), acct("fine_b")])

    assert [(o.account.handle, o.followers) for o in result.observations] == [
        ("fine_a", 10),
        ("fine_b", 30),
    ]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("broken", FailureKind.MALFORMED)
    ]


async def test_user_without_metrics_or_id_is_malformed(fake_x, make_x) -> None:
    no_metrics = {"id": "1", "name": "A", "username": "no_metrics"}
    no_id = {"name": "B", "username": "no_id", "public_metrics": {"followers_count": 5}}
    fake_x.serve(200, {"data": [no_metrics, no_id, "garbage"]})

    result = await make_x().fetch([acct("no_metrics"), acct("no_id")])

    assert result.observations == ()
    assert {f.kind for f in result.failures} == {FailureKind.MALFORMED}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_transient(fake_x, make_x, status: int) -> None:
    fake_x.serve(status, "Service Unavailable")

    with pytest.raises(TransientError, match=str(status)):
        await make_x().fetch([acct("user_001")])


async def test_unexpected_4xx_is_transient_and_404_not_found(fake_x, make_x) -> None:
    fake_x.serve(400, fake_x.load("invalid_request.json"))
    fake_x.serve(404, {"title": "Not Found Error"})

    with pytest.raises(TransientError, match="400"):
        await make_x().fetch([acct("user_001")])
    with pytest.raises(NotFoundError):
        await make_x().fetch([acct("user_001")])


async def test_fake_rejects_what_x_rejects(fake_x, client: httpx.AsyncClient) -> None:
    url = fake_x.base_url + "/2/users/by"
    auth = {"Authorization": f"Bearer {fake_x.token}"}
    too_many = ",".join(f"u{i}" for i in range(101))

    assert (await client.get(url, params={"usernames": too_many}, headers=auth)).status_code == 400
    assert (await client.get(url, params={"usernames": "a!"}, headers=auth)).status_code == 400
    assert (await client.get(url, params={"usernames": "a"})).status_code == 401


async def test_network_errors_and_timeouts_are_transient(clock: ManualClock) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(boom)) as timing_out:
        source = XSource(timing_out, bearer_token="t", clock=clock)
        with pytest.raises(TransientError, match="ReadTimeout"):
            await source.fetch([acct("user_001")])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(trust_env=False) as refused:
        # The port was free a moment ago and nothing listens on it now.
        source = XSource(
            refused, bearer_token="t", clock=clock, base_url=f"http://127.0.0.1:{port}"
        )
        with pytest.raises(TransientError):
            await source.fetch([acct("user_001")])
