"""`followerwatch_thresholds`: the watchlist's lines as points for the Grafana dashboards."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from followerwatch.config.settings import Config, load_config
from followerwatch.models import Account, Observation
from followerwatch.store.lineprotocol import encode
from followerwatch.store.thresholds import (
    THRESHOLDS,
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


def test_points_next_to_observations_carry_the_signed_distance(tmp_path: Path) -> None:
    lines = threshold_lines(config(tmp_path))
    aplusk = Account("x", "aplusk", "aplusk")
    octocat = Account("github", "octocat", "octocat")
    points = observation_threshold_points(
        lines, [Observation(aplusk, T, 999_652), Observation(octocat, T, 10)]
    )
    assert [(dict(p.tags)["rule"], dict(p.fields)) for p in points] == [
        ("below:1000000", {"value": 1_000_000, "distance": -348}),
        ("above:1000000", {"value": 1_000_000, "distance": -348}),
        ("above:2000000", {"value": 2_000_000, "distance": -1_000_348}),
    ]
    assert {p.time for p in points} == {T}
    # Integer fields on the wire (an `i` suffix): a field's type never changes.
    assert encode(points[0], "s") == (
        "followerwatch_thresholds,account=aplusk,direction=below,platform=x,rule=below:1000000"
        " value=1000000i,distance=-348i 1240855200"
    )
