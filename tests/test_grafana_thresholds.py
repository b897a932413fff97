"""The watchlist's lines for the Grafana dashboards: `followerwatch_thresholds` and `distance`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from followerwatch.config.settings import Config, load_config
from followerwatch.models import Account, Observation
from followerwatch.store.lineprotocol import encode
from followerwatch.store.schema import observation_line, observation_point
from followerwatch.store.thresholds import (
    THRESHOLDS,
    nearest_distance,
    observation_threshold_points,
    threshold_lines,
    threshold_points,
)

T = datetime(2009, 4, 27, 18, tzinfo=UTC)


def config(tmp_path: Path) -> Config:
    return load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path)},
            "platforms": {
                "x": {"bearer_token": "t", "defaults": {"below": 1_000_000}},
                "github": {},
            },
            "watch": [
                {"platform": "x", "handle": "aplusk", "above": [1_000_000, 2_000_000]},
                {"platform": "x", "handle": "cnnbrk", "name": "CNN Breaking News", "below": []},
                {"platform": "x", "handle": "jack", "below": [5, 5]},
                {"platform": "github", "handle": "octocat"},
            ],
        },
    )


def test_lines_come_from_the_watchlist_with_platform_defaults(tmp_path: Path) -> None:
    assert threshold_lines(config(tmp_path)) == {
        ("x", "aplusk"): (("below", 1_000_000), ("above", 1_000_000), ("above", 2_000_000)),
        ("x", "jack"): (("below", 5),),  # a repeated value is one line
        # cnnbrk's own empty `below` overrides the default; octocat has no lines at all.
    }


def test_threshold_points_at_a_time(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    points = threshold_points(cfg, T)
    assert [(p.measurement, dict(p.tags)["rule"], p.fields, p.time) for p in points] == [
        (THRESHOLDS, "below:1000000", (("value", 1_000_000),), T),
        (THRESHOLDS, "above:1000000", (("value", 1_000_000),), T),
        (THRESHOLDS, "above:2000000", (("value", 2_000_000),), T),
        (THRESHOLDS, "below:5", (("value", 5),), T),
    ]
    assert dict(points[0].tags) == {
        "platform": "x",
        "account": "aplusk",
        "rule": "below:1000000",
        "direction": "below",
    }
    jack = [a for a in cfg.accounts if a.name == "jack"]
    assert [dict(p.tags)["account"] for p in threshold_points(cfg, T, jack)] == ["jack"]


def test_counts_carry_the_signed_distance_to_the_nearest_line(tmp_path: Path) -> None:
    # Issue 18: `distance` moved from each line's point to the count's (one point per poll).
    lines = threshold_lines(config(tmp_path))
    aplusk = Account("x", "aplusk", "aplusk")
    octocat = Account("github", "octocat", "octocat")
    counts = [Observation(aplusk, T, 999_652), Observation(octocat, T, 10)]
    points = [observation_point(o, lines.get(o.account.key, ())) for o in counts]
    assert [dict(p.fields) for p in points] == [
        {"followers": 999_652, "distance": -348},  # 1,000,000 is nearest (below and above)
        {"followers": 10},  # no lines, no distance
    ]
    # Integer fields on the wire (an `i` suffix): a field's type never changes.
    assert encode(points[0], "s") == (
        "followers,account=aplusk,platform=x followers=999652i,distance=-348i 1240855200"
    )
    assert observation_line(counts[0], "s", lines[aplusk.key]) == encode(points[0], "s")


def test_nearest_line_ties_go_to_the_lower_line() -> None:
    lines = (("below", 100), ("above", 120), ("above", 500))
    assert nearest_distance(110, lines) == 10  # 100 and 120 equally near: 100
    assert nearest_distance(111, lines) == -9
    assert nearest_distance(109, lines) == 9
    assert nearest_distance(90, lines) == -10
    assert nearest_distance(1_000, lines) == 500
    assert nearest_distance(100, lines) == 0
    assert nearest_distance(5, ()) is None
    # The order of the lines does not matter.
    assert nearest_distance(110, tuple(reversed(lines))) == 10


def test_line_points_next_to_observations_carry_the_value_only(tmp_path: Path) -> None:
    lines = threshold_lines(config(tmp_path))
    aplusk = Account("x", "aplusk", "aplusk")
    octocat = Account("github", "octocat", "octocat")
    points = observation_threshold_points(
        lines, [Observation(aplusk, T, 999_652), Observation(octocat, T, 10)]
    )
    assert [(dict(p.tags)["rule"], dict(p.fields)) for p in points] == [
        ("below:1000000", {"value": 1_000_000}),
        ("above:1000000", {"value": 1_000_000}),
        ("above:2000000", {"value": 2_000_000}),
    ]
    assert {p.time for p in points} == {T}
    assert encode(points[0], "s") == (
        "followerwatch_thresholds,account=aplusk,direction=below,platform=x,rule=below:1000000"
        " value=1000000i 1240855200"
    )
