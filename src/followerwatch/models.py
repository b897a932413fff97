"""Frozen values the pipeline passes on: accounts, observations, failures, events, projections."""

from __future__ import annotations

from collections.abc import Callable, Hashable, ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeGuard, TypeVar

# The largest count followerwatch stores: exact in JSON, in Grafana and in a float (2^53 - 1).
MAX_COUNT = 2**53 - 1


def at_handle(handle: str) -> str:
    """A handle as messages show it: with one leading "@" (YouTube handles already carry one)."""
    return handle if handle.startswith("@") else f"@{handle}"


@dataclass(frozen=True, slots=True)
class Account:
    """One watched account: `name` is the stable `account` tag, `handle` what the platform knows."""

    platform: str
    handle: str
    name: str
    platform_id: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    # The identity used for state: (platform, name). Built once and kept, so that every
    # per-account dict keyed by it shares this one tuple (56 bytes an account, per dict).
    key: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.platform, self.name))


@dataclass(frozen=True, slots=True)
class Observation:
    """A successful reading of one account at one poll time (UTC, timezone-aware)."""

    account: Account
    time: datetime
    followers: int
    following: int | None = None
    posts: int | None = None
    platform_id: str | None = None
    handle: str | None = None
    # The granularity of `followers` when the platform rounds it (YouTube: 3 significant figures).
    resolution: int | None = None


class FailureKind(StrEnum):
    """Why one account in an otherwise answered batch has no observation."""

    NOT_FOUND = "not_found"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"
    FORBIDDEN = "forbidden"
    HIDDEN = "hidden"
    NOT_RETURNED = "not_returned"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Failure:
    """A per-account failure inside a batch; never read as a count of zero."""

    account: Account
    time: datetime
    kind: FailureKind
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """What the platform said about the caller's remaining budget after a request."""

    limit: int | None
    remaining: int | None
    reset_at: datetime | None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What a source returns for one batch."""

    observations: tuple[Observation, ...] = ()
    failures: tuple[Failure, ...] = ()
    requests: int = 0
    rate_limit: RateLimit | None = None


def is_count(value: object) -> TypeGuard[int]:
    """True for an int in 0 … MAX_COUNT; bool is an int subclass, and True is not one follower."""
    return type(value) is int and 0 <= value <= MAX_COUNT


def bounded(result: FetchResult) -> FetchResult:
    """`result` with every observation holding a count outside 0 … MAX_COUNT made MALFORMED.

    The sources' parsers refuse such counts already; this is the net under a source that does
    not, so no such number reaches SQLite (OverflowError past 2^63) or InfluxDB.
    """
    bad = [
        o
        for o in result.observations
        if not is_count(o.followers)
        or any(v is not None and not is_count(v) for v in (o.following, o.posts))
    ]
    if not bad:
        return result
    failures = tuple(
        Failure(o.account, o.time, FailureKind.MALFORMED, "a count outside 0 … 2^53 - 1")
        for o in bad
    )
    return replace(
        result,
        observations=tuple(o for o in result.observations if o not in bad),
        failures=result.failures + failures,
    )


class EventKind(StrEnum):
    """What happened; the `kind` tag of `followerwatch_events`."""

    DROPPED_BELOW = "dropped_below"
    CROSSED_ABOVE = "crossed_above"
    BACK_ABOVE = "back_above"
    BACK_BELOW = "back_below"
    MILESTONE = "milestone"
    MILESTONE_DOWN = "milestone_down"
    WINDOW_DROP = "window_drop"
    WINDOW_RISE = "window_rise"
    WINDOW_CLEARED = "window_cleared"
    STALE = "stale"
    STALE_RECOVERED = "stale_recovered"
    FROZEN = "frozen"
    UNFROZEN = "unfrozen"
    NOT_FOUND = "not_found"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"
    COUNT_HIDDEN = "count_hidden"
    REAPPEARED = "reappeared"
    RENAMED = "renamed"
    TEST = "test"
    INFLUXDB_AUTH = "influxdb_auth"
    INFLUXDB_OK = "influxdb_ok"
    SPOOL_OVERFLOW = "spool_overflow"
    APPROACHING = "approaching"
    CAMPAIGN_STARTED = "campaign_started"
    CAMPAIGN_ENDED = "campaign_ended"
    CAMPAIGN_REPORT = "campaign_report"
    UNUSUAL_DROP = "unusual_drop"
    UNUSUAL_RISE = "unusual_rise"
    UNUSUAL_CLEARED = "unusual_cleared"


class EventStatus(StrEnum):
    """`firing` opens a condition, `resolved` closes it, `once` stands alone (a milestone)."""

    FIRING = "firing"
    RESOLVED = "resolved"
    ONCE = "once"


class Severity(StrEnum):
    """How loud an event is; routes and Alertmanager use it."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


