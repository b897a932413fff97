"""YouTubeSource against the local fake YouTube Data API: batching, quota ledger, limits, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from pytest_httpserver import HTTPServer

from fakes.fake_youtube import API_KEY, START, FakeYouTube
from followerwatch.clock import ManualClock
from followerwatch.errors import AuthError, ConfigError, RateLimitedError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation
from followerwatch.sources.base import SourceContext
from followerwatch.sources.youtube import (
    LEDGER_FILE,
    SPEC,
    YouTubeConfig,
    YouTubeSource,
    build,
    next_quota_reset,
    resolution,
)

# 2026-01-01 00:00 UTC is 2025-12-31 16:00 in Los Angeles: the quota resets 8 hours later.
MIDNIGHT_PT = datetime(2026, 1, 1, 8, tzinfo=UTC)
GOOGLE_DEV = "UC_x5XG1OV2P6uZZ5FSM9Ttw"


@pytest.fixture
def fake_yt(httpserver: HTTPServer, clock: ManualClock) -> FakeYouTube:
    """The fake YouTube API with an empty database and a fresh quota day."""
    return FakeYouTube(httpserver, clock)


@pytest.fixture
def make_yt(
    fake_yt: FakeYouTube, client: httpx.AsyncClient, clock: ManualClock, tmp_path: Path
) -> Callable[..., YouTubeSource]:
    """Build a YouTubeSource pointed at the fake, its ledger in tmp_path; kwargs override."""

    def make(**overrides: Any) -> YouTubeSource:
        kwargs: dict[str, Any] = {
            "api_key": API_KEY,
            "clock": clock,
            "ledger_path": tmp_path / LEDGER_FILE,
            "base_url": fake_yt.base_url,
        }
        kwargs.update(overrides)
        return YouTubeSource(client, **kwargs)

    return make


def acct(handle: str, platform_id: str | None = None) -> Account:
    return Account(platform="youtube", handle=handle, name=handle.lower(), platform_id=platform_id)


def by_handle(result: FetchResult) -> dict[str, Observation | Failure]:
    return {o.account.handle: o for o in (*result.observations, *result.failures)}


def ledger(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / LEDGER_FILE).read_text())
    return data


async def test_batch_of_50_ids_is_one_request_with_every_count(fake_yt, make_yt) -> None:
    channels = [fake_yt.make_channel(i) for i in range(50)]
    fake_yt.add(*channels)

    result = await make_yt().fetch([acct(c["id"]) for c in channels])

    assert result.requests == 1 and len(fake_yt.seen) == 1
    sent = fake_yt.seen[0].args
    assert sent["id"].split(",") == [c["id"] for c in channels]
    assert set(sent["part"].split(",")) == {"statistics", "snippet"}
    assert sent["key"] == API_KEY and "forHandle" not in sent
    assert result.failures == ()
    for obs, c in zip(result.observations, channels, strict=True):
        assert obs.followers == int(c["statistics"]["subscriberCount"])
        assert obs.posts == int(c["statistics"]["videoCount"])
        assert obs.following is None
        assert (obs.platform_id, obs.handle, obs.time) == (
            c["id"],
            c["snippet"]["customUrl"],
            START,
        )
    assert [o.resolution for o in result.observations[:2]] == [10, 10]
    assert result.rate_limit is not None
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (10_000, 9_999)
    assert result.rate_limit.reset_at == MIDNIGHT_PT


async def test_120_ids_are_three_requests_of_at_most_50(fake_yt, make_yt) -> None:
    channels = [fake_yt.make_channel(i) for i in range(120)]
    fake_yt.add(*channels)

    result = await make_yt().fetch([acct(c["id"]) for c in channels])

    assert result.requests == 3
    assert [len(s.args["id"].split(",")) for s in fake_yt.seen] == [50, 50, 20]
    assert len(result.observations) == 120
    assert result.rate_limit is not None and result.rate_limit.remaining == 9_997


async def test_documented_fixture_values_and_rounding(fake_yt, make_yt) -> None:
    fake_yt.serve(200, fake_yt.load("channels_ok.json"))

    result = await make_yt().fetch([acct(GOOGLE_DEV), acct("UCBR8-60-B28hp2BmDPdntcQ")])

    got = by_handle(result)
    dev, yt = got[GOOGLE_DEV], got["UCBR8-60-B28hp2BmDPdntcQ"]
    assert isinstance(dev, Observation) and isinstance(yt, Observation)
    assert (dev.followers, dev.resolution, dev.posts, dev.handle) == (
        2_530_000,
        10_000,
        6519,
        "@googledevelopers",
    )
    assert (yt.followers, yt.resolution, yt.posts, yt.handle) == (
        41_200_000,
        100_000,
        767,
        "@youtube",
    )


@pytest.mark.parametrize(
    ("count", "step"),
    [
        (0, 1),
        (7, 1),
        (999, 1),
        (1_000, 10),
        (1_230, 10),
        (99_900, 100),
        (999_000, 1_000),
        (1_230_000, 10_000),
        (123_000_000, 1_000_000),
    ],
)
def test_resolution_of_three_significant_figures(count: int, step: int) -> None:
    assert resolution(count) == step


async def test_handles_are_resolved_once_then_asked_by_id(fake_yt, make_yt) -> None:
    fake_yt.add(fake_yt.make_channel(1), fake_yt.make_channel(2), fake_yt.make_channel(3))
    source = make_yt()

    first = await source.fetch(
        [acct("@channel001"), acct("@Channel002"), acct("UCfake000000000000000003")]
    )
    again = await source.fetch(
        [acct("@channel001"), acct("@Channel002"), acct("UCfake000000000000000003")]
    )
    # A restarted service has no memory but passes back the ids the collector stored.
    stored = [acct(o.account.handle, o.platform_id) for o in first.observations]
    restarted = await make_yt().fetch(stored)

    assert [sorted(k for k in s.args if k in ("id", "forHandle")) for s in fake_yt.seen[:3]] == [
        ["id"],
        ["forHandle"],
        ["forHandle"],
    ]
    assert [s.args.get("forHandle") for s in fake_yt.seen[1:3]] == ["@channel001", "@Channel002"]
    assert (first.requests, again.requests, restarted.requests) == (3, 1, 1)
    assert fake_yt.seen[3].args["id"] == fake_yt.seen[4].args["id"]
    assert len(fake_yt.seen[4].args["id"].split(",")) == 3
    for result in (first, again, restarted):
        assert [o.platform_id for o in result.observations] == [
            f"UCfake{i:018d}" for i in (1, 2, 3)
        ]
        assert result.failures == ()


@pytest.mark.parametrize("omit_items", [True, False], ids=["no-items", "items-empty"])
async def test_unknown_handle_is_not_found(fake_yt, make_yt, omit_items: bool) -> None:
    fake_yt.omit_empty_items = omit_items

    result = await make_yt().fetch([acct("@nobody_here")])

    assert result.observations == ()
    assert [(f.kind, f.account.handle) for f in result.failures] == [
        (FailureKind.NOT_FOUND, "@nobody_here")
    ]


@pytest.mark.parametrize("fixture", ["channels_none.json", "channels_items_empty.json"])
async def test_documented_empty_answers(fake_yt, make_yt, fixture: str) -> None:
    fake_yt.serve(200, fake_yt.load(fixture))
    fake_yt.serve(200, fake_yt.load(fixture))

    by_name = await make_yt().fetch([acct("@gone")])
    by_id = await make_yt().fetch([acct("@gone", platform_id=GOOGLE_DEV)])

    assert [f.kind for f in by_name.failures] == [FailureKind.NOT_FOUND]
    assert [f.kind for f in by_id.failures] == [FailureKind.NOT_RETURNED]
    assert by_name.observations == by_id.observations == ()


async def test_404_channel_not_found_variant(fake_yt, make_yt) -> None:
    fake_yt.serve(404, fake_yt.load("channel_not_found.json"))

    result = await make_yt().fetch([acct("@gone")])

    assert [f.kind for f in result.failures] == [FailureKind.NOT_FOUND]


async def test_id_left_out_of_a_batch_is_not_returned(fake_yt, make_yt) -> None:
    fake_yt.add(fake_yt.make_channel(1), fake_yt.make_channel(3))
    ids = [f"UCfake{i:018d}" for i in (1, 2, 3)]

    result = await make_yt().fetch([acct(i) for i in ids])

    assert result.requests == 1
    assert [o.account.handle for o in result.observations] == [ids[0], ids[2]]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        (ids[1], FailureKind.NOT_RETURNED)
    ]


async def test_hidden_counts_are_failures_never_zero(fake_yt, make_yt) -> None:
    fake_yt.serve(200, fake_yt.load("channel_hidden.json"))
    ids = ["UCq1hiddenAbsentCount001", "UCq1hiddenZeroCount00002"]

    result = await make_yt().fetch([acct(i) for i in ids])

    assert result.observations == ()
    assert [f.kind for f in result.failures] == [FailureKind.HIDDEN, FailureKind.HIDDEN]


async def test_rename_is_followed_by_stored_id(fake_yt, make_yt) -> None:
    ours = fake_yt.make_channel(1, handle="@brand_new_name", subscribers=5_432)
    squatter = fake_yt.make_channel(2, handle="@old_name", subscribers=77)
    fake_yt.add(ours, squatter)

    result = await make_yt().fetch([acct("@old_name", platform_id=ours["id"])])

    assert result.requests == 1 and fake_yt.seen[0].args["id"] == ours["id"]
    (obs,) = result.observations
    assert obs.account.handle == "@old_name"
    assert (obs.handle, obs.platform_id, obs.followers, obs.resolution) == (
        "@brand_new_name",
        ours["id"],
        5_430,
        10,
    )


async def test_invalid_handle_is_never_sent(fake_yt, make_yt) -> None:
    result = await make_yt().fetch([acct("no-at-sign"), acct("@a b")])

    assert fake_yt.seen == [] and result.requests == 0
    assert {f.kind for f in result.failures} == {FailureKind.NOT_FOUND}


async def test_no_accounts_no_request(fake_yt, make_yt) -> None:
    assert await make_yt().fetch([]) == FetchResult()
    assert fake_yt.seen == []


@pytest.mark.parametrize(
    ("status", "fixture"),
    [(400, "key_invalid.json"), (400, "key_invalid_legacy.json"), (403, "missing_key.json")],
)
async def test_bad_key_is_auth_error_without_the_key(
    fake_yt, make_yt, status: int, fixture: str
) -> None:
    fake_yt.serve(status, fake_yt.load(fixture))

    with pytest.raises(AuthError) as info:
        await make_yt(api_key="AIza-secret-wrong-key").fetch([acct(GOOGLE_DEV)])

    assert "AIza-secret-wrong-key" not in str(info.value)


async def test_401_is_auth_error(fake_yt, make_yt) -> None:
    error = {
        "code": 401,
        "message": "Request is missing required authentication credential.",
        "errors": [{"reason": "required", "domain": "global"}],
        "status": "UNAUTHENTICATED",
    }
    fake_yt.serve(401, {"error": error})

    with pytest.raises(AuthError, match="401"):
        await make_yt().fetch([acct(GOOGLE_DEV)])


async def test_network_errors_are_transient_and_still_cost_a_unit(
    clock: ManualClock, tmp_path: Path
) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(boom)) as timing_out:
        source = YouTubeSource(
            timing_out, api_key="AIza-secret", clock=clock, ledger_path=tmp_path / LEDGER_FILE
        )
        with pytest.raises(TransientError, match="ReadTimeout") as info:
            await source.fetch([acct(GOOGLE_DEV)])
    assert "AIza-secret" not in str(info.value)
    # The request may have reached Google, which charges for it either way.
    assert ledger(tmp_path)["spent"] == 1


async def test_wrong_key_against_the_model_is_auth_error(fake_yt, make_yt) -> None:
    with pytest.raises(AuthError, match="API key not valid"):
        await make_yt(api_key="AIza-secret-wrong-key").fetch([acct("@x_handle")])
    assert fake_yt.seen[0].args["key"] == "AIza-secret-wrong-key"


async def test_ledger_stops_at_the_daily_quota_without_sending(
    fake_yt, make_yt, clock: ManualClock, tmp_path: Path
) -> None:
    fake_yt.add(fake_yt.make_channel(1))
    source = make_yt(daily_quota=3)
    for _ in range(3):
        assert len((await source.fetch([acct("UCfake000000000000000001")])).observations) == 1

    with pytest.raises(RateLimitedError) as info:
        await source.fetch([acct("UCfake000000000000000001")])
    assert info.value.retry_at == MIDNIGHT_PT
    # A restart reads the ledger back and still sends nothing.
    with pytest.raises(RateLimitedError):
        await make_yt(daily_quota=3).fetch([acct("UCfake000000000000000001")])
    assert len(fake_yt.seen) == 3
    assert ledger(tmp_path) == {"day": "2025-12-31", "spent": 3, "exhausted": False}

    clock.advance((MIDNIGHT_PT - START).total_seconds())
    result = await make_yt(daily_quota=3).fetch([acct("UCfake000000000000000001")])
    assert len(result.observations) == 1 and len(fake_yt.seen) == 4
    assert ledger(tmp_path) == {"day": "2026-01-01", "spent": 1, "exhausted": False}
    assert result.rate_limit is not None and result.rate_limit.remaining == 2


async def test_quota_exceeded_from_google_stops_until_midnight_pacific(
    fake_yt, make_yt, clock: ManualClock, tmp_path: Path
) -> None:
    fake_yt.add(fake_yt.make_channel(1))
    fake_yt.used = fake_yt.quota  # another service spent the shared project quota
    source = make_yt()

    with pytest.raises(RateLimitedError) as info:
        await source.fetch([acct("UCfake000000000000000001")])
    assert info.value.retry_at == MIDNIGHT_PT
    clock.advance(3600)
    with pytest.raises(RateLimitedError):
        await source.fetch([acct("UCfake000000000000000001")])
    with pytest.raises(RateLimitedError):
        await make_yt().fetch([acct("UCfake000000000000000001")])

    assert len(fake_yt.seen) == 1 and clock.sleeps == []
    assert ledger(tmp_path)["exhausted"] is True
    clock.advance((MIDNIGHT_PT - clock.now()).total_seconds())
    assert len((await source.fetch([acct("UCfake000000000000000001")])).observations) == 1


async def test_each_attempt_costs_a_unit_in_the_ledger(fake_yt, make_yt, tmp_path: Path) -> None:
    fake_yt.add(fake_yt.make_channel(1))
    fake_yt.serve(403, fake_yt.load("rate_limit_exceeded.json"))

    await make_yt().fetch([acct("UCfake000000000000000001")])

    assert ledger(tmp_path)["spent"] == 2 == len(fake_yt.seen)


@pytest.mark.parametrize(
    ("status", "fixture"),
    [(403, "rate_limit_exceeded.json"), (429, "user_rate_limit_exceeded.json")],
)
async def test_rate_limit_backs_off_then_retries(
    fake_yt, make_yt, clock: ManualClock, status: int, fixture: str
) -> None:
    fake_yt.add(fake_yt.make_channel(1))
    fake_yt.serve(status, fake_yt.load(fixture))

    result = await make_yt().fetch([acct("UCfake000000000000000001")])

    assert clock.sleeps == [61.0]  # a minute of backoff, plus the 1 s safety margin
    assert [s.time for s in fake_yt.seen] == [START, START + timedelta(seconds=61)]
    assert result.requests == 2
    assert result.observations[0].time == START + timedelta(seconds=61)


async def test_rate_limit_honours_retry_after(fake_yt, make_yt, clock: ManualClock) -> None:
    fake_yt.add(fake_yt.make_channel(1))
    fake_yt.serve(429, fake_yt.load("user_rate_limit_exceeded.json"), {"Retry-After": "5"})

    result = await make_yt().fetch([acct("UCfake000000000000000001")])

    assert clock.sleeps == [6.0] and len(result.observations) == 1


async def test_rate_limit_beyond_max_wait_raises_and_next_fetch_does_not_send(
    fake_yt, make_yt, clock: ManualClock
) -> None:
    fake_yt.add(fake_yt.make_channel(1))
    for _ in range(3):
        fake_yt.serve(403, fake_yt.load("rate_limit_exceeded.json"))
    source = make_yt(max_wait=200)

    with pytest.raises(RateLimitedError) as info:
        await source.fetch([acct("UCfake000000000000000001")])
    # Backoff doubles: 60 s, 120 s, then 240 s is more than max_wait.
    assert clock.sleeps == [61.0, 121.0]
    assert info.value.retry_at == START + timedelta(seconds=61 + 121 + 240)
    with pytest.raises(RateLimitedError):
        await source.fetch([acct("UCfake000000000000000001")])
    assert len(fake_yt.seen) == 3


@pytest.mark.parametrize(
    "body",
    [
        "<html>503 Service Unavailable</html>",
        '{"items": [',
        [],
        {},
        {"items": "nope"},
        {"error": "x"},
    ],
    ids=["html", "truncated", "list", "empty-object", "items-string", "error-string"],
)
async def test_malformed_body_is_transient(fake_yt, make_yt, body: Any) -> None:
    fake_yt.serve(200, body)

    with pytest.raises(TransientError):
        await make_yt().fetch([acct(GOOGLE_DEV)])


@pytest.mark.parametrize(
    "stats",
    [
        {"subscriberCount": "abc"},
        {"subscriberCount": "-5"},
        {"subscriberCount": "1.5"},
        {"subscriberCount": True},
        {"subscriberCount": None},
        {},
        {"subscriberCount": "10", "hiddenSubscriberCount": "false"},
        {"subscriberCount": "10", "videoCount": "many"},
    ],
)
async def test_one_malformed_channel_fails_alone(fake_yt, make_yt, stats: dict[str, Any]) -> None:
    good = [fake_yt.make_channel(1), fake_yt.make_channel(3)]
    broken = fake_yt.make_channel(2)
    broken["statistics"] = stats
    fake_yt.serve(200, {"kind": "youtube#channelListResponse", "items": [good[0], broken, good[1]]})

    result = await make_yt().fetch([acct(c["id"]) for c in (good[0], broken, good[1])])

    assert [o.platform_id for o in result.observations] == [c["id"] for c in good]
    assert [(f.account.handle, f.kind) for f in result.failures] == [
        (broken["id"], FailureKind.MALFORMED)
    ]


async def test_handle_answer_without_statistics_or_id_is_malformed(fake_yt, make_yt) -> None:
    no_stats = {"kind": "youtube#channel", "id": GOOGLE_DEV, "snippet": {"customUrl": "@a_b_c"}}
    no_id = {"kind": "youtube#channel", "statistics": {"subscriberCount": "5"}}
    fake_yt.serve(200, {"pageInfo": {"totalResults": 1}, "items": [no_stats]})
    fake_yt.serve(200, {"pageInfo": {"totalResults": 1}, "items": [no_id]})

    result = await make_yt().fetch([acct("@a_b_c"), acct("@d_e_f")])

    assert result.observations == ()
    assert [f.kind for f in result.failures] == [FailureKind.MALFORMED] * 2


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(fake_yt, make_yt, status: int) -> None:
    fake_yt.serve(status, "Service Unavailable")

    with pytest.raises(TransientError, match=str(status)):
        await make_yt().fetch([acct(GOOGLE_DEV)])


async def test_one_failed_call_keeps_the_units_other_calls_paid_for(fake_yt, make_yt) -> None:
    fake_yt.add(fake_yt.make_channel(1), fake_yt.make_channel(2))
    fake_yt.serve(200, {"kind": "youtube#channelListResponse", "items": [fake_yt.make_channel(1)]})
    fake_yt.serve(503, "Service Unavailable")

    result = await make_yt().fetch([acct("UCfake000000000000000001"), acct("@channel002")])

    assert [o.platform_id for o in result.observations] == ["UCfake000000000000000001"]
    (failure,) = result.failures
    assert (failure.account.handle, failure.kind) == ("@channel002", FailureKind.NOT_RETURNED)
    assert "503" in failure.detail


async def test_unexpected_400_is_transient(fake_yt, make_yt) -> None:
    fake_yt.serve(400, fake_yt.load("incompatible_parameters.json"))

    with pytest.raises(TransientError, match="Incompatible"):
        await make_yt().fetch([acct(GOOGLE_DEV)])


async def test_unwritable_ledger_sends_nothing(fake_yt, make_yt, tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="quota"):
        await make_yt(ledger_path=tmp_path / "missing" / LEDGER_FILE).fetch([acct(GOOGLE_DEV)])
    assert fake_yt.seen == []


@pytest.mark.parametrize("text", ["not json", "[]", '{"day": 5, "spent": 1, "exhausted": false}'])
async def test_unreadable_ledger_starts_an_empty_day(
    fake_yt, make_yt, tmp_path: Path, text: str
) -> None:
    fake_yt.add(fake_yt.make_channel(1))
    (tmp_path / LEDGER_FILE).write_text(text)

    result = await make_yt().fetch([acct("UCfake000000000000000001")])

    assert len(result.observations) == 1
    assert ledger(tmp_path) == {"day": "2025-12-31", "spent": 1, "exhausted": False}


@pytest.mark.parametrize(
    ("now", "reset"),
    [
        (START, MIDNIGHT_PT),
        # Daylight saving time starts at 02:00 on 2026-03-08 in Los Angeles.
        (datetime(2026, 3, 8, 12, tzinfo=UTC), datetime(2026, 3, 9, 7, tzinfo=UTC)),
        (datetime(2026, 7, 1, 6, 59, tzinfo=UTC), datetime(2026, 7, 1, 7, tzinfo=UTC)),
        (datetime(2026, 7, 1, 7, tzinfo=UTC), datetime(2026, 7, 2, 7, tzinfo=UTC)),
        (datetime(2026, 11, 1, 12, tzinfo=UTC), datetime(2026, 11, 2, 8, tzinfo=UTC)),
    ],
)
def test_quota_resets_at_midnight_pacific(now: datetime, reset: datetime) -> None:
    assert next_quota_reset(now) == reset


@pytest.mark.parametrize(
    ("handle", "valid"),
    [
        ("@googledevelopers", True),
        ("@Google.Dev-1_x", True),
        ("@日本語チャンネル", True),
        ("UC_x5XG1OV2P6uZZ5FSM9Ttw", True),
        ("@ab", False),
        ("googledevelopers", False),
        ("@" + "a" * 31, False),
        ("@has space", False),
        ("UC_x5XG1OV2P6uZZ5FSM9Tt", False),
        ("UC_x5XG1OV2P6uZZ5FSM9Ttw\n", False),
        ("", False),
    ],
)
def test_handle_pattern(handle: str, valid: bool) -> None:
    assert bool(SPEC.handle_pattern.fullmatch(handle)) is valid


def test_config_defaults_and_secret_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("AIza-from-file\n")

    config = YouTubeConfig.model_validate({"api_key_file": str(key_file), "daily_quota": 50_000})

    assert config.api_key is not None and config.api_key.get_secret_value() == "AIza-from-file"
    assert (config.daily_quota, config.base_url) == (50_000, "https://www.googleapis.com")
    assert YouTubeConfig().required_secrets == ("api_key",)
    with pytest.raises(ValidationError):
        YouTubeConfig.model_validate({"daily_quota": 0})


async def test_build_needs_a_key_and_keeps_the_ledger_in_state_dir(
    fake_yt, client: httpx.AsyncClient, clock: ManualClock, tmp_path: Path
) -> None:
    ctx = SourceContext(client, clock, tmp_path)
    with pytest.raises(ConfigError, match="api_key"):
        build(YouTubeConfig(), ctx)
    fake_yt.add(fake_yt.make_channel(1))
    config = YouTubeConfig.model_validate({"api_key": API_KEY, "base_url": fake_yt.base_url})

    result = await build(config, ctx).fetch([acct("UCfake000000000000000001")])

    assert len(result.observations) == 1
    assert ledger(tmp_path)["spent"] == 1


async def test_fake_rejects_what_youtube_rejects(fake_yt, client: httpx.AsyncClient) -> None:
    url = fake_yt.base_url + "/youtube/v3/channels"
    base = {"part": "statistics", "key": API_KEY}
    too_many = ",".join(f"UCfake{i:018d}" for i in range(51))

    both = await client.get(url, params={**base, "id": GOOGLE_DEV, "forHandle": "@x"})
    assert (both.status_code, both.json()["error"]["errors"][0]["reason"]) == (
        400,
        "incompatibleParameters",
    )
    assert (await client.get(url, params={**base, "id": too_many})).status_code == 400
    assert (
        await client.get(url, params={"part": "statistics", "id": GOOGLE_DEV})
    ).status_code == 403
    assert (await client.get(url, params={"key": API_KEY, "id": GOOGLE_DEV})).status_code == 400
