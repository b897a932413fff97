"""The benchmark harness at a tiny scale: its figures must be sane (speed is bench's job)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from followerwatch.demo.influxd import find_influxd

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("aiohttp")
pytest.importorskip("psutil")
if not Path(find_influxd()).exists():
    pytest.skip("influxd is not installed", allow_module_level=True)


def _bench() -> tuple[Any, dict[str, int]]:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.__main__ import main
        from bench.fakes.api import LIMITS
    finally:
        sys.path.remove(str(ROOT))
    return main, LIMITS


def test_bench_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main, LIMITS = _bench()
    out = main(
        [
            "--accounts", "730",
            "--memory-small", "130",
            "--scenarios", "scale,memory,quota,latency",
            "--quota-window", "2",
            "--quota-windows", "1",
            "--quota-batches", "4",
            "--crossings", "30",
            "--keep", str(tmp_path),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "requests x" in printed and "alert latency" in printed
    for run in out["scale"]:
        assert run["returncode"] == 0
        per = run["n"] // 4
        for platform, batch in LIMITS.items():
            n = per + (1 if list(LIMITS).index(platform) < run["n"] % 4 else 0)
            assert (
                run["requests"][platform]
                == math.ceil(n / batch)
                == run["expected_requests"][platform]
            )
            assert run["accounts_served"][platform] == n
        assert run["rejected"] == dict.fromkeys(LIMITS, 0)
        assert run["observations"] == run["n"]
        # One threshold line per account: a one-shot poll is a start-up, so it writes the lines
        # (a service then writes them only every 4 h); every spooled point is in InfluxDB.
        assert run["by_measurement"]["followerwatch_thresholds"] == run["n"]
        assert run["points_written"] == run["points_confirmed"]
        assert run["spool"]["added"] == run["spool"]["written"]
        assert run["cpu"] > 0 and run["maxrss_mb"] > 10
    assert out["memory"]["n"] == [130, 730]
    quota = out["quota"]
    assert quota["served"] > 0 and 0 < quota["fraction"] <= 1.05
    latency = out["latency"]
    assert latency["delivered"] == 30
    assert 0 <= latency["p50"] <= latency["p99"] < 30
    # The summary holds the targets of the scenarios that ran, and only those.
    figures = [t["figure"] for t in out["summary"]]
    assert any(f.startswith("peak RSS") for f in figures)
    assert any(f.startswith("alert latency p99") for f in figures)
    assert not any(f.startswith(("steady cycle", "1M accounts")) for f in figures)


def _requests(n: int, limits: dict[str, int]) -> int:
    """⌈share/batch⌉ summed over the four platforms' even shares of n."""
    base, extra = divmod(n, 4)
    return sum(math.ceil((base + (k < extra)) / b) for k, b in enumerate(limits.values()))


def test_bench_cycle_peer_million(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main, LIMITS = _bench()
    out = main(
        [
            "--accounts", "210",
            "--scenarios", "cycle,peer,million",
            "--cycle-interval", "8",
            "--peer-accounts", "130",
            "--peer-interval", "8",
            "--million-accounts", "170",
            "--million-interval", "8",
            "--json", str(tmp_path / "figures.json"),
            "--keep", str(tmp_path),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    for run, n in ((out["cycle"][0], 210), (out["million"][0], 170)):
        assert run["n"] == n and run["returncode"] == 0
        assert run["requests"] == run["expected_requests"]
        # The steady cycle's own points: its n counts, confirmed by InfluxDB, and whatever the
        # cycle writes beside them; influxd took at least those, in at least one /write.
        assert run["observations"] == n == run["points_by_measurement"]["followers"]
        assert run["points"] == sum(run["points_by_measurement"].values()) >= n
        assert run["points_per_obs"] == pytest.approx(run["points"] / n)
        assert run["influxd_points_received"] >= run["points"]
        assert run["influxd_write_requests"] >= 1
        assert run["cpu"] > 0 and run["cpu_us_per_obs"] > 0 and run["maxrss_mb"] > 10
        assert run["influxd_cpu"] >= 0 and run["fake_api_cpu"] >= 0
        assert 0 < run["wall"] < 8 and 0 < run["startup_to_first_cycle_stored"] < 8
    side = out["peer"]
    peer, ours = side["peer"], side["followerwatch"]
    assert side["n"] == 130 and ours["returncode"] == 0
    # One request per account for the peer in each of its two passes, ⌈N/batch⌉ for
    # followerwatch; both stored every count (the peer's passes on seconds of their own).
    assert peer["requests"] == peer["steady"]["requests"] == 130
    assert peer["requests_served"] == 260 == peer["stored"] == peer["points_written"]
    assert peer["observations"] == peer["steady"]["observations"] == 130
    assert peer["failures"] == 0
    assert ours["requests"] == ours["steady"]["requests"] == _requests(130, LIMITS)
    assert ours["observations"] == ours["steady"]["observations"] == 130
    assert side["ratio"]["requests"] == pytest.approx(130 / ours["requests"])
    assert side["ratio_steady"]["wall"] == pytest.approx(
        peer["steady"]["wall"] / ours["steady"]["wall"]
    )
    assert peer["cpu"] > peer["steady"]["cpu"] > 0  # the first pass's CPU holds the start-up
    assert peer["cpu_us_per_obs"] == pytest.approx(peer["cpu"] / 130 * 1e6)
    assert "peer ÷ followerwatch" in printed
    assert all(t["figure"] in printed for t in out["summary"])
    summary = {t["figure"].split(" (N=")[0]: t for t in out["summary"]}
    assert set(summary) == {
        "steady cycle, first request → all stored",
        "followerwatch CPU per observation, steady cycle",
        "influxd CPU per steady cycle",
        "points per observation, steady cycle",
        "peak RSS",
        "1M accounts: RSS",
        "1M accounts: start-up → first cycle stored",
        "1M accounts: steady cycle, first request → all stored",
    }
    assert (
        summary["points per observation, steady cycle"]["value"]
        == out["cycle"][0]["points_per_obs"]
    )
    for t in summary.values():
        assert t["met"] == (t["value"] <= t["target"])
    assert json.loads((tmp_path / "figures.json").read_text())["summary"] == out["summary"]


def test_a_million_run_that_does_not_keep_up_is_reported_missed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main, _ = _bench()
    # A 1 s interval: start-up alone takes longer, so the first cycle is never stored in time.
    out = main(
        [
            "--scenarios", "million",
            "--million-accounts", "150",
            "--million-interval", "1",
            "--keep", str(tmp_path),
        ]
    )  # fmt: skip
    run = out["million"][0]
    assert "first cycle was not stored" in run["error"]
    assert 0 < run["maxrss_mb"] < 1024
    verdicts = {t["figure"].split(" (N=")[0]: t["met"] for t in out["summary"]}
    assert verdicts == {
        "1M accounts: RSS": True,
        "1M accounts: start-up → first cycle stored": False,
        "1M accounts: steady cycle, first request → all stored": False,
    }
    printed = capsys.readouterr().out
    assert "million 150: did not keep up" in printed
    assert "not done" in printed
