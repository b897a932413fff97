"""`followerwatch import` and `followerwatch history`: past counts in, past counts out (issue 7)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from followerwatch.cli.args import LAST_7D, LAST_24H, Lookback, account_or_exit, lookback
from followerwatch.cli.options import ConfigOpt
from followerwatch.errors import StoreError
from followerwatch.models import at_handle

if TYPE_CHECKING:
    from followerwatch.config.settings import Config


def import_csv(
    file: Annotated[Path, typer.Argument(help="CSV: timestamp,platform,account,followers.")],
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and write nothing.")
    ] = False,
) -> None:
    """Write a CSV of past counts into InfluxDB (idempotent: importing twice changes nothing)."""
    from rich.progress import Progress

    from followerwatch.cli.common import load_or_exit, out
    from followerwatch.net.http import build_client
    from followerwatch.service.app import build_store, ensure_database
    from followerwatch.store import importer

    cfg = load_or_exit(config)
    labels = {a.key: a.labels for a in cfg.accounts}
    try:
        parsed = importer.parse_csv(file, labels, cfg.settings.influxdb.precision)
    except importer.ImportFileError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    for bad in parsed.bad[:20]:
        out.print(f"[red]✗[/] {escape(f'{file}:{bad.line}: {bad.reason}')}")
    if len(parsed.bad) > 20:
        out.print(f"… and {len(parsed.bad) - 20} more bad rows")
    summary = (
        f"{len(parsed.lines):,} rows for {len(parsed.accounts)} accounts, "
        f"{len(parsed.bad):,} bad rows"
    )
    if dry_run:
        out.print(Text(f"{summary} (dry run: nothing written)"))
        raise typer.Exit(1 if parsed.bad else 0)

    async def write() -> str | None:
        async with build_client() as client:
            store = build_store(cfg.settings.influxdb, client)
            try:
                await ensure_database(cfg.settings.influxdb, store)
                with Progress(console=out, transient=True) as progress:
                    task = progress.add_task("importing", total=len(parsed.lines))
                    await importer.write(store, parsed.lines, lambda n: progress.advance(task, n))
            except StoreError as exc:
                return str(exc)
            finally:
                await store.close()
        return None

    problem = asyncio.run(write())
    if problem is not None:
        # Text, so brackets in the server's words are not markup.
        out.print(
            Text.assemble(("✗", "red"), f" import stopped: {problem} (importing again is safe)")
        )
        raise typer.Exit(1)
    out.print(f"[green]✓[/] imported {summary}")
    baselines(cfg, parsed.accounts)
    raise typer.Exit(1 if parsed.bad else 0)


def baselines(cfg: Config, keys: set[tuple[str, str]]) -> None:
    """Relearn the unusual rule's baseline of the imported accounts that have the rule; say so."""
    from followerwatch.cli.common import out
    from followerwatch.clock import SystemClock
    from followerwatch.errors import StateFileError
    from followerwatch.net.http import build_client
    from followerwatch.rules import build_rule_sets
    from followerwatch.service.app import build_reader
    from followerwatch.service.baseline import refresh_imported, seedable_rules
    from followerwatch.state.db import StateDB

    rules = build_rule_sets(cfg.rules)
    seedables = seedable_rules(rules)
    if not any(k in seedables for k in keys):
        return

    async def refresh() -> tuple[bool, str]:
        async with build_client() as client:
            reader = build_reader(cfg.settings.influxdb, client)
            state = StateDB(cfg.settings.service.data_dir / "state.sqlite3")
            try:
                done = await refresh_imported(state, reader, rules, keys, SystemClock())
            finally:
                state.close()
        n = done.refreshed
        text = f"refreshed the unusual baseline of {n} account{'' if n == 1 else 's'}"
        if done.without_history:
            text += f" ({done.without_history} without stored counts)"
        if done.problem is not None:
            text += f"; stopped: {done.problem} (the rule learns from polls)"
        return done.problem is None, text

    try:
        ok, text = asyncio.run(refresh())
    except StateFileError as exc:
        ok, text = False, f"refreshed no unusual baseline: {exc}"
    # Text, so brackets in an error's words are not markup.
    out.print(Text.assemble(("✓", "green") if ok else ("!", "yellow"), f" {text}"))


