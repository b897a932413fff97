"""Projections for alert messages: where each alerting account's trend leads next.

The outbox calls an `Enricher` once per event, before the event's first delivery attempt, for all
the events of one pass together. `ProjectionEnricher` reads the recent trend of every account
concerned from InfluxDB in ONE InfluxQL query (hourly `last(followers)` over the fit window),
falls back to the local history SQLite keeps for accounts with windowed rules, and projects each
event's account toward its nearest threshold line in the direction of the trend (the next line,
not the one just crossed). Slow or failed reads cost at most `timeout` and never a delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from followerwatch.errors import StoreError
from followerwatch.models import Event, EventKind, EventStatus, Projection
from followerwatch.rules.trend import DAY, project
from followerwatch.store.influx_v1 import quote_literal

log = structlog.get_logger("followerwatch.enrich")

# Events about the count's movement that a projection adds to; resolutions, lifecycle,
# operational and campaign events never get one.
PROJECTED = frozenset(
    {
        EventKind.DROPPED_BELOW,
        EventKind.CROSSED_ABOVE,
        EventKind.WINDOW_DROP,
        EventKind.WINDOW_RISE,
        EventKind.MILESTONE,
        EventKind.MILESTONE_DOWN,
    }
)
BUCKET = 3600.0  # the query's GROUP BY time(1h)

History = list[tuple[datetime, int]]
# (platform, account) → the account's threshold lines as (direction, value), as in thresholds.py.
Lines = Mapping[tuple[str, str], Sequence[tuple[str, int]]]
LocalHistory = Callable[[str, str, datetime], History]


class Reader(Protocol):
    """What the enricher needs of a store: InfluxQL queries (InfluxV1Store has them)."""

    async def query(self, influxql: str, *, epoch: str | None = "s") -> list[dict[str, Any]]: ...


class Enricher(Protocol):
    """Adds projections to events before their first delivery; must not raise for bad data."""

    async def enrich(self, events: Sequence[Event]) -> Mapping[str, Projection]: ...


def wants_projection(event: Event) -> bool:
    """Whether an event is one a projection belongs in (a firing crossing, window or milestone)."""
    return event.kind in PROJECTED and event.status is not EventStatus.RESOLVED


def lines_ahead(lines: Iterable[tuple[str, int]], count: int) -> bool:
    """Whether any line is still ahead of `count` (one it could cross next)."""
    return any((d == "below" and count >= v) or (d == "above" and count < v) for d, v in lines)


def _regex(names: Iterable[str]) -> str:
    # InfluxQL regex literals are Go RE2 between slashes: escape its metacharacters and "/".
    special = set("\\.+*?()|[]{}^$/")
    escaped = ("".join("\\" + c if c in special else c for c in name) for name in names)
    return "/^(?:" + "|".join(escaped) + ")$/"


def _stamp(when: datetime) -> str:
    return quote_literal(when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def trend_query(keys: Iterable[tuple[str, str]], start: datetime, end: datetime) -> str:
    """ONE InfluxQL query: hourly last follower count of every (platform, account) in a range."""
    by_platform: dict[str, list[str]] = {}
    for platform, account in dict.fromkeys(keys):
        by_platform.setdefault(platform, []).append(account)
    where = " OR ".join(
        f"(platform = {quote_literal(p)} AND account =~ {_regex(names)})"
        for p, names in sorted(by_platform.items())
    )
    return (
        f"SELECT last(followers) FROM followers WHERE time > {_stamp(start)}"
        f" AND time <= {_stamp(end)} AND ({where})"
        " GROUP BY time(1h), platform, account fill(none)"
    )


class ProjectionEnricher:
    """Projections from InfluxDB (one query per call), else local history, else none."""

    def __init__(
        self,
        reader: Reader | None,
        lines: Callable[[], Lines],
        *,
        local: LocalHistory | None = None,
        window: float = DAY,
        timeout: float = 1.0,
    ) -> None:
        self._reader = reader
        self._lines = lines
        self._local = local
        self.window = window
        self.timeout = timeout

    async def enrich(self, events: Sequence[Event]) -> dict[str, Projection]:
        """Event id → projection, for the events that have one."""
        table = self._lines()
        wanted = [
            (e, table[(e.platform, e.account)])
            for e in events
            if wants_projection(e)
            and (e.platform, e.account) in table
            and lines_ahead(table[(e.platform, e.account)], e.value)
        ]
        if not wanted:
            return {}
        remote = await self._read([e for e, _ in wanted])
        out: dict[str, Projection] = {}
        for event, lines in wanted:
            result = project(self._history(event, remote), lines, window=self.window)
            if isinstance(result, Projection):
                out[event.id] = result
        return out

    async def _read(self, events: Sequence[Event]) -> dict[tuple[str, str], History]:
        """Hourly readings per account from InfluxDB; {} when it is slow or unreachable."""
        if self._reader is None:
            return {}
        start = min(e.time for e in events) - timedelta(seconds=self.window)
        end = max(e.time for e in events)
        query = trend_query(((e.platform, e.account) for e in events), start, end)
        try:
            series = await asyncio.wait_for(self._reader.query(query), self.timeout)
        except (StoreError, TimeoutError) as exc:
            log.warning("no trend from InfluxDB for alert projections", error=str(exc) or "timeout")
            return {}
        out: dict[tuple[str, str], History] = {}
        for item in series:
            tags = item["tags"]
            key = (str(tags.get("platform", "")), str(tags.get("account", "")))
            out[key] = [
                (datetime.fromtimestamp(int(t), UTC), int(v))
                for t, v in item["values"]
                if v is not None
            ]
        return out

    def _history(self, event: Event, remote: Mapping[tuple[str, str], History]) -> History:
        """The account's readings up to the event, ending with the event's own reading."""
        start = event.time - timedelta(seconds=self.window)
        key = (event.platform, event.account)
        if remote.get(key):
            # A bucket is stamped with its start but holds its last reading: drop the event's
            # own bucket and put the event's reading at its true time instead.
            cut = event.time - timedelta(seconds=BUCKET)
            points = [(t, v) for t, v in remote[key] if start <= t <= cut]
        elif self._local is not None:
            points = [(t, v) for t, v in self._local(*key, start) if t < event.time]
        else:
            points = []
        return [*points, (event.time, event.value)]
