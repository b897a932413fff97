"""MastodonSource against local fake instances: batches by id, lookups, fallbacks, limits."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_mastodon import TOKEN, FakeMastodon
from followerwatch.clock import ManualClock
from followerwatch.errors import AuthError, RateLimitedError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation
from followerwatch.sources.base import SourceContext
from followerwatch.sources.mastodon import (
    SPEC,
    MastodonConfig,
    MastodonSource,
    build,
    group_key,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = int(START.timestamp())


def acct(handle: str, platform_id: str | None = None) -> Account:
    return Account(platform="mastodon", handle=handle, name=handle.lower(), platform_id=platform_id)


def known(fake: FakeMastodon, account: dict[str, Any]) -> Account:
    """The account as the collector passes it once its id has been learnt."""
    return acct(fake.handle(account), platform_id=account["id"])


def by_handle(result: FetchResult) -> dict[str, Observation | Failure]:
    return {o.account.handle: o for o in (*result.observations, *result.failures)}


def paths(fake: FakeMastodon) -> list[str]:
    return [s.path.removeprefix(fake.prefix) for s in fake.seen]


@pytest.fixture
def fake(httpserver: HTTPServer, clock: ManualClock) -> FakeMastodon:
    return FakeMastodon(httpserver, clock, "mastodon.social", prefix="/social")


@pytest.fixture
def make(
    fake: FakeMastodon, client: httpx.AsyncClient, clock: ManualClock
) -> Callable[..., MastodonSource]:
    def make(**overrides: Any) -> MastodonSource:
        kwargs: dict[str, Any] = {"clock": clock, "instance_urls": {fake.domain: fake.base_url}}
        kwargs.update(overrides)
        return MastodonSource(client, **kwargs)

    return make


async def test_batch_of_40_known_ids_is_one_request(fake, make) -> None:
    accounts = [fake.make_account(i) for i in range(40)]
    fake.add(*accounts)

    result = await make().fetch([known(fake, a) for a in accounts])

    assert result.requests == 1
    (sent,) = fake.seen
    assert sent.path == "/social/api/v1/accounts"
    assert sent.args["id[]"] == [a["id"] for a in accounts]
    assert sent.authorization is None
    assert result.failures == ()
    for obs, a in zip(result.observations, accounts, strict=True):
        assert (obs.followers, obs.following, obs.posts) == (
            a["followers_count"],
            a["following_count"],
            a["statuses_count"],
        )
        assert (obs.platform_id, obs.handle, obs.time) == (a["id"], fake.handle(a), START)
    assert result.rate_limit is not None
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (300, 299)
    assert result.rate_limit.reset_at == START + timedelta(seconds=300)


async def test_100_known_ids_are_three_requests(fake, make) -> None:
    accounts = [fake.make_account(i) for i in range(100)]
    fake.add(*accounts)

    result = await make().fetch([known(fake, a) for a in accounts])

    assert result.requests == 3
    assert [len(s.args["id[]"]) for s in fake.seen] == [40, 40, 20]
    assert [o.followers for o in result.observations] == [2_000 + 11 * i for i in range(100)]


async def test_unknown_ids_are_resolved_once_by_lookup_then_batched(fake, make) -> None:
    accounts = [fake.make_account(i) for i in range(3)]
    fake.add(*accounts)
    source = make()

    first = await source.fetch([acct(fake.handle(a)) for a in accounts])

    assert paths(fake) == ["/api/v1/accounts/lookup"] * 3
    assert [s.args["acct"] for s in fake.seen] == [["user0"], ["user1"], ["user2"]]
    assert [(o.platform_id, o.followers) for o in first.observations] == [
        (a["id"], a["followers_count"]) for a in accounts
    ]
    # The collector feeds the learnt ids back: from now on one batch request does it all.
    second = await source.fetch(
        [dataclasses.replace(o.account, platform_id=o.platform_id) for o in first.observations]
    )
    assert second.requests == 1 and paths(fake)[3:] == ["/api/v1/accounts"]
    assert len(second.observations) == 3


async def test_documented_batch_fixture(fake, make) -> None:
    fake.serve(200, fake.load("accounts_batch.json"))
    ids = {"Gargron": "1", "trwnh": "14715", "spammer": "109301242"}

    result = await make().fetch([acct(f"{h}@mastodon.social", i) for h, i in ids.items()])

    got = by_handle(result)
    gargron, moved, spammer = (got[f"{h}@mastodon.social"] for h in ids)
    assert isinstance(gargron, Observation)
    assert (gargron.followers, gargron.following, gargron.posts) == (346012, 754, 78961)
    # A migrated account still has its own, real followers; `moved` does not stop the reading.
    assert isinstance(moved, Observation) and (moved.followers, moved.platform_id) == (821, "14715")
    assert isinstance(spammer, Failure) and spammer.kind == FailureKind.SUSPENDED
    assert "https://mastodon.social/users/spammer" in spammer.detail
    assert result.requests == 1


@pytest.mark.parametrize("via", ["batch", "lookup"])
async def test_suspended_is_a_failure_never_a_zero(fake, make, via: str) -> None:
    account = fake.make_account(1, followers_count=5_000)
    fake.add(account)
    fake.suspended.add(account["id"])

    target = known(fake, account) if via == "batch" else acct(fake.handle(account))
    result = await make().fetch([target])

    assert result.observations == ()
    assert [f.kind for f in result.failures] == [FailureKind.SUSPENDED]


async def test_hidden_counts(fake, make) -> None:
    fake.serve(200, fake.load("account_hidden_count.json"))
    fake.serve(200, fake.make_account(2, following_count=-1, statuses_count=-1) | {"id": "22"})

    hidden = await make().fetch([acct("quiet@mastodon.social")])
    partly = await make().fetch([acct("user2@mastodon.social")])

    assert hidden.observations == ()
    assert [f.kind for f in hidden.failures] == [FailureKind.HIDDEN]
    (obs,) = partly.observations
    assert (obs.followers, obs.following, obs.posts) == (2_022, None, None)


async def test_omitted_id_is_explained_by_a_lookup(fake, make) -> None:
    present, deleted, pending = (fake.make_account(i) for i in range(3))
    fake.add(present, pending)
    fake.pending.add(pending["id"])

    result = await make().fetch([known(fake, a) for a in (present, deleted, pending)])

    assert paths(fake) == ["/api/v1/accounts", *["/api/v1/accounts/lookup"] * 2]
    assert [o.account.handle for o in result.observations] == ["user0@mastodon.social"]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("user1@mastodon.social", FailureKind.NOT_FOUND),
        ("user2@mastodon.social", FailureKind.NOT_FOUND),
    ]
    assert result.failures[0].detail == "Record not found"


async def test_omitted_and_unexplained_is_not_returned(fake, make) -> None:
    a, b = fake.make_account(1), fake.make_account(2)
    fake.serve(200, [a])
    fake.serve(503, "<html>503 Service Unavailable</html>")

    result = await make().fetch([known(fake, a), known(fake, b)])

    assert [o.account.handle for o in result.observations] == ["user1@mastodon.social"]
    (failure,) = result.failures
    assert failure.kind == FailureKind.NOT_RETURNED and "503" in failure.detail


async def test_handle_now_answering_with_another_id_is_not_our_count(fake, make) -> None:
    impostor = fake.make_account(1)
    fake.add(impostor)

    result = await make().fetch([acct("user1@mastodon.social", platform_id="42")])

    assert result.observations == ()
    (failure,) = result.failures
    assert failure.kind == FailureKind.NOT_FOUND and impostor["id"] in failure.detail


async def test_renamed_account_is_polled_by_id_and_reports_the_new_handle(fake, make) -> None:
    account = fake.make_account(7, username="new_name")
    fake.add(account)

    result = await make().fetch([acct("old_name@mastodon.social", platform_id=account["id"])])

    (obs,) = result.observations
    assert (obs.handle, obs.platform_id, obs.followers) == (
        "new_name@mastodon.social",
        account["id"],
        2_077,
    )
    assert obs.account.handle == "old_name@mastodon.social"
    assert result.requests == 1


@pytest.mark.parametrize("status", [404, 400, 405, 422])
async def test_server_without_batch_endpoint_falls_back_and_remembers(
    fake, make, status: int
) -> None:
    fake.batch = False
    accounts = [fake.make_account(i) for i in range(3)]
    fake.add(*accounts)
    if status != 404:
        fake.serve(status, {"error": "unsupported"})
    source = make()

    first = await source.fetch([known(fake, a) for a in accounts])
    second = await source.fetch([known(fake, a) for a in accounts])

    assert first.requests == 4 and second.requests == 3
    assert paths(fake) == ["/api/v1/accounts", *["/api/v1/accounts/lookup"] * 6]
    assert [o.followers for o in second.observations] == [a["followers_count"] for a in accounts]
    assert {o.platform_id for o in first.observations} == {a["id"] for a in accounts}


async def test_instances_are_separate_with_their_own_tokens(
    httpserver, clock, client, fake
) -> None:
    other = FakeMastodon(httpserver, clock, "fosstodon.org", prefix="/foss")
    other.tokens = {"foss-token"}
    other.whitelist = True
    mine = [fake.make_account(1), fake.make_account(2)]
    theirs = [other.make_account(3)]
    fake.add(*mine)
    other.add(*theirs)
    source = MastodonSource(
        client,
        clock=clock,
        access_token=TOKEN,
        tokens={"Fosstodon.org": "foss-token"},
        instance_urls={"mastodon.social": fake.base_url, "fosstodon.org": other.base_url},
    )
    accounts = [known(fake, mine[0]), known(other, theirs[0]), known(fake, mine[1])]

    result = await source.fetch(accounts)

    assert [group_key(a) for a in accounts] == [
        "mastodon.social",
        "fosstodon.org",
        "mastodon.social",
    ]
    assert result.requests == 2
    assert [s.args["id[]"] for s in fake.seen] == [[mine[0]["id"], mine[1]["id"]]]
    assert [s.authorization for s in fake.seen] == [f"Bearer {TOKEN}"]
    assert [s.authorization for s in other.seen] == ["Bearer foss-token"]
    assert [o.followers for o in result.observations] == [2_011, 2_033, 2_022]


async def test_whitelist_mode_without_token_is_auth_error(fake, make) -> None:
    fake.whitelist = True
    fake.add(fake.make_account(1))

    with pytest.raises(AuthError, match="requires an authenticated user"):
        await make().fetch([acct("user1@mastodon.social")])
    result = await make(access_token=TOKEN).fetch([acct("user1@mastodon.social")])
    assert [o.followers for o in result.observations] == [2_011]


@pytest.mark.parametrize("via", ["batch", "lookup"])
async def test_invalid_token_is_auth_error_without_the_token(fake, make, via: str) -> None:
    account = fake.make_account(1)
    fake.add(account)
    target = known(fake, account) if via == "batch" else acct(fake.handle(account))

    with pytest.raises(AuthError) as info:
        await make(access_token="wrong-secret").fetch([target])

    assert "wrong-secret" not in str(info.value)
    assert "access token is invalid" in str(info.value)


@pytest.mark.parametrize("via", ["batch", "lookup"])
async def test_429_waits_for_the_iso_reset_then_retries(
    fake, make, clock: ManualClock, via: str
) -> None:
    account = fake.make_account(1)
    fake.add(account)
    fake.remaining, fake.reset = 0, EPOCH + 60
    target = known(fake, account) if via == "batch" else acct(fake.handle(account))

    result = await make().fetch([target])

    assert clock.sleeps == [61.0]  # reset - now, plus the 1 s safety margin
    assert [s.time for s in fake.seen] == [START, START + timedelta(seconds=61)]
    assert [(o.followers, o.time) for o in result.observations] == [
        (2_011, START + timedelta(seconds=61))
    ]


async def test_429_beyond_max_wait_raises(fake, make, clock) -> None:
    fake.add(account := fake.make_account(1))
    fake.remaining, fake.reset = 0, EPOCH + 250

    with pytest.raises(RateLimitedError) as info:
        await make(max_wait=120).fetch([known(fake, account)])

    assert info.value.retry_at == START + timedelta(seconds=250)
    assert (len(fake.seen), clock.sleeps) == (1, [])


async def test_429_without_headers_backs_off_growing_then_raises(fake, make, clock) -> None:
    fake.rate_headers_on = False
    fake.add(*(fake.make_account(i) for i in range(3)))
    fake.remaining = 0

    with pytest.raises(RateLimitedError) as info:
        await make().fetch([acct(f"user{i}@mastodon.social") for i in range(3)])

    # Back-offs of 1 s then 2 s (each plus the 1 s margin); the third refusal asks for 4 s more.
    assert (len(fake.seen), clock.sleeps) == (3, [2.0, 3.0])
    assert info.value.retry_at == START + timedelta(seconds=9)


async def test_remaining_zero_makes_the_next_fetch_wait(fake, make, clock) -> None:
    fake.add(account := fake.make_account(1))
    fake.remaining, fake.reset = 1, EPOCH + 120
    source = make()

    first = await source.fetch([known(fake, account)])
    assert first.rate_limit is not None and first.rate_limit.remaining == 0
    second = await source.fetch([known(fake, account)])

    assert clock.sleeps == [121.0]
    assert [s.time for s in fake.seen] == [START, START + timedelta(seconds=121)]
    assert len(second.observations) == 1


async def test_remaining_zero_beyond_max_wait_raises_without_sending(fake, make, clock) -> None:
    fake.add(account := fake.make_account(1))
    fake.remaining, fake.reset = 1, EPOCH + 280
    source = make(max_wait=60)
    await source.fetch([known(fake, account)])

    with pytest.raises(RateLimitedError) as info:
        await source.fetch([known(fake, account)])

    assert info.value.retry_at == START + timedelta(seconds=280)
    assert (len(fake.seen), clock.sleeps) == (1, [])


async def test_one_exhausted_instance_does_not_hold_up_another(
    httpserver, clock, client, fake
) -> None:
    other = FakeMastodon(httpserver, clock, "fosstodon.org", prefix="/foss")
    fake.add(a := fake.make_account(1))
    other.add(b := other.make_account(2))
    fake.remaining, fake.reset = 1, EPOCH + 280
    source = MastodonSource(
        client,
        clock=clock,
        max_wait=60,
        instance_urls={"mastodon.social": fake.base_url, "fosstodon.org": other.base_url},
    )
    await source.fetch([known(fake, a)])

    result = await source.fetch([known(other, b)])

    assert (len(result.observations), clock.sleeps) == (1, [])


async def test_rate_limit_during_lookups_keeps_what_was_read(fake, make, clock) -> None:
    fake.add(*(fake.make_account(i) for i in range(4)))
    fake.remaining, fake.reset = 2, EPOCH + 280

    result = await make(max_wait=60).fetch([acct(f"user{i}@mastodon.social") for i in range(4)])

    assert [o.followers for o in result.observations] == [2_000, 2_011]
    assert [f.kind for f in result.failures] == [FailureKind.NOT_RETURNED] * 2
    assert "rate limit" in result.failures[0].detail
    # The third lookup was refused before sending; the fourth was not even tried.
    assert (len(fake.seen), clock.sleeps) == (2, [])


async def test_lookups_that_all_fail_raise_transient(fake, make) -> None:
    for _ in range(2):
        fake.serve(502, "<html>502 Bad Gateway</html>")

    with pytest.raises(TransientError, match="502"):
        await make().fetch([acct("a@mastodon.social"), acct("b@mastodon.social")])
    assert len(fake.seen) == 2


async def test_html_404_on_lookup_hints_at_instance_urls(fake, make) -> None:
    fake.serve(404, "<html>Not Found</html>")

    result = await make().fetch([acct("someone@mastodon.social")])

    (failure,) = result.failures
    assert failure.kind == FailureKind.NOT_FOUND and "instance_urls" in failure.detail


async def test_lookup_410_is_suspended(fake, make) -> None:
    fake.serve(410, {"error": "Gone"})

    result = await make().fetch([acct("old@mastodon.social")])

    assert [(f.kind, f.detail) for f in result.failures] == [(FailureKind.SUSPENDED, "Gone")]


@pytest.mark.parametrize(
    "body",
    ["<html>Bad Gateway</html>", '[{"id": "1", "username": "a"', {"error": "oops"}, "null"],
    ids=["html", "truncated", "object", "null"],
)
async def test_malformed_batch_body_is_transient(fake, make, body: Any) -> None:
    fake.serve(200, body)

    with pytest.raises(TransientError):
        await make().fetch([acct("a@mastodon.social", "1")])


@pytest.mark.parametrize(
    "bad",
    [
        {"followers_count": "12"},
        {"followers_count": -5},
        {"followers_count": True},
        {"followers_count": 1.5},
        {"followers_count": None},
        {"following_count": "x"},
        {"username": None},
    ],
)
async def test_one_malformed_account_fails_alone(fake, make, bad: dict[str, Any]) -> None:
    good_a, broken, good_b = (fake.make_account(i) for i in range(3))
    fake.serve(200, [good_a, broken | bad, good_b])

    result = await make().fetch([known(fake, a) for a in (good_a, broken, good_b)])

    assert [o.followers for o in result.observations] == [2_000, 2_022]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("user1@mastodon.social", FailureKind.MALFORMED)
    ]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_on_the_batch_is_transient(fake, make, status: int) -> None:
    fake.serve(status, "Service Unavailable")

    with pytest.raises(TransientError, match=str(status)):
        await make().fetch([acct("a@mastodon.social", "1")])


async def test_invalid_handles_and_duplicates(fake, make) -> None:
    fake.add(account := fake.make_account(1))

    result = await make().fetch(
        [
            known(fake, account),
            acct("no-domain"),
            known(fake, account),
            acct("@user1@mastodon.social"),
        ]
    )

    assert fake.seen[0].args["id[]"] == [account["id"]]
    assert len(result.observations) == 1
    assert {f.account.handle: f.kind for f in result.failures} == {
        "no-domain": FailureKind.NOT_FOUND,
        "@user1@mastodon.social": FailureKind.NOT_FOUND,
    }


async def test_no_accounts_no_request(fake, make) -> None:
    assert await make().fetch([]) == FetchResult()
    assert fake.seen == []


async def test_fake_rejects_what_mastodon_rejects(fake, client) -> None:
    url = fake.base_url + "/api/v1/accounts"
    fake.add(account := fake.make_account(1))
    too_many = [("id[]", str(i)) for i in range(41)]

    assert (await client.get(url, params=too_many)).status_code == 422
    assert (await client.get(url, params={"id": account["id"]})).json() == []
    missing = await client.get(url + "/lookup", params={"acct": "nobody"})
    assert (missing.status_code, missing.json()) == (404, {"error": "Record not found"})


@pytest.mark.parametrize(
    ("handle", "ok"),
    [
        ("Gargron@mastodon.social", True),
        ("a.b-c_d@sub.example.co.uk", True),
        ("user@xn--80ak6aa92e.com", True),
        ("Gargron", False),
        ("@Gargron@mastodon.social", False),
        ("user@localhost", False),
        ("user@mastodon.social:8443", False),
        ("us er@a.b", False),
        ("user@-bad.example", False),
        ("user.@mastodon.social", False),
    ],
)
def test_handle_pattern_requires_user_at_domain(handle: str, ok: bool) -> None:
    assert bool(SPEC.handle_pattern.match(handle)) is ok


def test_config_tokens_urls_and_secrets(tmp_path: Path, clock, client) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("default-token\n")
    config = MastodonConfig(
        access_token_file=str(token_file),  # type: ignore[call-arg]
        tokens={"Fosstodon.org": "foss-token"},
        instance_urls={"Example.COM": "https://social.example.com/"},
    )

    assert config.instance_urls == {"example.com": "https://social.example.com"}
    assert set(config.secrets()) == {"default-token", "foss-token"}
    assert isinstance(build(config, SourceContext(client, clock, tmp_path)), MastodonSource)
    with pytest.raises(ValueError, match="instance domain"):
        MastodonConfig(instance_urls={"https://x.example": "https://x.example"})
