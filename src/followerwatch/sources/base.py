"""The Source protocol, the SourceSpec every platform declares, and the HttpSource base."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from re import Pattern
from typing import Any, Protocol, TypedDict, Unpack

import httpx

from followerwatch.clock import Clock
from followerwatch.config.base import PlatformConfig
from followerwatch.models import Account, FetchResult
from followerwatch.net.ratelimit import BudgetShare
from followerwatch.sources.common import DEFAULT_LIMITS, RateParser, ReadLimits, Requester

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
# The settings every HTTP source takes from its config model, whose defaults are its own.
TUNED_FIELDS = ("max_wait", "max_backoff")


@dataclass(frozen=True)
class SourceContext:
    """What the composition root hands every source builder."""

    client: httpx.AsyncClient
    clock: Clock
    # A folder the source may keep small files in (e.g. a daily quota ledger); it survives restarts.
    state_dir: Path
    # The budget this process shares with other replicas on the same credentials (None: alone).
    share: BudgetShare | None = None


class Source(Protocol):
    """Fetches counts for a batch of accounts; raises SourceError subclasses, never logs.

    Its batch size, handle syntax and budget are its platform's SourceSpec.
    """

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult: ...


@dataclass(frozen=True)
class SourceSpec:
    """What the rest of the service needs to know about a platform, declared once by its module."""

    key: str
    title: str
    config_model: type[PlatformConfig]
    build: Callable[[Any, SourceContext], Source]
    batch_max: int
    handle_pattern: Pattern[str]
    # (requests, per seconds) the platform allows one credential; None when it publishes none.
    rate_limit_ceiling: tuple[int, float] | None
    # Accounts that must be fetched apart (e.g. each Mastodon instance) get different keys.
    group_key: Callable[[Account], str] | None = None
    # Count requests one batch of N accounts costs under a config, when not 1.
    requests_per_batch: Callable[[Any, int], int] | None = None
    # The ceiling under a config, when it depends on it (a token, a quota).
    ceiling_for: Callable[[Any], tuple[int, float] | None] | None = None
    # How errors name the platform, when not by its title.
    error_name: str = ""

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(f"source key {self.key!r} is not a lowercase identifier")
        if not self.title:
            raise ValueError(f"source {self.key} has no title")
        if self.batch_max < 1:
            raise ValueError(f"source {self.key}: batch_max {self.batch_max} is below 1")
        pattern = self.handle_pattern.pattern
        if not (pattern.startswith("^") and pattern.endswith("$")):
            # An unanchored pattern would pass any handle that merely contains a valid one.
            raise ValueError(f"source {self.key}: handle_pattern must be anchored with ^ and $")
        if self.rate_limit_ceiling is not None and min(self.rate_limit_ceiling) <= 0:
            raise ValueError(f"source {self.key}: rate_limit_ceiling must be positive")
        missing = [n for n in TUNED_FIELDS if n not in self.config_model.model_fields]
        if missing:
            raise ValueError(f"source {self.key}: its config model lacks {', '.join(missing)}")

    @property
    def says(self) -> str:
        """The platform's name in error messages."""
        return self.error_name or self.title

    def default(self, name: str) -> float:
        """A tuned setting's default (see TUNED_FIELDS): the config model's, so both agree."""
        return float(self.config_model.model_fields[name].default)


class Tuning(TypedDict, total=False):
    """How long a source may wait for its budget, what one request may cost, and whom it
    shares its credential's budget with."""

    max_wait: float
    max_backoff: float
    limits: ReadLimits
    share: BudgetShare


class Tuned(Protocol):
    """A platform config with the settings every HTTP source takes."""

    @property
    def max_wait(self) -> float: ...

    @property
    def max_backoff(self) -> float: ...


def tuning(config: Tuned, ctx: SourceContext | None = None) -> Tuning:
    """The Tuning a config asks for, with the context's budget share, for a builder to pass on."""
    tuned: Tuning = {"max_wait": config.max_wait, "max_backoff": config.max_backoff}
    if ctx is not None and ctx.share is not None:
        tuned["share"] = ctx.share
    return tuned


class HttpSource:
    """What every HTTP source shares: its platform's spec, its clock, and one Requester."""

    def __init__(
        self,
        spec: SourceSpec,
        client: httpx.AsyncClient,
        clock: Clock,
        parse_rate: RateParser,
        **settings: Unpack[Tuning],
    ) -> None:
        self.spec = spec
        self._clock = clock
        self._requester = Requester(
            client,
            clock,
            spec.says,
            parse_rate,
            settings.get("max_wait", spec.default("max_wait")),
            limits=settings.get("limits", DEFAULT_LIMITS),
            max_backoff=settings.get("max_backoff", spec.default("max_backoff")),
            share=settings.get("share"),
        )
