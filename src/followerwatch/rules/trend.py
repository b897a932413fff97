"""When will an account reach its nearest threshold? A Theil–Sen fit over a recent window.

Theil–Sen (the median of the slopes between every pair of readings) shrugs off the odd spike or
glitch that would drag a least-squares line. Its own spread says whether the trend means
anything: when too few pairs agree on the direction, there is no projection, and the reason says
so instead of a made-up date.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from followerwatch.models import NoProjection, Projection, format_eta, plural

DAY = 86_400.0


@dataclass(frozen=True)
class Fit:
    """A robust trend: followers per second, and how many pairs of readings agree with its sign."""

    slope: float
    agreement: float
    points: int


class MilestoneLadder(Protocol):
    """What a projection needs of a milestone rule: a ladder (`every`) or a list (`levels`)."""

    @property
    def every(self) -> int | None: ...

    @property
    def levels(self) -> Sequence[int]: ...


def milestone_lines(ladder: MilestoneLadder | None, count: int) -> list[tuple[str, int]]:
    """The milestones next to `count` as lines: the next one up, and the one it would fall below."""
    if ladder is None:
        return []
    if ladder.every:
        up, down = (count // ladder.every + 1) * ladder.every, count // ladder.every * ladder.every
        return [("above", up)] + ([("below", down)] if down > 0 else [])
    above = [m for m in ladder.levels if m > count]
    below = [m for m in ladder.levels if m <= count]
    lines = [("above", min(above))] if above else []
    return lines + ([("below", max(below))] if below else [])


def theil_sen(samples: Sequence[tuple[float, float]]) -> Fit:
    """The median pairwise slope of (x, y) samples and the share of pairs sharing its sign."""
    slopes = [
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(samples)
        for x2, y2 in samples[i + 1 :]
        if x2 != x1
    ]
    if not slopes:
        return Fit(0.0, 0.0, len(samples))
    slope = statistics.median(slopes)
    sign = (slope > 0) - (slope < 0)
    agree = sum(1 for s in slopes if sign and (s > 0) - (s < 0) == sign)
    return Fit(slope, agree / len(slopes), len(samples))


def fit_window(
    history: Sequence[tuple[datetime, int]],
    window: float = DAY,
    max_points: int = 300,
) -> Fit:
    """Theil–Sen over the readings in the `window` seconds up to the last one (thinned evenly)."""
    if not history:
        return Fit(0.0, 0.0, 0)
    end = history[-1][0]
    start = end - timedelta(seconds=window)
    recent = [(t, v) for t, v in history if t >= start]
    if len(recent) > max_points:
        # Pairs grow with the square of the points; an even thinning keeps the shape.
        step = len(recent) / max_points
        recent = [recent[int(i * step)] for i in range(max_points)] + [recent[-1]]
    samples = [((t - start).total_seconds(), float(v)) for t, v in recent]
    return theil_sen(samples)


def project(
    history: Sequence[tuple[datetime, int]],
    lines: Sequence[tuple[str, int]],
    *,
    milestones: Sequence[tuple[str, int]] = (),
    window: float = DAY,
    min_points: int = 5,
    min_agreement: float = 0.7,
    horizon: float = 365 * DAY,
) -> Projection | NoProjection:
    """Estimate when the count reaches its nearest line (or milestone) in the trend's direction."""
    if not lines and not milestones:
        return NoProjection("no threshold or milestone is configured")
    if not history:
        return NoProjection("no readings yet")
    fit = fit_window(history, window, max_points=300)
    span = _span(window)
    if fit.points < min_points:
        return NoProjection(
            f"only {plural(fit.points, 'reading')} in the last {span} (need {min_points})"
        )
    when, current = history[-1]
    if fit.slope == 0:
        return NoProjection(f"the count has been flat over the last {span}")
    if fit.agreement < min_agreement:
        return NoProjection(
            f"the trend over the last {span} is too noisy to project "
            f"(only {fit.agreement:.0%} of pairs of readings agree on its direction)"
        )
    marked = [(d, v, False) for d, v in lines] + [(d, v, True) for d, v in milestones]
    ahead = [
        (d, v, m)
        for d, v, m in marked
        if (d == "below" and current >= v) or (d == "above" and current < v)
    ]
    if not ahead:
        return NoProjection("the count is already past every line")
    toward = [(d, v, m) for d, v, m in ahead if (d == "below") == (fit.slope < 0)]
    per_day = fit.slope * DAY
    if not toward:
        return NoProjection(f"the trend ({per_day:+,.0f}/day) points away from every line")
    direction, line, milestone = min(toward, key=lambda dvm: abs(current - dvm[1]))
    seconds = abs(current - line) / abs(fit.slope)
    if seconds > horizon:
        return NoProjection(
            f"at the current rate ({per_day:+,.0f}/day) {line:,} is more than "
            f"{format_eta(horizon)} away"
        )
    return Projection(
        direction,
        line,
        seconds,
        when + timedelta(seconds=seconds),
        per_day,
        fit.agreement,
        milestone,
    )


def _span(window: float) -> str:
    return format_eta(window)
