"""BlueskySource against a local fake AppView: batching, DIDs, omitted accounts, limits, errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_bluesky import FakeBluesky, plc
from followerwatch.clock import ManualClock
from followerwatch.errors import AuthError, NotFoundError, RateLimitedError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation
from followerwatch.sources.base import SourceContext
from followerwatch.sources.bluesky import SPEC, BlueskyConfig, BlueskySource, build

START = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = int(START.timestamp())
PROFILES = "/xrpc/app.bsky.actor.getProfiles"
PROFILE = "/xrpc/app.bsky.actor.getProfile"


def acct(handle: str, platform_id: str | None = None) -> Account:
    return Account(platform="bluesky", handle=handle, name=handle.lower(), platform_id=platform_id)


def by_handle(result: FetchResult) -> dict[str, Observation | Failure]:
    return {o.account.handle: o for o in (*result.observations, *result.failures)}


@pytest.fixture
def fake(httpserver: HTTPServer, clock: ManualClock) -> FakeBluesky:
    return FakeBluesky(httpserver, clock)


@pytest.fixture
def make(
    fake: FakeBluesky, client: httpx.AsyncClient, clock: ManualClock
) -> Callable[..., BlueskySource]:
    def make(**overrides: Any) -> BlueskySource:
        kwargs: dict[str, Any] = {"clock": clock, "base_url": fake.base_url}
        kwargs.update(overrides)
        return BlueskySource(client, **kwargs)

    return make


async def test_batch_of_25_is_one_request_with_every_count(fake, make) -> None:
    profiles = [fake.make_profile(i) for i in range(25)]
    fake.add(*profiles)

    result = await make().fetch([acct(p["handle"]) for p in profiles])

    assert result.requests == 1
    (sent,) = fake.seen
    assert (sent.path, sent.args["actors"]) == (PROFILES, [p["handle"] for p in profiles])
    assert result.failures == ()
    for obs, p in zip(result.observations, profiles, strict=True):
        assert (obs.followers, obs.following, obs.posts) == (
            p["followersCount"],
            p["followsCount"],
            p["postsCount"],
        )
        assert (obs.platform_id, obs.handle, obs.time) == (p["did"], p["handle"], START)
    assert result.rate_limit is not None
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (3000, 2999)
    assert result.rate_limit.reset_at == START + timedelta(seconds=300)


async def test_60_accounts_are_three_requests(fake, make) -> None:
    profiles = [fake.make_profile(i) for i in range(60)]
    fake.add(*profiles)

    result = await make().fetch([acct(p["handle"]) for p in profiles])

    assert result.requests == 3
    assert [len(s.args["actors"]) for s in fake.seen] == [25, 25, 10]
    assert [o.followers for o in result.observations] == [500 + 13 * i for i in range(60)]


async def test_known_did_is_asked_for_instead_of_the_handle(fake, make) -> None:
    profile = fake.make_profile(1)
    fake.add(profile)

    result = await make().fetch(
        [acct("User1.bsky.social", platform_id=profile["did"]), acct(profile["did"])]
    )

    assert fake.seen[0].args["actors"] == [profile["did"]]
    assert [o.followers for o in result.observations] == [513, 513]
    assert result.requests == 1


async def test_documented_fixture_and_a_zero_count_is_a_reading(fake, make) -> None:
    fake.serve(200, fake.load("profiles.json"))

    result = await make().fetch([acct("bsky.app"), acct("newcomer.bsky.social")])

    got = by_handle(result)
    bsky, newcomer = got["bsky.app"], got["newcomer.bsky.social"]
    assert isinstance(bsky, Observation)
    assert (bsky.followers, bsky.following, bsky.posts) == (32848211, 7, 743)
    assert bsky.platform_id == "did:plc:z72i7hdynmk6r22z27h6tvur"
    # The pipeline decides whether a fall to 0 is suspect; the source reports what it was told.
    assert isinstance(newcomer, Observation) and newcomer.followers == 0


async def test_omitted_accounts_get_one_getprofile_each_to_say_why(fake, make) -> None:
    present, banned, paused = (fake.make_profile(i) for i in range(3))
    fake.add(present, banned, paused)
    fake.takedown.add(banned["did"])
    fake.deactivated.add(paused["did"])
    handles = [present["handle"], banned["handle"], "nobody.bsky.social", paused["handle"]]

    result = await make().fetch([acct(h) for h in handles])

    assert [s.path for s in fake.seen] == [PROFILES, PROFILE, PROFILE, PROFILE]
    assert [s.args["actor"] for s in fake.seen[1:]] == [[h] for h in handles[1:]]
    assert [o.account.handle for o in result.observations] == [present["handle"]]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        (banned["handle"], FailureKind.SUSPENDED),
        ("nobody.bsky.social", FailureKind.NOT_FOUND),
        (paused["handle"], FailureKind.DEACTIVATED),
    ]
    assert result.failures[1].detail == "InvalidRequest: Profile not found"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (503, "<html>upstream</html>", FailureKind.NOT_RETURNED),
        (400, {"error": "InternalServerError", "message": "?"}, FailureKind.NOT_RETURNED),
        (
            400,
            {"error": "InvalidRequest", "message": "Error: actor must be a did"},
            FailureKind.NOT_RETURNED,
        ),
        (200, ["not", "a", "profile"], FailureKind.MALFORMED),
    ],
)
async def test_unexplained_omission_stays_not_returned(
    fake, make, status: int, body: Any, kind: FailureKind
) -> None:
    fake.serve(200, {"profiles": []})
    fake.serve(status, body)

    result = await make().fetch([acct("quiet.bsky.social")])

    assert result.observations == ()
    assert [f.kind for f in result.failures] == [kind]
    assert result.requests == 2


async def test_omitted_then_found_by_getprofile_is_a_reading(fake, make) -> None:
    profile = fake.make_profile(4)
    fake.add(profile)
    fake.serve(200, {"profiles": []})

    result = await make().fetch([acct(profile["handle"])])

    assert [(o.followers, o.platform_id) for o in result.observations] == [(552, profile["did"])]


async def test_renamed_handle_is_followed_by_did(fake, make) -> None:
    profile = fake.make_profile(2, handle="alice.example.com")
    fake.add(profile)

    result = await make().fetch([acct("alice.bsky.social", platform_id=profile["did"])])

    (obs,) = result.observations
    assert (obs.handle, obs.platform_id, obs.followers) == (
        "alice.example.com",
        profile["did"],
        526,
    )
    assert obs.account.handle == "alice.bsky.social"
    assert fake.seen[0].args["actors"] == [profile["did"]]


async def test_invalid_handle_keeps_polling_by_did(fake, make) -> None:
    profile = fake.load("profile_invalid_handle.json")
    fake.add(profile)

    result = await make().fetch([acct("broken.example.org", platform_id=profile["did"])])

    (obs,) = result.observations
    # "handle.invalid" is no name: the stored handle stays, the DID keeps working.
    assert (obs.handle, obs.platform_id, obs.followers) == (None, profile["did"], 1520)


async def test_handle_taken_over_after_a_rename_is_not_our_count(fake, make) -> None:
    mine = fake.make_profile(1, handle="new.bsky.social")
    squatter = fake.make_profile(2, handle="old.bsky.social")
    fake.add(mine, squatter)

    result = await make().fetch([acct("old.bsky.social", platform_id=mine["did"])])

    (obs,) = result.observations
    assert (obs.platform_id, obs.followers) == (mine["did"], 513)


async def test_invalid_handles_never_sent_and_duplicates_share_a_slot(fake, make) -> None:
    fake.add(profile := fake.make_profile(1))

    result = await make().fetch(
        [
            acct("user1.bsky.social"),
            acct("not a handle"),
            acct("USER1.bsky.social"),
            acct("someone.invalid"),
            acct("@user1.bsky.social"),
        ]
    )

    assert fake.seen[0].args["actors"] == ["user1.bsky.social"]
    assert [o.platform_id for o in result.observations] == [profile["did"]] * 2
    assert {f.account.handle: f.kind for f in result.failures} == {
        "not a handle": FailureKind.NOT_FOUND,
        "someone.invalid": FailureKind.NOT_FOUND,
        "@user1.bsky.social": FailureKind.NOT_FOUND,
    }


async def test_no_accounts_no_request(fake, make) -> None:
    assert await make().fetch([]) == FetchResult()
    assert fake.seen == []


async def test_401_is_auth_error(fake, make) -> None:
    fake.require_auth = True

    with pytest.raises(AuthError, match="Authentication Required"):
        await make().fetch([acct("user1.bsky.social")])


@pytest.mark.parametrize("style", ["epoch", "delta"])
async def test_429_waits_for_the_reset_then_retries(
    fake, make, clock: ManualClock, style: str
) -> None:
    fake.add(fake.make_profile(1))
    fake.remaining, fake.reset, fake.reset_style = 0, EPOCH + 60, style

    result = await make().fetch([acct("user1.bsky.social")])

    assert clock.sleeps == [61.0]  # reset - now, plus the 1 s safety margin
    assert [s.time for s in fake.seen] == [START, START + timedelta(seconds=61)]
    assert [(o.followers, o.time) for o in result.observations] == [
        (513, START + timedelta(seconds=61))
    ]
    assert result.requests == 2


async def test_429_beyond_max_wait_raises(fake, make, clock) -> None:
    fake.remaining, fake.reset = 0, EPOCH + 600

    with pytest.raises(RateLimitedError) as info:
        await make(max_wait=120).fetch([acct("user1.bsky.social")])

    assert info.value.retry_at == START + timedelta(seconds=600)
    assert (len(fake.seen), clock.sleeps) == (1, [])


async def test_429_without_headers_backs_off_then_retries(fake, make, clock) -> None:
    fake.add(fake.make_profile(1))
    fake.serve(429, fake.load("rate_limit_exceeded.json"))

    result = await make().fetch([acct("user1.bsky.social")])

    assert clock.sleeps == [2.0]  # a 1 s back-off, plus the 1 s safety margin
    assert (len(fake.seen), len(result.observations)) == (2, 1)


async def test_remaining_zero_makes_the_next_fetch_wait(fake, make, clock) -> None:
    fake.add(fake.make_profile(1))
    fake.remaining, fake.reset = 1, EPOCH + 120
    source = make()

    first = await source.fetch([acct("user1.bsky.social")])
    assert first.rate_limit is not None and first.rate_limit.remaining == 0
    second = await source.fetch([acct("user1.bsky.social")])

    assert clock.sleeps == [121.0]
    assert [s.time for s in fake.seen] == [START, START + timedelta(seconds=121)]
    assert len(second.observations) == 1


async def test_remaining_zero_beyond_max_wait_raises_without_sending(fake, make, clock) -> None:
    fake.add(fake.make_profile(1))
    fake.remaining, fake.reset = 1, EPOCH + 280
    source = make(max_wait=60)
    await source.fetch([acct("user1.bsky.social")])

    with pytest.raises(RateLimitedError) as info:
        await source.fetch([acct("user1.bsky.social")])

    assert info.value.retry_at == START + timedelta(seconds=280)
    assert (len(fake.seen), clock.sleeps) == (1, [])


async def test_rate_limit_during_follow_ups_keeps_the_batch(fake, make, clock) -> None:
    fake.add(fake.make_profile(1))
    fake.remaining, fake.reset = 2, EPOCH + 280
    handles = ["user1.bsky.social", "gone1.bsky.social", "gone2.bsky.social", "gone3.bsky.social"]

    result = await make(max_wait=60).fetch([acct(h) for h in handles])

    assert [o.followers for o in result.observations] == [513]
    assert [f.kind for f in result.failures] == [
        FailureKind.NOT_FOUND,
        FailureKind.NOT_RETURNED,
        FailureKind.NOT_RETURNED,
    ]
    assert "rate limit" in result.failures[1].detail
    assert (len(fake.seen), clock.sleeps) == (2, [])


@pytest.mark.parametrize(
    "body",
    [
        "<html>502 Bad Gateway</html>",
        '{"profiles": [{"did": "did:plc:',
        {},
        [],
        {"profiles": {"did": "x"}},
        {"profiles": None},
    ],
    ids=["html", "truncated", "empty", "list", "profiles-object", "profiles-null"],
)
async def test_malformed_body_is_transient(fake, make, body: Any) -> None:
    fake.serve(200, body)

    with pytest.raises(TransientError):
        await make().fetch([acct("user1.bsky.social")])


@pytest.mark.parametrize(
    "bad",
    [
        {"followersCount": "12"},
        {"followersCount": -1},
        {"followersCount": True},
        {"followersCount": 2.5},
        {"followersCount": None},
        {"followsCount": "x"},
        {"postsCount": -3},
        {"did": "not-a-did"},
    ],
)
async def test_one_malformed_profile_fails_alone(fake, make, bad: dict[str, Any]) -> None:
    good_a, broken, good_b = (fake.make_profile(i) for i in range(3))
    broken.update(bad)
    fake.serve(200, {"profiles": [good_a, broken, good_b]})

    result = await make().fetch(
        [acct(p) for p in ("user0.bsky.social", "user1.bsky.social", "user2.bsky.social")]
    )

    assert [o.followers for o in result.observations] == [500, 526]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        ("user1.bsky.social", FailureKind.MALFORMED)
    ]


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransientError), (502, TransientError), (400, TransientError), (404, NotFoundError)],
)
async def test_batch_errors(fake, make, status: int, error: type[Exception]) -> None:
    fake.serve(status, {"error": "Whatever", "message": "went wrong"})

    with pytest.raises(error, match="went wrong"):
        await make().fetch([acct("user1.bsky.social")])


async def test_fake_rejects_what_the_appview_rejects(fake, client) -> None:
    url = fake.base_url + PROFILES

    too_many = await client.get(url, params=[("actors", f"u{i}.bsky.social") for i in range(26)])
    invalid = await client.get(url, params=[("actors", "ok.bsky.social"), ("actors", "bad!")])
    none = await client.get(fake.base_url + PROFILE, params={"actor": "nobody.bsky.social"})

    assert (too_many.status_code, too_many.json()["error"]) == (400, "InvalidRequest")
    assert invalid.json()["message"] == "Error: actors/1 must be a valid did or a handle"
    assert (none.status_code, none.json()) == (400, fake.load("profile_not_found.json"))


@pytest.mark.parametrize(
    ("handle", "ok"),
    [
        ("alice.bsky.social", True),
        ("bsky.app", True),
        ("xn--ls8h.test", True),
        (plc(7), True),
        ("did:web:example.com", True),
        ("did:web:localhost%3A8080", True),
        ("alice", False),
        ("@alice.bsky.social", False),
        ("alice.bsky.social.", False),
        ("a_b.bsky.social", False),
        ("handle.invalid", False),
        ("x.local", False),
        ("did:plc:short", False),
        ("did:key:z6Mkabc", False),
        ("alice.123", False),
    ],
)
def test_handle_pattern(handle: str, ok: bool) -> None:
    assert bool(SPEC.handle_pattern.match(handle)) is ok


def test_config_and_build(tmp_path: Path, clock, client) -> None:
    config = BlueskyConfig(base_url="https://appview.example.org/", max_wait="2m")

    assert (config.base_url, config.max_wait) == ("https://appview.example.org", 120.0)
    assert BlueskyConfig().base_url == "https://public.api.bsky.app"
    assert isinstance(build(config, SourceContext(client, clock, tmp_path)), BlueskySource)
    assert SPEC.rate_limit_ceiling is None
