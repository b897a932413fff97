"""`followerwatch plot`: an account's count with its threshold lines and events, as a PNG."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from followerwatch.cli.args import (
    LAST_30D,
    Lookback,
    UntilOpt,
    account_or_exit,
    lookback,
    output_file,
)
from followerwatch.errors import StoreError
from followerwatch.models import at_handle


def plot(
    account: Annotated[str, typer.Argument(help="platform/name (x/aplusk), or the name alone.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", callback=output_file, metavar="FILE", help="PNG file to write."
        ),
    ],
    since: Annotated[
        Lookback,
        typer.Option(parser=lookback, metavar="DURATION", help="How far back, e.g. 30d, 2w."),
    ] = LAST_30D,
    until: UntilOpt = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", envvar="FOLLOWERWATCH_CONFIG", help="Config TOML (for InfluxDB)."
        ),
    ] = None,
) -> None:
    """Draw the count over time with the account's threshold lines and its events."""
    from followerwatch.analysis.charts import account_chart
    from followerwatch.analysis.impact import load_series
    from followerwatch.cli.common import load_or_exit
    from followerwatch.cli.options import state_file_errors
    from followerwatch.net.http import build_client
    from followerwatch.service.app import build_reader
    from followerwatch.state.db import StateDB

    cfg = load_or_exit(Path(config) if config else None)
    platform, name = account_or_exit(cfg.accounts, account).key

    async def run() -> list[tuple[datetime, int]]:
        async with build_client() as client:
            store = build_reader(cfg.settings.influxdb, client)
            stop = until or datetime.now().astimezone()
            return await load_series(
                store, platform, name, stop - timedelta(seconds=since.seconds), stop
            )

    try:
        series = asyncio.run(run())
    except StoreError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if not series:
        print(f"followerwatch: no counts for {platform}/{name} in that range", file=sys.stderr)
        raise typer.Exit(1)
    rules = cfg.rules.get((platform, name))
    lines = [("below", v) for v in (rules.below or [])] if rules else []
    lines += [("above", v) for v in (rules.above or [])] if rules else []
    with state_file_errors():
        state = StateDB(cfg.settings.service.data_dir / "state.sqlite3")
    try:
        events = [
            (e.time, e.value, str(e.kind))
            for e, _ in state.events.recent(1000)
            if (e.platform, e.account) == (platform, name)
            and series[0][0] <= e.time <= series[-1][0]
        ]
    finally:
        state.close()
    try:
        account_chart(output, at_handle(name), series, lines, events)
    except OSError as exc:
        print(f"followerwatch: cannot write {output}: {exc.strerror}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"chart: {output}")
