"""`followerwatch report`: one static HTML page, a chart and a summary line per account."""

from __future__ import annotations

import asyncio
import base64
import html
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from followerwatch.cli_args import LAST_30D, Lookback, lookback, moment, output_file
from followerwatch.errors import StoreError
from followerwatch.models import at_handle

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>followerwatch report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
section{{margin-bottom:2.5em}}img{{max-width:100%}}.muted{{color:#666}}</style></head>
<body><h1>followerwatch report</h1><p class="muted">{generated}</p>
{sections}
</body></html>
"""


def summary_line(who: str, series: list[tuple[datetime, int]], projection: str) -> str:
    """'@x: 991,303 followers; 24 h −33,288; 7 d −23,102; at the current rate …'."""
    when, now = series[-1]
    parts = [f"{who}: {now:,} followers"]
    for label, back in (("24 h", timedelta(days=1)), ("7 d", timedelta(days=7))):
        earlier = [v for t, v in series if t <= when - back]
        if earlier:
            parts.append(f"{label} {now - earlier[-1]:+,}")
    return "; ".join(parts) + f"; {projection}"


def report(
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", callback=output_file, metavar="FILE", help="HTML file to write."
        ),
    ],
    since: Annotated[
        Lookback,
        typer.Option(parser=lookback, metavar="DURATION", help="How far back each chart goes."),
    ] = LAST_30D,
    until: Annotated[
        datetime | None,
        typer.Option(
            parser=moment,
            metavar="DATE",
            help="End (ISO 8601 date or time, UTC unless a zone); now.",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", envvar="FOLLOWERWATCH_CONFIG", help="Config TOML."),
    ] = None,
) -> None:
    """Write a self-contained HTML page for people without Grafana."""
    from followerwatch.app import build_reader
    from followerwatch.charts import account_chart
    from followerwatch.cli import _load
    from followerwatch.http import build_client
    from followerwatch.impact import load_series
    from followerwatch.projection import project

    cfg = _load(Path(config) if config else None)
    stop = until or datetime.now().astimezone()
    start = stop - timedelta(seconds=since.seconds)

    async def fetch() -> list[list[tuple[datetime, int]]]:
        async with build_client() as client:
            store = build_reader(cfg.settings.influxdb, client)
            return [await load_series(store, a.platform, a.name, start, stop) for a in cfg.accounts]

    try:
        all_series = asyncio.run(fetch())
    except StoreError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        for account, series in zip(cfg.accounts, all_series, strict=True):
            who = f"{at_handle(account.name)} ({account.platform})"
            if not series:
                sections.append(
                    f"<section><h2>{html.escape(who)}</h2><p>no counts in this range</p></section>"
                )
                continue
            rules = cfg.rules.get(account.key)
            lines = [("below", v) for v in (rules.below or [])] if rules else []
            lines += [("above", v) for v in (rules.above or [])] if rules else []
            name = at_handle(account.name)
            png = account_chart(Path(tmp) / "chart.png", name, series, lines)
            image = base64.b64encode(png.read_bytes()).decode("ascii")
            text = summary_line(who, series, project(series, lines).message(name))
            sections.append(
                f"<section><h2>{html.escape(who)}</h2><p>{html.escape(text)}</p>"
                f'<img alt="{html.escape(who)} followers" '
                f'src="data:image/png;base64,{image}"></section>'
            )
    generated = f"{len(cfg.accounts)} accounts, {start:%Y-%m-%d} to {stop:%Y-%m-%d %H:%M} UTC"
    output.write_text(_PAGE.format(generated=generated, sections="\n".join(sections)))
    print(f"report: {output}")
