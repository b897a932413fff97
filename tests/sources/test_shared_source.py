"""What the platform modules share: SourceSpec, the registry of specs, HttpSource, helpers."""

from __future__ import annotations

import dataclasses
import importlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from followerwatch.clock import ManualClock
from followerwatch.config.base import PlatformConfig
from followerwatch.config.fields import Duration
from followerwatch.errors import AuthError, RateLimitedError, SourceError, TransientError
from followerwatch.models import Account, Failure, FailureKind, Observation
from followerwatch.sources import REGISTRY, SPECS, registry
from followerwatch.sources.base import HttpSource, SourceSpec, tuning
from followerwatch.sources.common import (
    ReadLimits,
    no_rate_headers,
    one_by_one,
    rate_headers,
    screen,
    secret,
)
from followerwatch.sources.http_json import HttpJsonSource
from followerwatch.sources.twitch import TwitchConfig
from followerwatch.sources.x import SPEC as X_SPEC
from followerwatch.sources.x import XConfig, XSource

START = datetime(2026, 1, 1, tzinfo=UTC)


class _Config(PlatformConfig):
    """A minimal platform config."""

    max_wait: Duration = 42.0


def _build(config: Any, ctx: Any) -> Any:
    raise NotImplementedError


def _spec(**changes: Any) -> SourceSpec:
    fields: dict[str, Any] = {
        "key": "demo",
        "title": "Demo",
        "config_model": _Config,
        "build": _build,
        "batch_max": 10,
        "handle_pattern": re.compile(r"^[a-z]+$"),
        "rate_limit_ceiling": (60, 60.0),
    }
    fields.update(changes)
    return SourceSpec(**fields)


def acct(handle: str) -> Account:
    return Account(platform="demo", handle=handle, name=handle)


# --- SourceSpec ---


def test_a_valid_spec_names_the_platform_by_title_unless_told_otherwise() -> None:
    assert _spec().says == "Demo"
    assert _spec(error_name="demo_api").says == "demo_api"
    assert REGISTRY["http_json"].says == "http_json"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"key": "Demo"}, "lowercase identifier"),
        ({"key": "my-source"}, "lowercase identifier"),
        ({"title": ""}, "no title"),
        ({"batch_max": 0}, "below 1"),
        ({"handle_pattern": re.compile(r"[a-z]+")}, "anchored"),
        ({"handle_pattern": re.compile(r"^[a-z]+")}, "anchored"),
        ({"rate_limit_ceiling": (0, 60.0)}, "positive"),
        ({"rate_limit_ceiling": (60, -1.0)}, "positive"),
        ({"config_model": PlatformConfig}, "lacks max_wait"),
    ],
)
def test_a_spec_refuses_what_the_service_could_not_use(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**changes)


def test_a_spec_is_a_frozen_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        X_SPEC.batch_max = 1  # type: ignore[misc]


def test_tuned_defaults_are_the_config_models() -> None:
    assert _spec().default("max_wait") == 42.0
    # max_backoff is inherited from PlatformConfig unless the platform overrides it.
    assert _spec().default("max_backoff") == PlatformConfig().max_backoff
    assert REGISTRY["twitch"].default("max_wait") == TwitchConfig().max_wait == 120.0
    assert REGISTRY["twitch"].default("max_backoff") == TwitchConfig().max_backoff == 60.0


# --- the registry ---


def test_the_registry_is_every_module_spec_by_key_in_order() -> None:
    assert list(REGISTRY) == [spec.key for spec in SPECS]
    for key, spec in REGISTRY.items():
        module = importlib.import_module(f"followerwatch.sources.{key}")
        assert module.SPEC is spec


def test_registry_refuses_two_specs_with_one_key() -> None:
    assert registry((_spec(), _spec(key="other"))).keys() == {"demo", "other"}
    with pytest.raises(ValueError, match="'demo'"):
        registry((_spec(), _spec(title="Demo again")))


# --- HttpSource and tuning ---


