"""Synthetic follower counts for the unusual rule's tests: trend, daily and weekly cycles, t noise.

The count's change per hour is the account's typical rate r(t) (a trend from `rate` growing by
`trend` per year) times a daily cycle of ±`daily` and a weekly cycle of ±`weekly`. Each poll's
change carries Student-t noise (3 degrees of freedom) scaled to `noise` × the typical change over
the poll. Waves replace the rate by −`size` × the typical absolute rate for a few hours; spikes
are single readings off by a few percent that the next poll undoes (a platform glitch).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

START = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = 3600.0
DAY = 86_400.0


@dataclass(frozen=True)
class Wave:
    """A campaign: from `start` (seconds after START) for `hours`, at −`size` × the typical rate."""

    start: float
    hours: float
    size: float


@dataclass
class Series:
    """Readings (time, count) and what was put into them."""

    readings: list[tuple[datetime, int]]
    waves: list[Wave] = field(default_factory=list)
    every: float = 0.0


def student_t3(rng: random.Random) -> float:
    """A Student-t draw with 3 degrees of freedom."""
    chi2 = sum(rng.gauss(0.0, 1.0) ** 2 for _ in range(3))
    return rng.gauss(0.0, 1.0) / math.sqrt(chi2 / 3)


def generate(
    seed: int,
    *,
    days: float,
    every: float,
    rate: float = 1000.0,
    trend: float = 0.5,
    daily: float = 0.5,
    weekly: float = 0.0,
    noise: float = 0.25,
    waves: list[Wave] | None = None,
    spikes: int = 0,
    start_count: int = 1_000_000,
) -> Series:
    """A series polled every `every` seconds for `days` days (see the module docstring)."""
    rng = random.Random(seed)
    phase = rng.uniform(0, 2 * math.pi)
    waves = waves or []
    n = int(days * DAY / every)
    spike_at = set(rng.sample(range(10, n), spikes)) if spikes else set()
    count = float(start_count)
    readings = [(START, start_count)]
    for i in range(1, n + 1):
        t0, t1 = (i - 1) * every, i * every
        mid = (t0 + t1) / 2
        typical = rate * (1 + trend * mid / (365 * DAY))
        cycle = 1 + daily * math.sin(2 * math.pi * mid / DAY + phase)
        cycle *= 1 + weekly * math.sin(2 * math.pi * mid / (7 * DAY))
        per_hour = typical * cycle
        for wave in waves:
            if wave.start <= mid < wave.start + wave.hours * HOUR:
                per_hour = -wave.size * abs(typical)
        hours = every / HOUR
        count += per_hour * hours + student_t3(rng) * noise * abs(typical) * hours
        shown = round(count)
        if i in spike_at:
            shown -= round(abs(count) * rng.uniform(0.01, 0.05)) * rng.choice((-1, 1))
        readings.append((START + timedelta(seconds=t1), shown))
    return Series(readings, waves, every)


def random_waves(seed: int, days: float, count: int, first_day: float = 4.0) -> list[Wave]:
    """`count` waves at random whole hours after `first_day`, at least two days apart."""
    rng = random.Random(seed)
    waves: list[Wave] = []
    day = first_day
    span = (days - first_day - 1) / count
    for k in range(count):
        hour = int((day + rng.uniform(0, max(span - 2, 0.1))) * 24)
        waves.append(Wave(hour * HOUR, rng.uniform(3, 12), 10.0 if k % 2 == 0 else 20.0))
        day += span
    return waves


def rounded(count: int, figures: int = 3) -> tuple[int, int]:
    """YouTube's display: a count rounded down to 3 significant figures, and its step."""
    if count < 1000:
        return count, 1
    step = 10 ** (len(str(abs(count))) - figures)
    return count // step * step, step
