"""What a campaign did to an account: observed change against the trend before it, with a band.

The expected change comes from a Theil–Sen fit over a baseline before the window (optionally
corrected by control accounts that were not targeted, to factor out platform-wide swings). The
band is the spread of the baseline's own changes over spans as long as the window, so "no effect"
means "no different from an ordinary stretch of the same length".
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from followerwatch.models import format_eta, plural, signed
from followerwatch.rules.trend import theil_sen
from followerwatch.store.base import QueryableStore
from followerwatch.store.influx_v1 import quote_literal

Series = Sequence[tuple[datetime, int]]
Z95 = 1.96
# Fewer readings before the window, or readings covering less than half the baseline, and the
# trend is a guess: the report says so instead of printing an expected change.
MIN_BASELINE_READINGS = 5
MIN_BASELINE_SHARE = 0.5


@dataclass(frozen=True)
class Frozen:
    """A stretch inside the window where successful readings showed the same count."""

    start: datetime
    end: datetime
    value: int


@dataclass(frozen=True)
class Impact:
    """The impact report of one target account over one window."""

    who: str
    start: datetime
    end: datetime
    start_count: int
    end_count: int
    observed: int
    expected: float
    band: float
    baseline_per_hour: float
    control_swing: float | None
    hourly: tuple[tuple[datetime, int], ...]
    baseline: float  # the baseline asked for, in seconds before the start
    baseline_readings: int  # readings in it
    baseline_covered: float  # seconds from its first reading to its last
    goal: tuple[str, int] | None = None
    goal_reached_at: datetime | None = None
    frozen: tuple[Frozen, ...] = field(default_factory=tuple)
    # The --to asked for, when the readings end before it (`end` is then the last reading).
    asked_end: datetime | None = None
    readings_inside: int = 1  # readings after the start, up to `end`

    @property
    def effect(self) -> float:
        """Observed minus expected change."""
        return self.observed - self.expected

    @property
    def estimable(self) -> bool:
        """Whether the baseline holds enough readings, long enough, to set an expectation."""
        return (
            self.readings_inside > 0
            and self.baseline_readings >= MIN_BASELINE_READINGS
            and self.baseline_covered >= MIN_BASELINE_SHARE * self.baseline
        )

    @property
    def significant(self) -> bool:
        """Whether the effect lies outside the baseline's normal variation."""
        # The effect as printed (0 ± 0 is no effect), not a fraction of a follower.
        shown = self._rounded(self.observed - self._rounded(self.expected))
        return self.estimable and abs(shown) > self.band

    @property
    def worst_hour(self) -> tuple[datetime, int] | None:
        """The hour with the most negative net change."""
        return min(self.hourly, key=lambda h: h[1]) if self.hourly else None

    def _rounded(self, value: float) -> float:
        """Figures no more precise than the band allows: 17,741 ± 400 reads 17,700."""
        step = 10 ** max(0, len(str(int(self.band))) - 1) if self.band >= 10 else 1
        return float(round(value / step) * step)

    def _round(self, value: float) -> str:
        return f"{abs(self._rounded(value)):,.0f}"

    def verdict(self) -> str:
        """A plain sentence."""
        if not self.readings_inside:
            return (
                f"too little data in the window to say anything of {self.who}: no reading "
                f"after {self.start:%Y-%m-%d %H:%M} UTC"
            )
        if not self.estimable:
            return (
                f"too little data before the window to expect anything of {self.who}: "
                f"{plural(self.baseline_readings, 'reading')} over "
                f"{format_eta(self.baseline_covered)} of the {format_eta(self.baseline)} "
                f"baseline (at least {MIN_BASELINE_READINGS} over "
                f"{format_eta(MIN_BASELINE_SHARE * self.baseline)} needed); observed "
                f"{signed(self.observed)}"
            )
        # Every figure as printed, so the headline and the lines below add up: the effect shown
        # is the observed change minus the expected change shown.
        expected = self._rounded(self.expected)
        effect = self.observed - expected
        exp = "gain" if expected >= 0 else "loss"
        if not self.significant:
            return (
                f"no effect on {self.who} distinguishable from normal variation: "
                f"{signed(self.observed)} against an expected {signed(expected)} "
                f"(± {self._round(self.band)})"
            )
        r = self._round
        if effect < 0:
            return (
                f"the campaign cost {self.who} about {r(effect)} followers "
                f"(± {r(self.band)}) against an expected {exp} of {r(expected)}"
            )
        return (
            f"{self.who} gained about {r(effect)} more followers than expected "
            f"(± {r(self.band)}; expected {exp} of {r(expected)})"
        )

    def lines(self) -> list[str]:
        """The whole report as text lines."""
        out = [
            self.verdict(),
            f"count {self.start_count:,} → {self.end_count:,} ({signed(self.observed)}) from "
            f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC",
        ]
        if self.asked_end is not None and self.readings_inside:
            out.append(
                f"readings end at {self.end:%Y-%m-%d %H:%M} UTC, before --to "
                f"{self.asked_end:%Y-%m-%d %H:%M} UTC: the figures cover the window up to then"
            )
        if self.estimable:
            out.append(
                f"baseline trend {signed(self.baseline_per_hour, ',.1f')}/h; "
                f"expected {signed(self._rounded(self.expected))} (± {self._round(self.band)})"
            )
        if self.control_swing is not None:
            swing = signed(self.control_swing, ".2%")
            out.append(f"control accounts moved {swing} against their trend")
        worst = self.worst_hour
        if worst is not None:
            trend = f" (baseline {signed(self.baseline_per_hour)}/h)" if self.estimable else ""
            out.append(f"worst hour {worst[0]:%Y-%m-%d %H:00}: {signed(worst[1])}{trend}")
        if self.goal is not None:
            direction, line = self.goal
            when = (
                f"reached at {self.goal_reached_at:%Y-%m-%d %H:%M} UTC"
                if self.goal_reached_at
                else "not reached"
            )
            out.append(f"goal {direction} {line:,}: {when}")
        for stretch in self.frozen:
            hours = (stretch.end - stretch.start).total_seconds() / 3600
            out.append(
                f"frozen at {stretch.value:,} for {hours:.1f} h from {stretch.start:%Y-%m-%d %H:%M}"
            )
        return out


