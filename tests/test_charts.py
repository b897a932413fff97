"""`plot` and `impact --png` draw real PNGs from the real influxd (the demo's replay as data)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from followerwatch.analysis.charts import tick_labels
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.demo.replay import DATABASE


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "followerwatch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={**os.environ},
    )


def test_plot_and_impact_charts(tmp_path: Path, influxd: TempInfluxd) -> None:
    # The demo has the unusual rule on for @aplusk: the report gives its last count's score.
    demo = cli("demo", "--influx-url", influxd.url, "--seconds", "2", cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    config = tmp_path / "fw.toml"
    config.write_text(
        f'[service]\ndata_dir = "data"\n[influxdb]\nurl = "{influxd.url}"\n'
        f'database = "{DATABASE}"\n[platforms.x]\nbearer_token = "t"\n'
        '[[watch]]\nplatform = "x"\nhandle = "aplusk"\nbelow = 1_000_000\n'
    )
    plot = cli(
        "plot",
        "x/aplusk",
        "-o",
        str(tmp_path / "plot"),  # no suffix: the file is written exactly there, as a PNG
        "--since",
        "20d",
        "--until",
        "2009-04-30T00:00:00Z",
        "--config",
        str(config),
        cwd=tmp_path,
    )
    assert plot.returncode == 0, plot.stdout + plot.stderr
    assert plot.stdout == f"chart: {tmp_path / 'plot'}\n"
    impact = cli(
        "impact",
        "x/aplusk",
        "--from",
        "2009-04-27T00:00:00Z",
        "--to",
        "2009-04-28T00:00:00Z",
        "--control",
        "x/cnnbrk",
        "--below",
        "1000000",
        "--png",
        str(tmp_path / "impact.html"),  # any suffix: still a PNG at exactly that path
        "--config",
        str(config),
        cwd=tmp_path,
    )
    assert impact.returncode == 0, impact.stdout + impact.stderr
    assert "the campaign cost @aplusk about" in impact.stdout
    page = cli(
        "report",
        "-o",
        str(tmp_path / "report.html"),
        "--since",
        "20d",
        "--until",
        "2009-04-30T00:00:00Z",
        "--config",
        str(config),
        cwd=tmp_path,
    )
    assert page.returncode == 0, page.stdout + page.stderr
    text = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in text
    assert (
        "<h2>@aplusk (x)</h2><p>993,377 followers on 2009-04-28 23:00 UTC (360 readings in this"
        " range), unusual score -0.1; 24 h +897; 7 d -24,996; no projection: the count is"
        " already past every line"
    ) in text
    for name in ("plot", "impact.html"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_tick_labels_keep_neighbouring_ticks_apart() -> None:
    # A week of a big account moving little: "1M" on every tick would say nothing.
    assert tick_labels([999_850, 1_000_000, 1_000_150]) == ["999,850", "1,000,000", "1,000,150"]
    assert tick_labels([1_002_000, 1_004_000, 1_006_000]) == ["1.002M", "1.004M", "1.006M"]
    assert tick_labels([1_000_000, 1_100_000, 1_200_000]) == ["1.0M", "1.1M", "1.2M"]
    assert tick_labels([930_000, 935_000]) == ["930k", "935k"]
    assert tick_labels([0, 5, 10]) == ["0", "5", "10"]


def test_an_unusual_event_is_marked_on_the_count_not_at_its_rate() -> None:
    """Its value is a rate per hour: drawn at -1,386 it would stretch the axis to nothing."""
    from followerwatch.analysis.charts import account_figure, event_markers

    t0 = datetime(2009, 4, 27, tzinfo=UTC)
    series = [(t0 + timedelta(hours=h), 1_000_000 - 1_400 * h) for h in range(6)]
    events = [
        (t0 - timedelta(hours=1), -1_500, "unusual_drop"),  # before the first count: not drawn
        (t0 + timedelta(hours=2, minutes=30), -1_386, "unusual_drop"),  # as alerts pass it
        (t0 + timedelta(hours=4), 120, "unusual cleared"),  # as the report labels it
        (t0 + timedelta(hours=5), 993_000, "dropped_below"),  # a count: where it says
    ]
    figure = account_figure("@aplusk", series, [], events)
    assert event_markers(figure) == [
        (t0 + timedelta(hours=2, minutes=30), 997_200.0),
        (t0 + timedelta(hours=4), 994_400.0),
        (t0 + timedelta(hours=5), 993_000.0),
    ]
    low, _ = figure.axes[0].get_ylim()
    assert low > 990_000
