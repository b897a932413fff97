"""PNG charts (matplotlib, headless): an account's count with its lines, and a campaign's impact."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from followerwatch.impact import Impact

Series = Sequence[tuple[datetime, int]]


def human(value: float, _: object = None) -> str:
    """1.2M, 950k, 12: numbers people read at a glance."""
    size = abs(value)
    if size >= 1_000_000:
        return f"{value / 1_000_000:.4g}M"
    if size >= 1_000:
        return f"{value / 1_000:.4g}k"
    return f"{value:.0f}"


def _figure(title: str):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # no display here, nor in containers
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    ax.set_title(title)
    ax.set_ylabel("followers")
    ax.set_xlabel("time (UTC)")
    ax.yaxis.set_major_formatter(FuncFormatter(human))
    ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    return fig, ax, plt


def account_chart(
    path: Path,
    who: str,
    series: Series,
    lines: Sequence[tuple[str, int]] = (),
    events: Sequence[tuple[datetime, int, str]] = (),
) -> Path:
    """The count over time, its threshold lines, and its events as markers."""
    fig, ax, plt = _figure(f"{who}: followers")
    ax.plot([t for t, _ in series], [v for _, v in series], color="tab:blue", label="followers")
    for direction, line in lines:
        ax.axhline(
            line, color="tab:red", linestyle="--", linewidth=1, label=f"{direction} {human(line)}"
        )
    for when, value, label in events:
        ax.plot([when], [value], marker="o", color="tab:orange")
        ax.annotate(label, (when, value), textcoords="offset points", xytext=(5, 8), fontsize=8)
    ax.legend(loc="best")
    fig.savefig(path)
    plt.close(fig)
    return path


def impact_chart(path: Path, report: Impact, series: Series) -> Path:
    """Actual counts against the expected path and its band, over the baseline and the window."""
    fig, ax, plt = _figure(f"{report.who}: actual vs expected")
    ax.plot([t for t, _ in series], [v for _, v in series], color="tab:blue", label="actual")
    span = (report.end - report.start).total_seconds()
    steps = [report.start + timedelta(seconds=span * i / 24) for i in range(25)]
    expected = [report.start_count + report.expected * i / 24 for i in range(25)]
    ax.plot(steps, expected, color="tab:green", linestyle="--", label="expected")
    band = [report.band * i / 24 for i in range(25)]
    ax.fill_between(
        steps,
        [e - b for e, b in zip(expected, band, strict=True)],
        [e + b for e, b in zip(expected, band, strict=True)],
        color="tab:green",
        alpha=0.2,
        label="±95 % band",
    )
    ax.axvspan(report.start, report.end, color="tab:gray", alpha=0.1, label="campaign")
    if report.goal is not None:
        ax.axhline(
            report.goal[1],
            color="tab:red",
            linestyle=":",
            label=f"goal {report.goal[0]} {human(report.goal[1])}",
        )
    ax.legend(loc="best")
    fig.savefig(path)
    plt.close(fig)
    return path