def value_at(series: Series, when: datetime) -> int | None:
    """The last count at or before `when`."""
    times = [t for t, _ in series]
    i = bisect_right(times, when)
    return series[i - 1][1] if i else None


def _trend(baseline: Series) -> float:
    """Followers per second over the baseline."""
    if len(baseline) < 2:
        return 0.0
    t0 = baseline[0][0]
    return theil_sen([((t - t0).total_seconds(), float(v)) for t, v in baseline]).slope


def _band(baseline: Series, slope: float, span: float) -> float:
    """1.96 × the spread of the baseline's own changes over spans as long as the window."""
    deviations = []
    for t, v in baseline:
        later = value_at(baseline, t + timedelta(seconds=span))
        if later is not None and t + timedelta(seconds=span) <= baseline[-1][0]:
            deviations.append((later - v) - slope * span)
    if len(deviations) >= 3:
        return Z95 * statistics.pstdev(deviations)
    t0 = baseline[0][0] if baseline else None
    residuals = [v - slope * (t - t0).total_seconds() for t, v in baseline] if t0 else []
    if len(residuals) < 3:
        return 0.0
    centre = statistics.median(residuals)
    return Z95 * statistics.pstdev([r - centre for r in residuals]) * 2**0.5


def _hourly(series: Series, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    out = []
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        before, after = value_at(series, hour), value_at(series, hour + timedelta(hours=1))
        if before is not None and after is not None:
            out.append((hour, after - before))
        hour += timedelta(hours=1)
    return out


def frozen_stretches(series: Series, min_seconds: float = 3600.0) -> list[Frozen]:
    """Runs of identical counts lasting at least `min_seconds`."""
    out: list[Frozen] = []
    i = 0
    while i < len(series):
        j = i
        while j + 1 < len(series) and series[j + 1][1] == series[i][1]:
            j += 1
        if (series[j][0] - series[i][0]).total_seconds() >= min_seconds:
            out.append(Frozen(series[i][0], series[j][0], series[i][1]))
        i = j + 1
    return out


def _swing(
    series: Series, start: datetime, end: datetime, baseline: float
) -> tuple[float, float] | None:
    """A control's change against its own trend, and its band, both relative to its size."""
    before = [(t, v) for t, v in series if start - timedelta(seconds=baseline) <= t <= start]
    s, e = value_at(series, start), value_at(series, end)
    if s is None or e is None or not s or len(before) < 2:
        return None
    slope, span = _trend(before), (end - start).total_seconds()
    return ((e - s) - slope * span) / s, _band(before, slope, span) / s


def analyse(
    who: str,
    series: Series,
    start: datetime,
    end: datetime,
    *,
    baseline: float = 7 * 86_400.0,
    controls: Sequence[Series] = (),
    goal: tuple[str, int] | None = None,
    frozen_min: float = 3600.0,
) -> Impact | None:
    """The impact report, or None when there is no count at the window's start and end."""
    series = sorted(series)
    # The window ends at its last reading: a trend over days without readings, set against a
    # count from days earlier, would be a confident and wrong answer.
    after = [t for t, _ in series if start < t <= end]
    asked_end = end if not after or after[-1] < end else None
    end = after[-1] if after else start
    s, e = value_at(series, start), value_at(series, end)
    if s is None or e is None:
        return None
    before = [(t, v) for t, v in series if start - timedelta(seconds=baseline) <= t <= start]
    span = (end - start).total_seconds()
    slope = _trend(before)
    expected = slope * span
    band = _band(before, slope, span)
    swings = [w for c in controls if (w := _swing(sorted(c), start, end, baseline)) is not None]
    swing = statistics.mean(w for w, _ in swings) if swings else None
    if swing is not None:
        # Factor out what moved the controls too; their own noise widens the band.
        expected += swing * s
        control_band = (sum(b * b for _, b in swings) ** 0.5) / len(swings) * s
        band = (band**2 + control_band**2) ** 0.5
    inside = [(t, v) for t, v in series if start <= t <= end]
    reached = None
    if goal is not None:
        direction, line = goal
        reached = next(
            (t for t, v in inside if (v < line if direction == "below" else v >= line)), None
        )
    return Impact(
        who=who,
        start=start,
        end=end,
        start_count=s,
        end_count=e,
        observed=e - s,
        expected=expected,
        band=band,
        baseline_per_hour=slope * 3600,
        control_swing=swing,
        hourly=tuple(_hourly(series, start, end)),
        baseline=baseline,
        baseline_readings=len(before),
        baseline_covered=(before[-1][0] - before[0][0]).total_seconds() if before else 0.0,
        goal=goal,
        goal_reached_at=reached,
        frozen=tuple(frozen_stretches(inside, frozen_min)),
        asked_end=asked_end,
        readings_inside=len(after),
    )


async def load_series(
    store: QueryableStore, platform: str, account: str, start: datetime, end: datetime
) -> list[tuple[datetime, int]]:
    """An account's stored counts between two times, from InfluxDB (v1 /query)."""
    rows = await store.query(
        f"SELECT followers FROM followers WHERE platform = {quote_literal(platform)}"
        f" AND account = {quote_literal(account)}"
        f" AND time >= {int(start.timestamp())}s AND time <= {int(end.timestamp())}s",
        epoch="s",
    )
    return [
        (datetime.fromtimestamp(t, UTC), int(v))
        for s in rows
        for t, v in s["values"]
        if v is not None
    ]
