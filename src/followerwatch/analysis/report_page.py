"""The `report` page: per account a heading, a summary line, its events and a chart, in one file."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from followerwatch.analysis.charts import RATE_KINDS, account_figure, load_events
from followerwatch.analysis.impact import load_series
from followerwatch.analysis.unusual import format_score, load_scores
from followerwatch.models import Account, Projection, at_handle, plural, signed
from followerwatch.rules.trend import milestone_lines, project
from followerwatch.store.base import QueryableStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from followerwatch.config.base import RuleDefaults

Series = list[tuple[datetime, int]]
Events = list[tuple[datetime, int, str]]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>followerwatch report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
section{{margin-bottom:2.5em}}img{{max-width:100%}}.muted{{color:#666}}
ul.events{{font-size:90%}}</style></head>
<body><h1>followerwatch report</h1><p class="muted">{generated}</p>
{sections}
</body></html>
"""


@dataclass(frozen=True)
class Readings:
    """What InfluxDB holds for one account in the report's range."""

    account: Account
    series: Series
    events: Events
    # The unusual rule's score of each count it scored, by the count's time.
    scores: dict[datetime, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    """One account's part of the page; `figure` is None when there are no counts."""

    heading: str
    summary: str
    events: Events
    figure: Figure | None


async def load(
    store: QueryableStore, accounts: Sequence[Account], start: datetime, stop: datetime
) -> list[Readings]:
    """Counts and events of every account between two times, from InfluxDB."""
    out = []
    for a in accounts:
        series = await load_series(store, a.platform, a.name, start, stop)
        events = await load_events(store, a.platform, a.name, start, stop)
        scores = await load_scores(store, a.platform, a.name, start, stop)
        out.append(Readings(a, series, sorted(events), scores))
    return out


def summary_line(series: Series, projection: str, score: float | None = None) -> str:
    """'991,303 followers on 2009-04-29 23:00 UTC (412 readings), unusual score -46.0; 24 h …'.

    The heading above names the account, so the line does not. `score` is the unusual rule's
    score of the last count; without one the line says nothing about it.
    """
    when, now = series[-1]
    parts = [f"{now:,} followers on {when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"]
    parts[0] += f" ({plural(len(series), 'reading')} in this range)"
    if score is not None:
        parts[0] += f", unusual score {format_score(score)}"
    for label, back in (("24 h", timedelta(days=1)), ("7 d", timedelta(days=7))):
        earlier = [v for t, v in series if t <= when - back]
        if earlier:
            parts.append(f"{label} {signed(now - earlier[-1])}")
    return "; ".join(parts) + f"; {projection}"


def section(data: Readings, rules: RuleDefaults | None) -> Section:
    """The heading, summary and chart of one account (the chart drawn, not yet encoded)."""
    account, series = data.account, data.series
    heading = f"{at_handle(account.name)} ({account.platform})"
    if not series:
        return Section(heading, "no counts in this range", data.events, None)
    lines = [("below", v) for v in (rules.below or [])] if rules else []
    lines += [("above", v) for v in (rules.above or [])] if rules else []
    milestones = milestone_lines(rules.milestones if rules else None, series[-1][1])
    estimate = project(series, lines, milestones=milestones)
    # Only the milestone the trend heads for: a whole ladder would stretch the axis to nothing.
    heading_for = [estimate.line] if isinstance(estimate, Projection) and estimate.milestone else []
    figure = account_figure(
        at_handle(account.name),
        series,
        lines,
        [(t, v, k.replace("_", " ")) for t, v, k in data.events],
        heading_for,
    )
    summary = summary_line(series, estimate.message(), data.scores.get(series[-1][0]))
    return Section(heading, summary, data.events, figure)


def sections(
    readings: Sequence[Readings], rules: Mapping[tuple[str, str], RuleDefaults]
) -> list[Section]:
    """A section per account, in watchlist order."""
    return [section(r, rules.get(r.account.key)) for r in readings]


def _events_html(events: Events) -> str:
    if not events:
        return ""
    items = "".join(
        f"<li>{t.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {html.escape(k.replace('_', ' '))}"
        + (f" ({signed(v)}/h)" if k in RATE_KINDS else f" at {v:,}")
        + "</li>"
        for t, v, k in events
    )
    return f'<ul class="events">{items}</ul>'


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render(parts: Sequence[Section], start: datetime, stop: datetime) -> str:
    """The whole page as HTML, charts inlined as data: URLs (one file to mail or host)."""
    html_parts = []
    for part in parts:
        heading = html.escape(part.heading)
        body = f"<section><h2>{heading}</h2><p>{html.escape(part.summary)}</p>"
        body += _events_html(part.events)
        if part.figure is not None:
            body += (
                f'<img alt="{heading}: followers" src="data:image/png;base64,{_png(part.figure)}">'
            )
        html_parts.append(body + "</section>")
    generated = (
        f"{plural(len(parts), 'account')}, {start.astimezone(UTC):%Y-%m-%d %H:%M} to "
        f"{stop.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    )
    return _PAGE.format(generated=html.escape(generated), sections="\n".join(html_parts))