def history(
    account: Annotated[str, typer.Argument(help="platform/name, or the name (or handle) alone.")],
    config: ConfigOpt = None,
    platform: Annotated[
        str | None, typer.Option(help="The platform, when the name is on several.")
    ] = None,
    since: Annotated[
        Lookback,
        typer.Option(parser=lookback, metavar="DURATION", help="How far back, e.g. 7d, 36h, 2w."),
    ] = LAST_7D,
    window: Annotated[
        Lookback,
        typer.Option(
            parser=lookback, metavar="DURATION", help="The trend window for the projection."
        ),
    ] = LAST_24H,
) -> None:
    """Show an account's count per day, a sparkline, and when it reaches its nearest line."""
    from datetime import UTC, datetime, timedelta

    from followerwatch.analysis import unusual
    from followerwatch.analysis.history import fetch, per_day, sparkline
    from followerwatch.cli.common import load_or_exit, out
    from followerwatch.cli.unusual import SCORE_LEGEND, account_status
    from followerwatch.net.http import build_client
    from followerwatch.rules.trend import milestone_lines, project
    from followerwatch.service.app import build_store
    from followerwatch.store.influx_v1 import InfluxV1Store

    cfg = load_or_exit(config)
    key = account_or_exit(cfg.accounts, account, platform).key
    since_s, window_s = since.seconds, window.seconds
    rules = cfg.rules.get(key)
    lines: list[tuple[str, int]] = []
    if rules is not None:
        lines = [("below", v) for v in rules.below or ()]
        lines += [("above", v) for v in rules.above or ()]
    now = datetime.now(UTC)

    async def load() -> tuple[list[tuple[datetime, int]], dict[datetime, float]]:
        async with build_client() as client:
            store = build_store(cfg.settings.influxdb, client)
            if not isinstance(store, InfluxV1Store):
                raise StoreError("history needs the v1 transport (InfluxQL queries)")
            start = now - timedelta(seconds=since_s)
            counts = await fetch(store, key[0], key[1], start)
            return counts, await unusual.load_scores(store, key[0], key[1], start, None)

    try:
        rows, scores = asyncio.run(load())
    except StoreError as exc:
        out.print(f"[red]✗[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    who = f"{at_handle(key[1])} on {key[0]}"
    # From the state file: with too little history the rule says so here, and guesses nothing.
    status = account_status(cfg, key)
    if not rows:
        out.print(Text(f"no readings of {who} in the last {since}"))
        if status is not None:
            out.print(Text(status))
        raise typer.Exit(1)
    # A score column while the rule is on, or when it left scores in the range.
    day_scores = unusual.per_day(scores) if status is not None or scores else None
    table = Table(title=Text(f"{who}: last {since}"))
    columns = ["day (UTC)", "first", "last", "low", "high", "readings", "net change"]
    for col in columns + (["score"] if day_scores is not None else []):
        table.add_column(col, justify="left" if col.startswith("day") else "right")
    for day in per_day(rows):
        cells = [
            day.day.isoformat(),
            f"{day.first:,}",
            f"{day.last:,}",
            f"{day.low:,}",
            f"{day.high:,}",
            str(day.readings),
            f"{day.change:+,}",
        ]
        if day_scores is not None:
            cells.append(unusual.format_score(day_scores.get(day.day)))
        table.add_row(*cells)
    out.print(table)
    if day_scores is not None:
        out.print(Text(SCORE_LEGEND, style="dim"))
    values = [v for _, v in rows]
    latest = scores.get(rows[-1][0])
    score = "" if latest is None else f" (score {unusual.format_score(latest)})"
    out.print(
        Text(f"{sparkline(values)}  {min(values):,} … {max(values):,}, now {values[-1]:,}{score}")
    )
    ahead = milestone_lines(rules.milestones if rules else None, values[-1])
    out.print(Text(project(rows, lines, milestones=ahead, window=window_s).message(who)))
    if status is not None:
        out.print(Text(status))
