"""The `followerwatch` command. Exit codes: 0 ok, 1 a check failed, 2 bad config."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from followerwatch import __version__, logs
from followerwatch.accounts_cli import accounts_app
from followerwatch.cli_args import OneLineErrors
from followerwatch.config import Config, config_path_from_env, load_config
from followerwatch.durations import format_duration
from followerwatch.errors import ConfigError, StoreError
from followerwatch.events_cli import events as events_cmd
from followerwatch.events_cli import test_alert as test_alert_cmd
from followerwatch.history_cli import history as history_cmd
from followerwatch.history_cli import import_csv as import_csv_cmd
from followerwatch.impact_cli import impact as impact_cmd
from followerwatch.options_cli import ConfigOpt, ResetOpt, ShardOpt, state_file_errors
from followerwatch.pipeline import Row
from followerwatch.plan import PlanRow
from followerwatch.plot_cli import plot as plot_cmd
from followerwatch.report_cli import report as report_cmd

app = typer.Typer(
    cls=OneLineErrors,
    help="Watch follower counts on social platforms, store them in InfluxDB, alert on thresholds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()


def _load_sharded(path: Path | None, shard: str | None) -> Config:
    """_load, with --shard applied and the shard resolved (exit 2 when it cannot be)."""
    from followerwatch.shard import resolve, validate_spec

    if shard is not None:
        try:
            validate_spec(shard)
        except ValueError as exc:
            print(f"followerwatch: invalid --shard: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        # Through the environment, so a config reloaded later keeps the same shard.
        os.environ["FOLLOWERWATCH_SERVICE__SHARD"] = shard
    config = _load(path)
    try:
        resolve(config.settings.service.shard)
    except ConfigError as exc:
        print(f"followerwatch: invalid config: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    return config


def _load(path: Path | None) -> Config:
    try:
        config = load_config(config_path_from_env(path))
    except ConfigError as exc:
        print(f"followerwatch: invalid config: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    svc = config.settings.service
    logs.register_secrets(config.settings.secrets())
    logs.configure(svc.log_level, svc.log_format)
    return config


@app.command()
def run(config: ConfigOpt = None, shard: ShardOpt = None, reset_state: ResetOpt = False) -> None:
    """Run the service: poll every account on schedule until SIGINT/SIGTERM."""
    from followerwatch.app import App
    from followerwatch.service import serve

    cfg = _load_sharded(config, shard)

    async def main() -> bool:
        async with App(cfg, reset_state=reset_state) as application:
            clean = await serve(application)
        # Readings a full disk kept in memory and the exit lost make the stop unclean.
        return clean and not application.lost_readings

    with state_file_errors():
        clean = asyncio.run(main())
    raise typer.Exit(0 if clean else 1)


@app.command()
def poll(
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Fetch and evaluate only: write and alert nothing, change no state."
        ),
    ] = False,
    shard: ShardOpt = None,
    reset_state: ResetOpt = False,
) -> None:
    """Poll every account once now, print a table, write the points and evaluate the rules."""
    from followerwatch.app import App

    cfg = _load_sharded(config, shard)

    async def main() -> tuple[list[Row], int]:
        async with App(cfg, dry_run=dry_run, reset_state=reset_state) as application:
            rows = await application.poll_once()
        return rows, application.lost_readings

    with state_file_errors():
        rows, lost = asyncio.run(main())
    print_rows(rows, title="Poll (dry run: nothing written)" if dry_run else "Poll")
    # Readings a full disk kept from being stored fail the run (cron shows it).
    raise typer.Exit(1 if lost or (rows and all(r.failure for r in rows)) else 0)


MAX_TABLE_ROWS = 200


def print_rows(rows: list[Row], title: str) -> None:
    """The poll table; past MAX_TABLE_ROWS, a per-platform summary and only what needs a look."""
    if len(rows) > MAX_TABLE_ROWS:
        summary = Table(title=f"{title}: {len(rows):,} accounts")
        for col in ("platform", "accounts", "counted", "failed", "events"):
            summary.add_column(col, justify="left" if col == "platform" else "right")
        for platform in sorted({r.platform for r in rows}):
            mine = [r for r in rows if r.platform == platform]
            summary.add_row(
                platform,
                f"{len(mine):,}",
                f"{sum(r.followers is not None for r in mine):,}",
                f"{sum(r.failure is not None for r in mine):,}",
                f"{sum(len(r.events) for r in mine):,}",
            )
        out.print(summary)
        rows = [r for r in rows if r.failure or r.events or r.suspect][:MAX_TABLE_ROWS]
        title = f"Accounts with events, failures or suspect zeros (first {MAX_TABLE_ROWS})"
        if not rows:
            return
    table = Table(title=title)
    for col, justify in (
        ("platform", "left"),
        ("account", "left"),
        ("followers", "right"),
        ("change", "right"),
        ("events / status", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        change = "" if r.change is None else f"{r.change:+,}"
        # A failure reads "kind: the platform's detail"; Text, so brackets in it are not markup.
        if r.suspect:
            note = Text("suspect: a fall to 0, held (not stored) until it has lasted")
        elif r.failure:
            note = Text(r.failure, style="red")
        else:
            note = Text("; ".join(e.message for e in r.events))
        table.add_row(
            r.platform,
            Text(r.account),
            "" if r.followers is None else f"{r.followers:,}",
            change,
            note,
        )
    out.print(table)


@app.command()
def check(config: ConfigOpt = None, shard: ShardOpt = None) -> None:
    """Validate config and watchlist, check InfluxDB, and print the polling plan per platform."""
    from followerwatch.app import build_store
    from followerwatch.http import build_client
    from followerwatch.plan import build_plan

    cfg = _load_sharded(config, shard)
    ok = True
    out.print(f"[green]✓[/] config valid: {len(cfg.accounts)} accounts")

    async def influx() -> str | None:
        async with build_client() as client:
            store = build_store(cfg.settings.influxdb, client)
            try:
                await store.check()
            except StoreError as exc:
                return str(exc)
            finally:
                await store.close()
        return None

    problem = asyncio.run(influx())
    url = cfg.settings.influxdb.url
    if problem is None:
        out.print(f"[green]✓[/] InfluxDB reachable at {url}")
    else:
        ok = False
        out.print(f"[red]✗[/] InfluxDB: {problem}")
    ok = print_plan(build_plan(cfg)) and ok
    raise typer.Exit(0 if ok else 1)


def print_plan(rows: list[PlanRow]) -> bool:
    """The polling-plan table; False when an interval is shorter than a ceiling allows."""
    ok = True
    table = Table(title="Polling plan")
    for col in (
        "platform",
        "accounts",
        "requests/cycle",
        "interval",
        "ceiling",
        "shortest interval",
        "use of ceiling",
        "cost/day",
    ):
        table.add_column(col)
    for row in rows:
        ceiling, shortest, use = "-", "-", "-"
        if row.replay:
            ceiling = "replay (no requests)"
        elif row.ceiling is not None and row.min_interval is not None:
            ceiling = f"{row.ceiling[0]:,} / {format_duration(row.ceiling[1])}"
            shortest = format_duration(row.min_interval)
            share = row.share or 0.0
            use = f"{share:.0%}"
            if share > 1:
                ok = False
                use = f"[red]{share:.0%} (over the limit: interval < {shortest})[/]"
        cost = f"${row.usd_per_day:,.2f}" if row.usd_per_day is not None else "-"
        name = f"{row.platform} ({row.scope})" if row.scope else row.platform
        table.add_row(
            name,
            str(row.accounts),
            str(row.requests_per_cycle),
            format_duration(row.interval),
            ceiling,
            shortest,
            use,
            cost,
        )
    out.print(table)
    if any(r.usd_per_day for r in rows):
        out.print(
            "X bills $0.010 per user read and each user once per UTC day, so polling more "
            "often than daily costs nothing extra."
        )
    return ok


@app.command()
def demo(
    influx_url: Annotated[str | None, typer.Option(help="Use this InfluxDB (v1 API).")] = None,
    spawn_influxd: Annotated[
        Path | None, typer.Option(help="Start a throwaway influxd with its data in this folder.")
    ] = None,
    seconds: Annotated[float, typer.Option(help="How long the replay takes.")] = 20.0,
    keep_running: Annotated[
        bool,
        typer.Option(
            help="Leave the spawned influxd up at the end until Ctrl-C, to explore the data."
        ),
    ] = False,
) -> None:
    """Replay April 2009 (@aplusk vs @cnnbrk, then an Unfollow Day) through the real pipeline."""
    from followerwatch.demo import run_demo

    if (influx_url is None) == (spawn_influxd is None):
        print(
            "followerwatch: demo needs exactly one of --influx-url or --spawn-influxd",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    logs.configure("info", "console", sys.stdout)
    code = run_demo(
        out,
        influx_url=influx_url,
        spawn_dir=spawn_influxd,
        seconds=seconds,
        keep_running=keep_running,
    )
    raise typer.Exit(code)


def version() -> None:
    """Print the version."""
    out.print(f"followerwatch {__version__}")


# Registered in the order `followerwatch --help` lists them.
app.command()(events_cmd)
app.command("test-alert")(test_alert_cmd)
app.command()(version)
app.add_typer(accounts_app, name="accounts")
app.command("import")(import_csv_cmd)
app.command()(history_cmd)
app.command("impact")(impact_cmd)
app.command("plot")(plot_cmd)
app.command("report")(report_cmd)


def main() -> None:
    """Console-script entry point."""
    app()
