"""`followerwatch_thresholds`: each account's configured threshold lines as points (for Grafana).

The Account dashboard draws these as lines next to the follower count, and the Overview shows the
distance to each account's nearest line, so the lines always come from the watchlist and never
from hand edits in Grafana. Schema (documented in the README):

- tags: `platform`, `account` (as on `followers`), `rule` (the rule's name, e.g. "below:1000000",
  the same string as the `rule` tag of `followerwatch_events`) and `direction` (`below`/`above`);
- fields: `value` (integer, the line) and, on points written next to an observation,
  `distance` (integer, followers − value: positive above the line, negative below it);
- time: the observation's time (or the time given).

InfluxQL cannot join two measurements, which is why `distance` is stored rather than computed
in the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from followerwatch.models import Account, FieldValue, Observation, Point
from followerwatch.store.lineprotocol import (
    encode_line,
    int_field,
    line_timestamp,
    series_key,
    tag_value,
)

THRESHOLDS = "followerwatch_thresholds"

# (platform, account name) → the account's lines as (direction, value), below first, in order.
Lines = Mapping[tuple[str, str], Sequence[tuple[str, int]]]


class LineKeys(Protocol):
    """The rule keys the lines come from (config's RuleDefaults has them)."""

    @property
    def below(self) -> Sequence[int] | None: ...

    @property
    def above(self) -> Sequence[int] | None: ...


class Watched(Protocol):
    """What the lines are read from: the loaded config (config sits above store, so a Protocol)."""

    @property
    def accounts(self) -> Sequence[Account]: ...

    @property
    def rules(self) -> Mapping[tuple[str, str], LineKeys]: ...


class ThresholdLines:
    """The watched accounts' lines as now configured: replaced on a reload, read at each use."""

    def __init__(self, lines: Lines | None = None) -> None:
        self._lines: Lines = lines or {}

    def set(self, lines: Lines) -> None:
        """Take a (reloaded) watchlist's lines."""
        self._lines = lines

    def current(self) -> Lines:
        """Every account's lines."""
        return self._lines

    def of(self, platform: str, account: str) -> Sequence[tuple[str, int]]:
        """One account's lines (none when it has none)."""
        return self._lines.get((platform, account), ())


def threshold_lines(config: Watched) -> dict[tuple[str, str], tuple[tuple[str, int], ...]]:
    """Every watched account's resolved `below` and `above` lines (its own or its platform's)."""
    out: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {}
    # Accounts mostly share their lines: one tuple per distinct set, not one per account.
    shared: dict[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]] = {}
    for account in config.accounts:
        rules = config.rules.get(account.key)
        if rules is None:
            continue
        lines = [("below", v) for v in rules.below or ()]
        lines += [("above", v) for v in rules.above or ()]
        if lines:
            unique = tuple(dict.fromkeys(lines))
            out[account.key] = shared.setdefault(unique, unique)
    return out


def threshold_point(
    platform: str,
    account: str,
    direction: str,
    value: int,
    time: datetime,
    followers: int | None = None,
) -> Point:
    """One line of one account; with `followers`, also its signed `distance` from the line."""
    fields: list[tuple[str, FieldValue]] = [("value", value)]
    if followers is not None:
        fields.append(("distance", followers - value))
    return Point(THRESHOLDS, _tags(platform, account, direction, value), tuple(fields), time)


def _tags(platform: str, account: str, direction: str, value: int) -> tuple[tuple[str, str], ...]:
    return (
        ("platform", platform),
        ("account", account),
        ("rule", f"{direction}:{value}"),
        ("direction", direction),
    )


def threshold_points(
    config: Watched, time: datetime, accounts: Iterable[Account] | None = None
) -> list[Point]:
    """The lines of every watched account (or of `accounts`) at `time`, field `value` only."""
    lines = threshold_lines(config)
    keys = list(lines) if accounts is None else [a.key for a in accounts]
    return [
        threshold_point(platform, name, direction, value, time)
        for platform, name in keys
        for direction, value in lines.get((platform, name), ())
    ]


def observation_threshold_points(lines: Lines, observations: Iterable[Observation]) -> list[Point]:
    """For each observation, its account's lines at the observation's time, with `distance`.

    Written next to the observations' own points, they keep each line drawn wherever the count
    is, and give the Overview the distance to the nearest line.
    """
    return [
        threshold_point(key[0], key[1], direction, value, obs.time, obs.followers)
        for obs in observations
        for key in (obs.account.key,)
        for direction, value in lines.get(key, ())
    ]


def observation_threshold_lines(lines: Lines, obs: Observation, precision: str) -> list[str]:
    """`observation_threshold_points` of one observation, encoded without Point objects."""
    platform, name = key = obs.account.key
    out = []
    for direction, value in lines.get(key, ()):
        rendered = int_field(value)
        distance = int_field(obs.followers - value)
        # Empty or very long names (the series-key size limit) take the general path.
        suffix = _series_suffix(platform, direction, value) if 0 < len(name) < 1000 else None
        if rendered is None or distance is None or suffix is None:
            out.append(
                encode_line(
                    THRESHOLDS,
                    _tags(platform, name, direction, value),
                    (("value", value), ("distance", obs.followers - value)),
                    obs.time,
                    precision,
                )
            )
            continue
        out.append(
            f"{THRESHOLDS},account={tag_value(name)}{suffix} value={rendered},distance={distance}"
            f" {line_timestamp(obs.time, precision)}"
        )
    return out


@lru_cache(maxsize=1024)
def _series_suffix(platform: str, direction: str, value: int) -> str | None:
    """The series key after the account tag (the same for every account), or None if unusual."""
    if not platform or not direction:
        return None
    # series_key of the tags with a stand-in account gives the exact escaping of the rest.
    head = series_key(THRESHOLDS, _tags(platform, "a", direction, value))
    prefix = f"{THRESHOLDS},account=a,"
    if not head.startswith(prefix):
        return None
    return "," + head[len(prefix) :]
