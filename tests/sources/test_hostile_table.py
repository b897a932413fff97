"""One hostile table for every source: typed failures or correct counts, never a crash.

Adding a platform is one entry in PLATFORMS: how to build its source on a base URL, one of its
handles, and how its fake serves an account with a given follower count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes import fake_github, fake_http_json, fake_twitch, fake_x, fake_youtube
from fakes.fake_bluesky import FakeBluesky
from fakes.fake_github import FakeGitHub
from fakes.fake_http_json import FakeJsonApi
from fakes.fake_mastodon import FakeMastodon
from fakes.fake_reddit import FakeReddit, make_sub
from fakes.fake_twitch import FakeTwitch
from fakes.fake_x import FakeX
from fakes.fake_youtube import FakeYouTube, make_channel
from fakes.hostile import Answer, RawServer
from followerwatch.clock import Clock, ManualClock
from followerwatch.errors import SourceError
from followerwatch.models import MAX_COUNT, Account, FailureKind, FetchResult
from followerwatch.sources import REGISTRY
from followerwatch.sources.base import Source
from followerwatch.sources.bluesky import BlueskySource
from followerwatch.sources.common import ReadLimits
from followerwatch.sources.github import GitHubSource
from followerwatch.sources.http_json import HttpJsonSource
from followerwatch.sources.mastodon import MastodonSource
from followerwatch.sources.reddit import RedditSource
from followerwatch.sources.twitch import TwitchSource
from followerwatch.sources.x import XSource
from followerwatch.sources.youtube import LEDGER_FILE, YouTubeSource

# Small, so the trickle and oversize rows take a fraction of a second each.
LIMITS = ReadLimits(max_body=64 * 1024, deadline=0.2)
Build = Callable[[httpx.AsyncClient, Clock, str, Path], Source]
# Puts account `i` with follower count `value` on the platform's fake; returns its handle.
Serve = Callable[[Any, int, Any], str]


@dataclass(frozen=True)
class Platform:
    """One source in the table."""

    build: Build
    # The platform's fake on an HTTPServer (it registers its own routes).
    fake: Callable[[HTTPServer, Clock], Any]
    serve: Serve
    # Handle `i` as the fake names it, for answers that come from no fake.
    handle: Callable[[int], str]
    # Counts may come as decimal strings (YouTube, http_json); `"12"` is then a count of 12.
    quoted: bool = False


def _x(fake: FakeX, i: int, value: Any) -> str:
    user = fake_x.make_user(i)
    user["public_metrics"]["followers_count"] = value
    fake.add(user)
    return str(user["username"])


def _bluesky(fake: FakeBluesky, i: int, value: Any) -> str:
    fake.add(profile := fake.make_profile(i, followersCount=value))
    return str(profile["handle"])


def _mastodon(fake: FakeMastodon, i: int, value: Any) -> str:
    fake.add(account := fake.make_account(i, followers_count=value))
    return fake.handle(account)


def _youtube(fake: FakeYouTube, i: int, value: Any) -> str:
    channel = make_channel(i)
    channel["statistics"]["subscriberCount"] = value
    fake.add(channel)
    return str(channel["snippet"]["customUrl"])


def _github(fake: FakeGitHub, i: int, value: Any) -> str:
    fake.add(user := fake_github.make_user(i, followers=value))
    return str(user["login"])


def _twitch(fake: FakeTwitch, i: int, value: Any) -> str:
    fake.add(user := fake_twitch.make_user(i))
    # Set after `add`, which reads a None total as "the default one".
    fake.totals[user["id"]] = value
    return str(user["login"])


def _reddit(fake: FakeReddit, i: int, value: Any) -> str:
    sub = make_sub(i)
    sub["subscribers"] = value
    fake.add(sub)
    return str(sub["display_name"])


def _http_json(fake: FakeJsonApi, i: int, value: Any) -> str:
    fake.add(f"user{i}", f"u-{i}", value)
    return f"user{i}"


PLATFORMS: dict[str, Platform] = {
    "x": Platform(
        lambda c, clock, url, _: XSource(
            c, bearer_token=fake_x.TOKEN, clock=clock, base_url=url, max_wait=0, limits=LIMITS
        ),
        FakeX,
        _x,
        lambda i: f"user_{i:03d}",
    ),
    "mastodon": Platform(
        lambda c, clock, url, _: MastodonSource(
            c, clock=clock, instance_urls={"mastodon.social": url}, max_wait=0, limits=LIMITS
        ),
        FakeMastodon,
        _mastodon,
        lambda i: f"user{i}@mastodon.social",
    ),
    "bluesky": Platform(
        lambda c, clock, url, _: BlueskySource(
            c, clock=clock, base_url=url, max_wait=0, limits=LIMITS
        ),
        FakeBluesky,
        _bluesky,
        lambda i: f"user{i}.bsky.social",
    ),
    "youtube": Platform(
        lambda c, clock, url, tmp: YouTubeSource(
            c,
            api_key=fake_youtube.API_KEY,
            clock=clock,
            ledger_path=tmp / LEDGER_FILE,
            base_url=url,
            max_wait=0,
            limits=LIMITS,
        ),
        FakeYouTube,
        _youtube,
        lambda i: f"@channel{i:03d}",
        quoted=True,
    ),
    "github": Platform(
        lambda c, clock, url, _: GitHubSource(
            c, clock=clock, token=fake_github.TOKEN, base_url=url, max_wait=0, limits=LIMITS
        ),
        FakeGitHub,
        _github,
        lambda i: f"user-{i:03d}",
    ),
    "twitch": Platform(
        lambda c, clock, url, _: TwitchSource(
            c,
            client_id=fake_twitch.CLIENT_ID,
            client_secret=fake_twitch.CLIENT_SECRET,
            clock=clock,
            id_url=url,
            api_url=url,
            max_wait=0,
            limits=LIMITS,
        ),
        FakeTwitch,
        _twitch,
        lambda i: f"user_{i:03d}",
    ),
    "reddit": Platform(
        lambda c, clock, url, _: RedditSource(
            c,
            clock=clock,
            user_agent="linux:followerwatch-tests:0.1.0 (by /u/followerwatch_ci)",
            client_id="p-jcoLKBynTLew",
            client_secret="gko_LXELoV07ZBNUXrvWZfzE3aI",
            www_url=url,
            oauth_url=url,
            max_wait=0,
            limits=LIMITS,
        ),
        FakeReddit,
        _reddit,
        lambda i: f"Sub_{i:03d}",
    ),
    "http_json": Platform(
        lambda c, clock, url, _: HttpJsonSource(
            c,
            clock=clock,
            url=url + "/v1/users/{handle}/stats",
            headers={"X-Api-Key": fake_http_json.API_KEY},
            count_path="data.stats.followers",
            following_path="data.stats.following",
            posts_path="data.stats.posts",
            id_path="data.id",
            rate_limit_prefix="x-ratelimit-",
            max_wait=0,
            limits=LIMITS,
        ),
        FakeJsonApi,
        _http_json,
        lambda i: f"user{i}",
        quoted=True,
    ),
}

ABSURD_RATE = (
    ("Content-Type", "application/json"),
    ("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"),
    ("X-RateLimit-Limit", "-3"),
    ("X-RateLimit-Remaining", "99999999999999999999999999"),
    ("X-RateLimit-Reset", "1e400"),
    ("x-rate-limit-reset", "nan"),
    ("RateLimit-Reset", "2026-13-45T99:99:99Z"),
    ("Ratelimit-Remaining", "-1"),
)
# Dates and epochs that parse but lie past any datetime (the year 10000 once moved to UTC).
OVERFLOWING_RATE = (
    ("Content-Type", "application/json"),
    ("Retry-After", "Fri, 31 Dec 9999 23:59:59 -0100"),
    ("X-RateLimit-Reset", "9999-12-31T23:59:59-01:00"),
    ("x-rate-limit-reset", "1" + "0" * 400),
    ("RateLimit-Reset", "99999999999999999999"),
)
HTML = (("Content-Type", "text/html"),)
# Answers whose every byte is hostile: served to every request, token requests included.
ANSWERS: dict[str, Answer] = {
    "empty body": Answer(),
    "html": Answer(body=b"<html><body>502 Bad Gateway</body></html>", headers=HTML),
    "html error": Answer(status=503, body=b"<html>down</html>", headers=HTML),
    "truncated json": Answer(body=b'{"data": [{"id": "1", "followers_count": 5'),
    "json of the wrong types": Answer(
        body=b'{"data": "x", "profiles": 5, "items": {}, "total": []}'
    ),
    "a json list": Answer(body=b'[1, "two", null, {"access_token": 5}]'),
    "json null": Answer(body=b"null"),
    "absurd rate-limit headers": Answer(body=b"{}", headers=ABSURD_RATE),
    "429 with absurd rate-limit headers": Answer(status=429, body=b"{}", headers=ABSURD_RATE),
    "429 without rate-limit headers": Answer(status=429, body=b"{}"),
    "overflowing rate-limit dates": Answer(body=b"{}", headers=OVERFLOWING_RATE),
    "429 with overflowing rate-limit dates": Answer(
        status=429, body=b"{}", headers=OVERFLOWING_RATE
    ),
    "a token that never expires": Answer(body=b'{"access_token": "t", "expires_in": 1e300}'),
    "trickle": Answer(body=b'{"access_token": "t", "expires_in": 3600}', trickle=0.05),
    "oversize": Answer(endless=True),
}
# Follower counts one account of a healthy batch reports; each is a failure for that account only.
HOSTILE: list[Any] = [
    2**63,
    2**64,
    MAX_COUNT + 1,
    10**30,
    -5,
    1.5,
    1e20,
    float("nan"),
    True,
    "12.5",
    "abc",
    "12",
    str(2**63),
    "9" * 5000,
    [],
    {"value": 3},
    None,
]
HEALTHY = [0, 873, MAX_COUNT]


def test_the_table_covers_every_registered_source() -> None:
    assert set(PLATFORMS) == set(REGISTRY)


def every_account_answered(result: FetchResult, accounts: list[Account]) -> None:
    answered = [o.account for o in result.observations] + [f.account for f in result.failures]
    assert sorted(a.name for a in answered) == sorted(a.name for a in accounts)


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_hostile_answer_is_a_typed_failure(
    client: httpx.AsyncClient, tmp_path: Path, platform: str, answer: str
) -> None:
    entry = PLATFORMS[platform]
    clock = ManualClock(fake_x.START)
    async with RawServer(ANSWERS[answer]) as server:
        source = entry.build(client, clock, server.url, tmp_path)
        accounts = [Account(platform, entry.handle(i), entry.handle(i).lower()) for i in range(2)]
        try:
            result = await source.fetch(accounts)
        except SourceError:
            return
    assert result.observations == ()
    every_account_answered(result, accounts)


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_hostile_counts_spoil_their_own_accounts_not_the_batch(
    httpserver: HTTPServer, client: httpx.AsyncClient, tmp_path: Path, platform: str
) -> None:
    entry = PLATFORMS[platform]
    clock = ManualClock(fake_x.START)
    fake = entry.fake(httpserver, clock)
    # Every hostile count in one batch, between healthy ones (the batch fits every platform's).
    healthy = [str(v) if entry.quoted else v for v in HEALTHY]
    values = [healthy[0], *HOSTILE, *healthy[1:]]
    handles = [entry.serve(fake, i, v) for i, v in enumerate(values)]
    accounts = [Account(platform, h, h.lower()) for h in handles]
    source = entry.build(client, clock, httpserver.url_for("/").rstrip("/"), tmp_path)

    result = await source.fetch(accounts)

    every_account_answered(result, accounts)
    hostile = dict(zip((a.name for a in accounts[1:-2]), HOSTILE, strict=True))
    kinds = {f.account.name: f.kind for f in result.failures}
    # None is "no count": the platform may call it hidden or closed rather than malformed.
    assert {n: kinds.get(n) for n, v in hostile.items() if v is not None and v != "12"} == {
        n: FailureKind.MALFORMED for n, v in hostile.items() if v is not None and v != "12"
    }
    assert next(n for n, v in hostile.items() if v is None) in kinds
    # The rest of the batch is read, each account with exactly its own count.
    expected = {a.name: c for a, c in zip([accounts[0], *accounts[-2:]], HEALTHY, strict=True)}
    if entry.quoted:
        expected[next(n for n, v in hostile.items() if v == "12")] = 12
    assert {o.account.name: o.followers for o in result.observations} == expected
