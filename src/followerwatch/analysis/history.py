"""`followerwatch history`: one account's counts from InfluxDB, per day, as a sparkline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from followerwatch.store.influx_v1 import InfluxV1Store, quote_literal

BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Day:
    """One UTC day of readings; `change` is against the previous day's last reading."""

    day: date
    first: int
    last: int
    low: int
    high: int
    readings: int
    change: int


async def fetch(
    store: InfluxV1Store, platform: str, account: str, since: datetime
) -> list[tuple[datetime, int]]:
    """(time, followers) of one account since `since`, oldest first."""
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    series = await store.query(
        "SELECT followers FROM followers WHERE platform = "
        f"{quote_literal(platform)} AND account = {quote_literal(account)} "
        f"AND time >= {quote_literal(stamp)}",
        epoch="s",
    )
    rows = [
        (datetime.fromtimestamp(int(t), UTC), int(v))
        for s in series
        for t, v in s["values"]
        if v is not None
    ]
    return sorted(rows)


def per_day(history: Sequence[tuple[datetime, int]]) -> list[Day]:
    """Group readings by UTC day; the net change of a day is its last minus the day before's."""
    days: list[Day] = []
    by_day: dict[date, list[int]] = {}
    for when, value in history:
        by_day.setdefault(when.astimezone(UTC).date(), []).append(value)
    previous: int | None = None
    for day in sorted(by_day):
        values = by_day[day]
        base = values[0] if previous is None else previous
        days.append(
            Day(
                day, values[0], values[-1], min(values), max(values), len(values), values[-1] - base
            )
        )
        previous = values[-1]
    return days


def sparkline(values: Sequence[int], width: int = 60) -> str:
    """The values as block characters, averaged down to at most `width` columns."""
    if not values:
        return ""
    if len(values) > width:
        size = len(values) / width
        buckets = [values[int(i * size) : int((i + 1) * size)] for i in range(width)]
        series = [sum(b) / len(b) for b in buckets if b]
    else:
        series = [float(v) for v in values]
    low, high = min(series), max(series)
    if high == low:
        return BARS[len(BARS) // 2] * len(series)
    scale = (len(BARS) - 1) / (high - low)
    return "".join(BARS[round((v - low) * scale)] for v in series)