# Where a count is heading: a value an Event carries, so it sits here; rules/trend.py computes it.
@dataclass(frozen=True)
class Projection:
    """The trend reaches `line` (`direction` below/above) `seconds` after the last reading."""

    direction: str
    line: int
    seconds: float
    at: datetime
    per_day: float
    agreement: float
    milestone: bool = False

    def message(self, who: str | None = None) -> str:
        """'at the current rate @x drops below 1,000,000 in about 3 d 4 h' (or "the count")."""
        verb = "drops below" if self.direction == "below" else "reaches"
        target = f"the {self.line:,} milestone" if self.milestone else f"{self.line:,}"
        return (
            f"at the current rate {who or 'the count'} {verb} {target} "
            f"in about {format_eta(self.seconds)}"
        )


@dataclass(frozen=True)
class NoProjection:
    """Why there is no estimate (too little data, a poor fit, a trend pointing away…)."""

    reason: str

    def message(self, who: str | None = None) -> str:
        """'no projection for @x: …' (or 'no projection: …' under a heading that names it)."""
        return f"no projection for {who}: {self.reason}" if who else f"no projection: {self.reason}"


def plural(count: int, noun: str) -> str:
    """'1 reading', '2 readings'."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def signed(value: float, spec: str = ",.0f") -> str:
    """`value` signed, except a zero (as printed) never carries a sign: '+3', '0', '-0.01%'."""
    text = format(abs(value), spec)
    if not any(c in "123456789" for c in text):
        return text
    return ("+" if value > 0 else "-") + text


def format_eta(seconds: float) -> str:
    """'3 d 4 h', '5 h 12 min', '40 min', 'under a minute'."""
    s = int(seconds)
    if s < 60:
        return "under a minute"
    days, rest = divmod(s, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


@dataclass(frozen=True, slots=True)
class Event:
    """An immutable alert-worthy record produced by a rule."""

    id: str
    time: datetime
    platform: str
    account: str
    rule: str
    kind: EventKind
    value: int
    threshold: int
    message: str
    severity: Severity = Severity.WARNING
    status: EventStatus = EventStatus.ONCE
    labels: tuple[tuple[str, str], ...] = ()
    # Where the trend leads next, added by the outbox before the first delivery (see enrich.py).
    projection: Projection | None = None
    # How far outside the account's own normal the change was, in spreads (the `unusual` rule).
    score: float | None = None


FieldValue = int | float | str | bool


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point; ints are written as integers (`i` suffix)."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    time: datetime
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
W = TypeVar("W")
_ABSENT = object()


class ByConfig(Mapping[K, V], Generic[K, V]):
    """A per-account map whose value follows from the account's (shared) config object.

    `configs` maps each account to its config (the watchlist's key → RuleDefaults), `values`
    the id() of a config to its value; an account whose config has no value is not in the map.
    A million accounts with a handful of configs then cost one dict (the configs', shared by
    every such map) instead of one dict each. `configs` keeps every config alive, so their
    ids stay valid; neither mapping may change afterwards.
    """

    __slots__ = ("_configs", "_len", "_values")

    def __init__(self, configs: Mapping[K, object], values: Mapping[int, V]) -> None:
        self._configs = configs
        self._values = values
        self._len: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._values[id(self._configs[key])]

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        """The value of `key`, else `default` (one lookup in each dict, no exception)."""
        config = self._configs.get(key, _ABSENT)
        return default if config is _ABSENT else self._values.get(id(config), default)

    def __contains__(self, key: object) -> bool:
        config = self._configs.get(key, _ABSENT)  # type: ignore[arg-type]
        return config is not _ABSENT and id(config) in self._values

    def __bool__(self) -> bool:
        # No values at all (no account repeats, say): empty without a pass over the accounts.
        return bool(self._values) and next(iter(self), _ABSENT) is not _ABSENT

    def distinct(self) -> Iterable[V]:
        """Each distinct value once (one per config object)."""
        return self._values.values()

    def derive(self, make: Callable[[V], W]) -> ByConfig[K, W]:
        """Another such map: `make` of each value, computed once per distinct config, and
        without the accounts for which it is falsy (0, None, False, empty)."""
        made = {config: found for config, value in self._values.items() if (found := make(value))}
        return ByConfig(self._configs, made)

    def __iter__(self) -> Iterator[K]:
        values = self._values
        return (key for key, config in self._configs.items() if id(config) in values)

    def __len__(self) -> int:
        if self._len is None:
            self._len = sum(1 for _ in self)
        return self._len

    def items(self) -> ItemsView[K, V]:
        """(key, value) pairs, read in one pass over the configs."""
        return _ByConfigItems(self)


class _ByConfigItems(ItemsView[K, V]):
    _mapping: ByConfig[K, V]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        values = self._mapping._values
        for key, config in self._mapping._configs.items():
            value = values.get(id(config), _ABSENT)
            if value is not _ABSENT:
                yield key, value  # type: ignore[misc]
