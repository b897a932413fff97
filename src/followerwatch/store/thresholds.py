"""Each account's threshold lines, for Grafana: `followerwatch_thresholds` and the `distance` field.

The Account dashboard draws the lines next to the follower count, and the Overview shows the
distance to each account's nearest line, so the lines always come from the watchlist and never
from hand edits in Grafana. Schema (documented in the README):

- `followerwatch_thresholds`: tags `platform`, `account` (as on `followers`), `rule` (the rule's
  name, e.g. "below:1000000", the same string as the `rule` tag of `followerwatch_events`) and
  `direction` (`below`/`above`); field `value` (integer, the line); time: the observation's
  time (or the time given). Written with an account's first observation after start-up, with
  its first observation after its lines change (a reload), and then every LINE_REFRESH, so a
  dashboard that looks back LINE_REFRESH before its range always finds each line.
- `distance` (integer, followers − the nearest line's value: positive above the line, negative
  below it; of two lines equally near, the lower one) is a field of the `followers` point of
  accounts that have lines (store/schema.py writes it).

InfluxQL cannot join two measurements, which is why `distance` is stored rather than computed
in the dashboard; it rides on the count (issue 18) so that only the count is written each poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from followerwatch.models import Account, ByConfig, Observation, Point
from followerwatch.store.lineprotocol import (
    encode_line,
    int_field,
    line_timestamp,
    series_key,
    tag_value,
)

THRESHOLDS = "followerwatch_thresholds"
LINE_REFRESH = 4 * 3600.0
"""Seconds between an account's line points: the dashboards look this far before their range."""

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


def threshold_lines(config: Watched) -> Lines:
    """Every watched account's resolved `below` and `above` lines (its own or its platform's).

    Accounts share their rules objects: the lines are worked out once per object, and the map
    is a view of the config's rules (no dict of its own; one tuple per distinct set of lines).
    """
    shared: dict[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]] = {}
    by_rules: dict[int, tuple[tuple[str, int], ...]] = {}
    done: set[int] = set()
    for rules in config.rules.values():
        if id(rules) in done:
            continue
        done.add(id(rules))
        lines = [("below", v) for v in rules.below or ()]
        lines += [("above", v) for v in rules.above or ()]
        if lines:
            unique = tuple(dict.fromkeys(lines))
            by_rules[id(rules)] = shared.setdefault(unique, unique)
    return ByConfig(config.rules, by_rules)


def nearest_distance(followers: int, lines: Sequence[tuple[str, int]]) -> int | None:
    """followers − the nearest line's value (of two equally near, the lower line); None if none."""
    best: int | None = None
    for _, value in lines:
        distance = followers - value
        if best is None or abs(distance) < abs(best):
            best = distance
        elif abs(distance) == abs(best) and distance > best:
            best = distance  # equally near on both sides: the lower line (the count is above it)
    return best


def threshold_point(
    platform: str, account: str, direction: str, value: int, time: datetime
) -> Point:
    """One line of one account at `time` (field `value`)."""
    return Point(THRESHOLDS, _tags(platform, account, direction, value), (("value", value),), time)


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
    """The lines of every watched account (or of `accounts`) at `time`."""
    lines = threshold_lines(config)
    keys = list(lines) if accounts is None else [a.key for a in accounts]
    return [
        threshold_point(platform, name, direction, value, time)
        for platform, name in keys
        for direction, value in lines.get((platform, name), ())
    ]


def observation_threshold_points(lines: Lines, observations: Iterable[Observation]) -> list[Point]:
    """For each observation, its account's lines at the observation's time.

    Only the observations LineSchedule says are due get them: a dashboard finds each line
    within LINE_REFRESH before any count.
    """
    return [
        threshold_point(key[0], key[1], direction, value, obs.time)
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
        # Empty or very long names (the series-key size limit) take the general path.
        suffix = _series_suffix(platform, direction, value) if 0 < len(name) < 1000 else None
        if rendered is None or suffix is None:
            out.append(
                encode_line(
                    THRESHOLDS,
                    _tags(platform, name, direction, value),
                    (("value", value),),
                    obs.time,
                    precision,
                )
            )
            continue
        out.append(
            f"{THRESHOLDS},account={tag_value(name)}{suffix} value={rendered}"
            f" {line_timestamp(obs.time, precision)}"
        )
    return out


class LineSchedule:
    """Which observations carry their account's lines: the first after start-up, the first
    after the lines change, then the first LINE_REFRESH after the last written.

    Time is the observations' own (the time the lines are written at), not the clock's: a
    replay or import runs faster than the clock, and the dashboards look back in data time.
    One dict entry per account with lines (its key and time shared), small at a million.
    """

    def __init__(self, refresh: float = LINE_REFRESH) -> None:
        self.refresh = refresh
        self._written: dict[tuple[str, str], float] = {}  # key → when its lines were last written

    def due(self, lines: Lines, observations: Iterable[Observation]) -> list[Observation]:
        """The observations whose account's lines are written with them (taken as written)."""
        out = []
        written = self._written
        refresh = self.refresh
        # A poll's observations share one time: converted once, not once per observation.
        last_time: datetime | None = None
        when = 0.0
        for obs in observations:
            key = obs.account.key
            if key not in lines:
                continue
            if obs.time is not last_time:
                last_time = obs.time
                when = last_time.timestamp()
            last = written.get(key)
            # A time far behind the last write (a source that started over) counts as due too.
            if last is None or not -refresh < when - last < refresh:
                written[key] = when
                out.append(obs)
        return out

    def changed(self, old: Lines, new: Lines) -> None:
        """Lines reloaded: accounts whose lines differ get them with their next observation."""
        written = self._written
        for key in [k for k in written if old.get(k) != new.get(k)]:
            del written[key]

    def forget(self, observations: Iterable[Observation]) -> None:
        """Their lines were not stored after all (the batch was given up): due again."""
        for obs in observations:
            self._written.pop(obs.account.key, None)


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
