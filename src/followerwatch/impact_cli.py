"""`followerwatch impact`: the campaign analysis on any past window, from InfluxDB."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console

from followerwatch.campaign_config import split
from followerwatch.durations import parse_duration
from followerwatch.errors import StoreError
from followerwatch.http import build_client
from followerwatch.impact import Impact, analyse, load_series
from followerwatch.models import at_handle


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise typer.BadParameter("give a time zone, e.g. 2009-04-27T00:00:00Z")
    return value


def impact(
    account: Annotated[str, typer.Argument(help="platform/name, e.g. x/aplusk.")],
    start: Annotated[str, typer.Option("--from", help="Window start (ISO 8601 with zone).")],
    end: Annotated[str, typer.Option("--to", help="Window end (ISO 8601 with zone).")],
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", envvar="FOLLOWERWATCH_CONFIG", help="Config TOML (for InfluxDB)."
        ),
    ] = None,
    baseline: Annotated[str, typer.Option(help="Trend window before the start.")] = "7d",
    control: Annotated[
        list[str] | None,
        typer.Option(help="A similar account not targeted (platform/name); repeatable."),
    ] = None,
    below: Annotated[int | None, typer.Option(help="Goal: below this count.")] = None,
    above: Annotated[int | None, typer.Option(help="Goal: at or above this count.")] = None,
    png: Annotated[str | None, typer.Option(help="Also draw actual vs expected here.")] = None,
) -> None:
    """What a campaign did to an account: observed change against the trend before it."""
    from pathlib import Path

    from followerwatch.app import build_reader
    from followerwatch.cli import _load

    cfg = _load(Path(config) if config else None)
    if "/" not in account:
        raise typer.BadParameter("write the account as platform/name, e.g. x/aplusk")
    window = (_when(start), _when(end))
    goal = ("below", below) if below is not None else ("above", above) if above else None

    series: list[tuple[datetime, int]] = []

    async def run() -> Impact | None:
        async with build_client() as client:
            store = build_reader(cfg.settings.influxdb, client)
            since = window[0] - timedelta(seconds=parse_duration(baseline))
            series.extend(await load_series(store, *split(account), since, window[1]))
            controls = [
                await load_series(store, *split(c), since, window[1]) for c in control or []
            ]
        return analyse(
            at_handle(split(account)[1]),
            series,
            *window,
            baseline=parse_duration(baseline),
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
        out.print(f"no counts for {account} at the start and end of that window")
        raise typer.Exit(1)
    for line in report.lines():
        out.print(line)
    if not report.estimable:
        # The lines above say why; there is no expected path to draw.
        raise typer.Exit(1)
    if png:
        from followerwatch.charts import impact_chart

        out.print(f"chart: {impact_chart(Path(png), report, series)}")
