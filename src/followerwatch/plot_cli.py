"""`followerwatch plot`: an account's count with its threshold lines and events, as a PNG."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from followerwatch.durations import parse_duration
from followerwatch.errors import StoreError
from followerwatch.models import at_handle


def plot(
    account: Annotated[str, typer.Argument(help="platform/name, e.g. x/aplusk.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")],
    since: Annotated[str, typer.Option(help="How far back, e.g. 30d.")] = "30d",
    until: Annotated[
        str | None, typer.Option(help="End (ISO 8601 with zone); default now.")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", envvar="FOLLOWERWATCH_CONFIG", help="Config TOML (for InfluxDB)."
        ),
    ] = None,
) -> None:
    """Draw the count over time with the account's threshold lines and its events."""
    from followerwatch.app import build_reader
    from followerwatch.campaign_config import split
    from followerwatch.charts import account_chart
    from followerwatch.cli import _load
    from followerwatch.http import build_client
    from followerwatch.impact import load_series
    from followerwatch.options_cli import state_file_errors
    from followerwatch.state import StateDB

    cfg = _load(Path(config) if config else None)
    platform, name = split(account)
    end = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None

    async def run() -> list[tuple[datetime, int]]:
        async with build_client() as client:
            store = build_reader(cfg.settings.influxdb, client)
            stop = end or datetime.now().astimezone()
            return await load_series(
                store, platform, name, stop - timedelta(seconds=parse_duration(since)), stop
            )

    try:
        series = asyncio.run(run())
    except StoreError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if not series:
        print(f"followerwatch: no counts for {account} in that range", file=sys.stderr)
        raise typer.Exit(1)
    rules = cfg.rules.get((platform, name))
    lines = [("below", v) for v in (rules.below or [])] if rules else []
    lines += [("above", v) for v in (rules.above or [])] if rules else []
    with state_file_errors():
        state = StateDB(cfg.settings.service.data_dir / "state.sqlite3")
    try:
        events = [
            (e.time, e.value, str(e.kind))
            for e, _ in state.events(1000)
            if (e.platform, e.account) == (platform, name)
            and series[0][0] <= e.time <= series[-1][0]
        ]
    finally:
        state.close()
    account_chart(output, at_handle(name), series, lines, events)
    print(f"chart: {output}")
