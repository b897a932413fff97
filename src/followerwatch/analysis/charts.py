"""PNG charts (matplotlib, headless): an account's count with its lines, and a campaign's impact."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from followerwatch.analysis.impact import Impact, load_series
from followerwatch.models import Event, EventKind, at_handle
from followerwatch.store.base import QueryableStore
from followerwatch.store.influx_v1 import quote_literal

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter

Series = Sequence[tuple[datetime, int]]
# (platform, account name) → the account's threshold lines as (direction, value).
LinesFor = Callable[[str, str], Sequence[tuple[str, int]]]
# The `gid` of an event's marker: what tells a drawn event from the count's own line.
EVENT_GID = "event"
# The unusual rule's events hold a rate per hour in `value`, not a count.
RATE_KINDS = frozenset(
    str(k) for k in (EventKind.UNUSUAL_DROP, EventKind.UNUSUAL_RISE, EventKind.UNUSUAL_CLEARED)
)
# A chart narrower than this (one reading, or a burst) is widened around its readings; else
# matplotlib pads a zero-width date range by years.
MIN_SPAN = timedelta(days=1)


def human(value: float, _: object = None) -> str:
    """1.2M, 950k, 12: numbers people read at a glance."""
    size = abs(value)
    if size >= 1_000_000:
        return f"{value / 1_000_000:.4g}M"
    if size >= 1_000:
        return f"{value / 1_000:.4g}k"
    return f"{value:.0f}"


def tick_labels(values: Sequence[float]) -> list[str]:
    """Axis labels in one unit with just enough digits for neighbouring ticks to differ."""
    if len(values) < 2:
        return [human(v) for v in values]
    step = min(b - a for a, b in pairwise(values))
    top = max(abs(v) for v in values)
    scale, suffix = next(((s, x) for s, x in ((1e6, "M"), (1e3, "k")) if top >= s), (1.0, ""))
    decimals = max(0, math.ceil(-math.log10(step / scale) - 1e-9)) if step > 0 else 0
    if decimals > 3 or not suffix:
        # A narrow range far from zero (999,850 to 1,000,400): "1M" on every tick says nothing.
        return [f"{v:,.0f}" for v in values]
    return [f"{v / scale:.{decimals}f}{suffix}" for v in values]


def _axis_formatter() -> Formatter:
    from matplotlib.ticker import Formatter

    class Human(Formatter):
        """`human` for a single value (the cursor), `tick_labels` for the axis."""

        def __call__(self, x: float, pos: int | None = None) -> str:
            return human(x)

        def format_ticks(self, values: Sequence[float]) -> list[str]:
            return tick_labels(values)

    return Human()


def _figure(title: str):  # type: ignore[no-untyped-def]
    # A bare Figure, not pyplot: no display is needed (nor present in containers), and pyplot's
    # global figure list is unsafe when alert charts are drawn in worker threads.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5), dpi=110)
    ax = fig.subplots()
    ax.set_title(title)
    ax.set_ylabel("followers")
    ax.set_xlabel("time (UTC)")
    ax.yaxis.set_major_formatter(_axis_formatter())
    ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    return fig, ax


def account_chart(
    path: Path,
    who: str,
    series: Series,
    lines: Sequence[tuple[str, int]] = (),
    events: Sequence[tuple[datetime, int, str]] = (),
) -> Path:
    """The count over time, its threshold lines, and its events as markers, as a PNG."""
    account_figure(who, series, lines, events).savefig(path, format="png")
    return path


def account_figure(
    who: str,
    series: Series,
    lines: Sequence[tuple[str, int]] = (),
    events: Sequence[tuple[datetime, int, str]] = (),
    milestones: Sequence[int] = (),
) -> Figure:
    """The figure `account_chart` saves; events are lines whose gid is `EVENT_GID`."""
    fig, ax = _figure(f"{who}: followers")
    # Markers when there are few readings: a single one would otherwise draw nothing.
    marker = "o" if len(series) < 30 else None
    ax.plot(
        [t for t, _ in series],
        [v for _, v in series],
        color="tab:blue",
        marker=marker,
        markersize=3,
        label="followers",
    )
    for direction, line in lines:
        ax.axhline(
            line, color="tab:red", linestyle="--", linewidth=1, label=f"{direction} {human(line)}"
        )
    for level in milestones:
        ax.axhline(
            level, color="tab:gray", linestyle=":", linewidth=1, label=f"milestone {human(level)}"
        )
    for when, value, label in on_the_counts(series, events):
        ax.plot([when], [value], marker="D", color="tab:orange", linestyle="none", gid=EVENT_GID)
        ax.axvline(when, color="tab:orange", linewidth=0.8, alpha=0.5)
        ax.annotate(label, (when, value), textcoords="offset points", xytext=(5, 8), fontsize=8)
    times = [t for t, _ in series] + [t for t, _, _ in events]
    if times and max(times) - min(times) < MIN_SPAN:
        middle = min(times) + (max(times) - min(times)) / 2
        ax.set_xlim(middle - MIN_SPAN / 2, middle + MIN_SPAN / 2)
    ax.legend(loc="best")
    figure: Figure = fig
    return figure


def on_the_counts(
    series: Series, events: Sequence[tuple[datetime, int, str]]
) -> list[tuple[datetime, int, str]]:
    """Events where a count chart marks them: a rate event (its kind or its label "unusual
    drop") at the count of its moment, left out before the first count."""
    out = []
    for when, value, label in events:
        if label.replace(" ", "_") in RATE_KINDS:
            before = [v for t, v in series if t <= when]
            if not before:
                continue
            value = before[-1]
        out.append((when, value, label))
    return out


def event_markers(fig: Figure) -> list[tuple[datetime, float]]:
    """Where a figure marks events, read back from its drawing: (time, count) per marker."""
    from matplotlib.dates import num2date

    out = []
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_gid() == EVENT_GID:
                xs, ys = line.get_xydata().T  # type: ignore[union-attr]
                out += [
                    (num2date(x), float(y))  # type: ignore[no-untyped-call]
                    for x, y in zip(xs, ys, strict=True)
                ]
    return out


def impact_chart(path: Path, report: Impact, series: Series) -> Path:
    """Actual counts against the expected path and its band, over the baseline and the window."""
    fig, ax = _figure(f"{report.who}: actual vs expected")
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
    fig.savefig(path, format="png")
    return path


async def load_events(
    store: QueryableStore, platform: str, account: str, start: datetime, end: datetime
) -> list[tuple[datetime, int, str]]:
    """An account's events between two times as (time, value, kind), from `followerwatch_events`."""
    rows = await store.query(
        'SELECT "value", "kind" FROM followerwatch_events WHERE platform = '
        f"{quote_literal(platform)} AND account = {quote_literal(account)}"
        f" AND time >= {int(start.timestamp())}s AND time <= {int(end.timestamp())}s",
        epoch="s",
    )
    return [
        (datetime.fromtimestamp(t, UTC), int(v), str(k))
        for s in rows
        for t, v, k in s["values"]
        if v is not None
    ]


class AccountCharts:
    """Draws an account's recent counts for alert attachments, off the event loop."""

    def __init__(
        self,
        reader: QueryableStore,
        lines: LinesFor | None = None,
        timeout: float = 20.0,
        at_once: int = 2,
    ) -> None:
        self._reader = reader
        self._lines = lines
        self.timeout = timeout
        # A chart costs ~0.15 s of CPU: a burst of alerts must not take every core from polling.
        # The wait for a turn counts toward `timeout`, so a long burst sends alerts without charts.
        self._turns = asyncio.Semaphore(at_once)

    async def render(self, event: Event, days: float, path: Path) -> Path | None:
        """The `days` up to the event, with lines and events, as a PNG; None when no counts."""

        async def turn() -> Path | None:
            async with self._turns:
                return await self._render(event, days, path)

        return await asyncio.wait_for(turn(), self.timeout)

    async def _render(self, event: Event, days: float, path: Path) -> Path | None:
        # Up to the event's own time, not now: replayed and late-delivered alerts show their moment.
        end = event.time
        start = end - timedelta(days=days)
        series = await load_series(self._reader, event.platform, event.account, start, end)
        if not series:
            return None
        events = await load_events(self._reader, event.platform, event.account, start, end)
        mark = (event.time, event.value, str(event.kind))
        if mark not in events:
            events.append(mark)
        lines = self._lines(event.platform, event.account) if self._lines else ()
        # matplotlib is CPU-bound and slow to import: a worker thread keeps the event loop free.
        await asyncio.to_thread(
            account_chart, path, at_handle(event.account), series, list(lines), events
        )
        return path
