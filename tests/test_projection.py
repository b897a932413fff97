"""Projection on synthetic trends whose answer is known."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from followerwatch.models import NoProjection, Projection, format_eta
from followerwatch.rules.trend import project, theil_sen

T0 = datetime(2009, 4, 16, tzinfo=UTC)


def trend(
    start: int, per_hour: float, hours: float = 24, every_min: int = 5
) -> list[tuple[datetime, int]]:
    n = int(hours * 60 / every_min) + 1
    return [
        (T0 + timedelta(minutes=i * every_min), round(start + per_hour * i * every_min / 60))
        for i in range(n)
    ]


def test_linear_decline_reaches_the_line_when_arithmetic_says() -> None:
    history = trend(1_002_800, -100)  # 24 h later: 1,000,400; 400 more to go at 100/h
    result = project(history, [("below", 1_000_000)])
    assert isinstance(result, Projection)
    assert result.seconds == pytest.approx(4 * 3600, abs=1)
    assert result.at == history[-1][0] + timedelta(hours=4)
    assert result.per_day == pytest.approx(-2400)
    msg = result.message("@aplusk")
    assert msg == "at the current rate @aplusk drops below 1,000,000 in about 4 h"


def test_spikes_do_not_move_a_robust_fit() -> None:
    history = trend(1_002_800, -100)
    rng = random.Random(7)
    spiked = [(t, v + (50_000 if rng.random() < 0.1 else 0)) for t, v in history]
    spiked[-1] = history[-1]  # the current count itself is real
    result = project(spiked, [("below", 1_000_000)])
    assert isinstance(result, Projection)
    assert result.seconds == pytest.approx(4 * 3600, rel=0.02)


def test_eta_of_days_and_the_nearest_line_in_the_trend_direction() -> None:
    history = trend(1_000_000, 1000)  # ends at 1,024,000, +24,000/day
    lines = [("below", 900_000), ("above", 2_000_000), ("above", 1_100_000)]
    result = project(history, lines)
    assert isinstance(result, Projection)
    assert (result.direction, result.line) == ("above", 1_100_000)
    assert result.seconds == pytest.approx(76 * 3600, abs=1)  # 76,000 at 1,000/h
    assert format_eta(result.seconds) == "3 d 4 h"
    assert "reaches 1,100,000 in about 3 d 4 h" in result.message("@cnnbrk")


def test_a_trend_pointing_away_gives_no_projection() -> None:
    result = project(trend(1_000_400, +50), [("below", 1_000_000)])
    assert isinstance(result, NoProjection)
    assert "points away" in result.reason and "+1,200/day" in result.reason


def test_noise_gives_no_projection() -> None:
    rng = random.Random(1)
    history = [(t, 1_000_500 + rng.randint(-300, 300)) for t, _ in trend(0, 0)]
    result = project(history, [("below", 1_000_000)])
    assert isinstance(result, NoProjection)
    assert "too noisy" in result.reason


def test_flat_too_few_past_and_too_far() -> None:
    assert "flat" in _reason(project(trend(5_000, 0), [("below", 1_000)]))
    assert "only 3 readings" in _reason(project(trend(5_000, -10)[-3:], [("below", 1_000)]))
    assert "already past" in _reason(project(trend(999_000, -10), [("below", 1_000_000)]))
    slow = project(trend(10_000_000, -1), [("below", 1_000_000)])
    assert "more than 365 d away" in _reason(slow)
    assert "no threshold" in _reason(project(trend(5_000, -10), []))


def test_only_the_window_counts() -> None:
    # Rising for two days, then falling for the last 24 h: a 24 h window sees only the fall.
    rise = trend(900_000, +1000, hours=48)
    fall = [(t + timedelta(hours=48, minutes=5), rise[-1][1] - 200 * (i + 1) // 12)
            for i, (t, _) in enumerate(trend(0, 0))]  # fmt: skip
    result = project(rise + fall, [("below", 900_000)], window=86_400)
    assert isinstance(result, Projection) and result.direction == "below"
    assert result.per_day == pytest.approx(-4800, rel=0.01)  # 200 per hour
    assert isinstance(project(rise + fall, [("below", 900_000)], window=4 * 86_400), NoProjection)


def test_theil_sen_known_slope_and_agreement() -> None:
    fit = theil_sen([(0, 0), (1, 2), (2, 4), (3, 6), (4, 100)])
    assert fit.slope == 2 and fit.agreement == 1.0
    assert theil_sen([(0, 1), (1, 0), (2, 1), (3, 0)]).agreement < 0.7


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "under a minute"), (40 * 60, "40 min"), (5 * 3600 + 12 * 60, "5 h 12 min"),
     (3600, "1 h"), (2 * 86_400, "2 d")],
)  # fmt: skip
def test_format_eta(seconds: float, text: str) -> None:
    assert format_eta(seconds) == text


def _reason(result: Projection | NoProjection) -> str:
    assert isinstance(result, NoProjection), result
    return result.reason


def test_milestones_are_lines_in_the_trends_direction() -> None:
    from followerwatch.config.base import MilestoneConfig
    from followerwatch.rules.trend import milestone_lines

    ladder = MilestoneConfig(every=100_000)
    assert milestone_lines(ladder, 1_002_800) == [("above", 1_100_000), ("below", 1_000_000)]
    assert milestone_lines(ladder, 40_000) == [("above", 100_000)]
    levels = MilestoneConfig(levels=[500_000, 2_000_000])
    assert milestone_lines(levels, 1_002_800) == [("above", 2_000_000), ("below", 500_000)]
    assert milestone_lines(None, 5) == []
    # Falling 100/h, 2,800 above the milestone below it: 28 h; the line at 900,000 is further.
    falling = project(
        trend(1_005_200, -100),
        [("below", 900_000)],
        milestones=[*milestone_lines(ladder, 1_002_800)],
    )
    assert isinstance(falling, Projection) and falling.milestone
    assert falling.message() == (
        "at the current rate the count drops below the 1,000,000 milestone in about 1 d 4 h"
    )
    # A nearer threshold line wins over a milestone, and is not called one.
    line = project(
        trend(1_005_200, -100), [("below", 1_001_000)], milestones=[("below", 1_000_000)]
    )
    assert isinstance(line, Projection) and not line.milestone and line.line == 1_001_000


def test_readings_and_signs_read_as_people_write_them() -> None:
    from followerwatch.models import plural, signed

    one = project(trend(1_000_000, -100, hours=0), [("below", 900_000)])
    assert isinstance(one, NoProjection)
    assert one.message() == "no projection: only 1 reading in the last 1 d (need 5)"
    assert plural(2, "reading") == "2 readings"
    assert [signed(v) for v in (3, -3, 0, -0.0, -0.4, 0.4)] == ["+3", "-3", "0", "0", "0", "0"]
    assert signed(-0.00003, ".2%") == "0.00%" and signed(-0.0003, ".2%") == "-0.03%"
