"""`followerwatch report`: one static HTML page, a chart and a summary line per account.

What the page holds is built in report_page.py; this module reads the options.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from followerwatch.cli.args import LAST_30D, Lookback, UntilOpt, lookback, output_file
from followerwatch.errors import StoreError


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
    until: UntilOpt = None,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", envvar="FOLLOWERWATCH_CONFIG", help="Config TOML."),
    ] = None,
) -> None:
    """Write a self-contained HTML page for people without Grafana."""
    from followerwatch.analysis.report_page import Readings, load, render, sections
    from followerwatch.cli.common import load_or_exit
    from followerwatch.net.http import build_client
    from followerwatch.service.app import build_reader

    cfg = load_or_exit(Path(config) if config else None, watchlist=True)
    stop = until or datetime.now().astimezone()
    start = stop - timedelta(seconds=since.seconds)

    async def fetch() -> list[Readings]:
        async with build_client() as client:
            return await load(
                build_reader(cfg.settings.influxdb, client), cfg.accounts, start, stop
            )

    try:
        readings = asyncio.run(fetch())
    except StoreError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    page = render(sections(readings, cfg.rules), start, stop)
    try:
        output.write_text(page)
    except OSError as exc:
        print(f"followerwatch: cannot write {output}: {exc.strerror}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"report: {output}")
