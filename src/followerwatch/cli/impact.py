"""`followerwatch impact`: the campaign analysis on any past window, from InfluxDB."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from followerwatch.analysis.impact import Impact, analyse, load_series
from followerwatch.cli.args import (
    LAST_7D,
    Lookback,
    account_or_exit,
    lookback,
    moment,
    output_file,
    usage_error,
    window_order,
)
from followerwatch.errors import StoreError
from followerwatch.models import at_handle
from followerwatch.net.http import build_client
from followerwatch.units import parse_count


def impact(
    account: Annotated[str, typer.Argument(help="platform/name (x/aplusk), or the name alone.")],
    start: Annotated[
        datetime,
        typer.Option(
            "--from",
            parser=moment,
            metavar="DATE",
            help="Window start (ISO 8601, UTC unless a zone).",
        ),
    ],
    end: Annotated[
        datetime,
        typer.Option(
            "--to", parser=moment, metavar="DATE", help="Window end (ISO 8601, UTC unless a zone)."
        ),
    ],
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", envvar="FOLLOWERWATCH_CONFIG", help="Config TOML (for InfluxDB)."
        ),
    ] = None,
    baseline: Annotated[
        Lookback,
        typer.Option(parser=lookback, metavar="DURATION", help="Trend window before the start."),
    ] = LAST_7D,
    control: Annotated[
        list[str] | None,
        typer.Option(help="A similar account not targeted (platform/name); repeatable."),
    ] = None,
    below: Annotated[
        str | None, typer.Option(metavar="COUNT", help="Goal: below this count (e.g. 1M).")
    ] = None,
    above: Annotated[
        str | None, typer.Option(metavar="COUNT", help="Goal: at or above this count.")
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option(
            callback=output_file, metavar="FILE", help="Also draw actual vs expected here."
        ),
    ] = None,
) -> None:
    """What a campaign did to an account: observed change against the trend before it."""
    from followerwatch.cli.common import load_or_exit
    from followerwatch.service.app import build_reader

    window_order(start, end)
    cfg = load_or_exit(Path(config) if config else None)
    target = account_or_exit(cfg.accounts, account)
    controls_of = [account_or_exit(cfg.accounts, c) for c in control or []]
    window = (start, end)
    goal = _goal(below, above)

    series: list[tuple[datetime, int]] = []

    async def run() -> Impact | None:
        async with build_client() as client:
            store = build_reader(cfg.settings.influxdb, client)
            since = window[0] - timedelta(seconds=baseline.seconds)
            series.extend(await load_series(store, *target.key, since, window[1]))
            controls = [await load_series(store, *c.key, since, window[1]) for c in controls_of]
        return analyse(
            at_handle(target.name),
            series,
            *window,
            baseline=baseline.seconds,
            controls=controls,
            goal=goal,
        )

    try:
        report = asyncio.run(run())
    except StoreError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    out = Console()
    if report is None:
        who = f"{target.platform}/{target.name}"
        out.print(Text(f"no counts for {who} at the start and end of that window"))
        raise typer.Exit(1)
    for line in report.lines():
        out.print(Text(line))
    if not report.estimable:
        # The lines above say why; there is no expected path to draw.
        raise typer.Exit(1)
    if png:
        from followerwatch.analysis.charts import impact_chart

        try:
            out.print(Text(f"chart: {impact_chart(png, report, series)}"))
        except OSError as exc:
            print(f"followerwatch: cannot write {png}: {exc.strerror}", file=sys.stderr)
            raise typer.Exit(1) from None


def _goal(below: str | None, above: str | None) -> tuple[str, int] | None:
    """The goal from --below/--above (counts like "1M", 0 included), or one line and exit 2."""
    for option, value in (("below", below), ("above", above)):
        if value is not None:
            try:
                return option, parse_count(value)
            except ValueError as exc:
                usage_error(f"--{option}: {exc}")
    return None
