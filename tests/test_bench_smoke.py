"""The benchmark harness at a tiny scale: its figures must be sane (speed is bench's job)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from followerwatch.demo.influxd import find_influxd

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("aiohttp")
pytest.importorskip("psutil")
if not Path(find_influxd()).exists():
    pytest.skip("influxd is not installed", allow_module_level=True)


def test_bench_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.__main__ import main
        from bench.fakes.api import LIMITS
    finally:
        sys.path.remove(str(ROOT))
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