async def test_a_source_built_without_settings_takes_its_config_defaults() -> None:
    clock = ManualClock(START)
    async with httpx.AsyncClient() as client:
        plain = XSource(client, bearer_token="t", clock=clock)
        tuned = XSource(
            client,
            bearer_token="t",
            clock=clock,
            max_wait=5.0,
            max_backoff=7.0,
            limits=ReadLimits(9),
        )
    assert isinstance(plain, HttpSource) and plain.spec is X_SPEC
    assert plain._requester.max_wait == XConfig().max_wait
    assert plain._requester.max_backoff == XConfig().max_backoff
    assert plain._requester.platform == "X"
    assert (tuned._requester.max_wait, tuned._requester.max_backoff) == (5.0, 7.0)
    assert tuned._requester.limits == ReadLimits(9)


async def test_http_json_errors_name_it_by_its_key() -> None:
    async with httpx.AsyncClient() as client:
        source = HttpJsonSource(
            client, clock=ManualClock(START), url="http://h/{handle}", count_path="n"
        )
    assert source._requester.platform == "http_json"


def test_tuning_passes_on_the_config_settings() -> None:
    config = XConfig(max_wait="2m", max_backoff="10m")
    assert tuning(config) == {"max_wait": 120.0, "max_backoff": 600.0}


# --- common helpers ---


def test_rate_headers_read_each_reset_format() -> None:
    now = START
    stamp = int((now + timedelta(minutes=5)).timestamp())
    epoch = httpx.Headers({"x-limit": "100", "x-remaining": "7", "x-reset": str(stamp)})
    rl = rate_headers("x-")(epoch, now)
    assert rl is not None and (rl.limit, rl.remaining) == (100, 7)
    assert rl.reset_at == now + timedelta(minutes=5)
    seconds = httpx.Headers({"x-limit": "100", "x-remaining": "7", "x-reset": "30"})
    rl = rate_headers("x-", "seconds")(seconds, now)
    assert rl is not None and rl.reset_at == now + timedelta(seconds=30)
    iso = httpx.Headers({"x-remaining": "0", "x-reset": "2026-01-01T00:10:00Z"})
    rl = rate_headers("x-", "iso")(iso, now)
    assert rl is not None and rl.reset_at == now + timedelta(minutes=10)
    assert rate_headers("y-")(epoch, now) is None
    assert no_rate_headers(epoch, now) is None


def test_secret_is_empty_when_unset() -> None:
    assert secret(None) == ""
    assert secret(SecretStr("")) == ""
    assert secret(SecretStr("s3cret")) == "s3cret"


def test_screen_keeps_order_once_and_refuses_what_does_not_fit() -> None:
    clock = ManualClock(START)
    ok, bad = acct("alice"), acct("Bob!")
    order, valid, refused = screen([ok, bad, ok], lambda a: a.handle.isalpha(), "no", clock)
    assert order == [ok, bad] and valid == [ok]
    assert refused == {bad: Failure(bad, START, FailureKind.NOT_FOUND, "no")}


def _unanswered(account: Account, when: datetime, exc: Exception) -> Failure:
    return Failure(account, when, FailureKind.NOT_RETURNED, f"lookup failed: {exc}")


async def _one_by_one(failing: str, error: SourceError) -> tuple[list[str], Any, Any]:
    """Ask a, b and c in turn where `failing` raises `error`: what was asked, and the result."""
    accounts = [acct(h) for h in ("a", "b", "c")]
    asked: list[str] = []

    async def ask(account: Account) -> Observation:
        asked.append(account.handle)
        if account.handle == failing:
            raise error
        return Observation(account, START, 10)

    found, first = await one_by_one(accounts, ask, _unanswered, ManualClock(START))
    return asked, [found[a] for a in accounts], first


async def test_one_by_one_costs_a_failure_only_its_own_account() -> None:
    asked, found, first = await _one_by_one("b", TransientError("HTTP 502"))
    assert asked == ["a", "b", "c"] and isinstance(first, TransientError)
    assert [type(o) for o in found] == [Observation, Failure, Observation]
    assert found[1].detail == "lookup failed: HTTP 502"


async def test_one_by_one_stops_asking_after_a_rate_limit() -> None:
    asked, found, first = await _one_by_one("a", RateLimitedError("slow down"))
    assert asked == ["a"] and isinstance(first, RateLimitedError)
    assert [o.kind for o in found] == [FailureKind.NOT_RETURNED] * 3


async def test_one_by_one_raises_auth_errors() -> None:
    with pytest.raises(AuthError):
        await _one_by_one("b", AuthError("bad token"))
