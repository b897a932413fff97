"""The `followerwatch` command. Exit codes: 0 ok, 1 a check failed, 2 bad config."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from followerwatch import __version__, logs
from followerwatch.cli.accounts import accounts_app
from followerwatch.cli.args import OneLineErrors
from followerwatch.cli.common import load_or_exit, out
from followerwatch.cli.events import events as events_cmd
from followerwatch.cli.events import test_alert as test_alert_cmd
from followerwatch.cli.history import history as history_cmd
from followerwatch.cli.history import import_csv as import_csv_cmd
from followerwatch.cli.impact import impact as impact_cmd
from followerwatch.cli.options import ConfigOpt, ResetOpt, ShardOpt, Typer, state_file_errors
from followerwatch.cli.plot import plot as plot_cmd
from followerwatch.cli.report import report as report_cmd
from followerwatch.config.settings import Config
from followerwatch.errors import ConfigError, DatabaseMissingError, StoreError
from followerwatch.poll.batch import Row
from followerwatch.service.plan import PlanRow
from followerwatch.units import format_duration

if TYPE_CHECKING:
    from followerwatch.store.writer import Unwritten

app = Typer(
    cls=OneLineErrors,
    help="Watch follower counts on social platforms, store them in InfluxDB, alert on thresholds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"followerwatch {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options before the command (`followerwatch --version`)."""


_SHARD_VARIABLE = "FOLLOWERWATCH_SERVICE__SHARD"


def _load_sharded(path: Path | None, shard: str | None) -> Config:
    """load_or_exit, with --shard applied and the shard resolved (exit 2 when it cannot be)."""
    from followerwatch.poll.shard import resolve, validate_spec

    if shard is not None:
        try:
            validate_spec(shard)
        except ValueError as exc:
            print(f"followerwatch: invalid --shard: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        # Through the environment, so a config reloaded later keeps the same shard.
        os.environ[_SHARD_VARIABLE] = shard
    # With PostgreSQL state, a shard is a config error: said of --shard when it came from there.
    options = {_SHARD_VARIABLE: "--shard"} if shard is not None else None
    config = load_or_exit(path, watchlist=True, options=options)
    try:
        resolve(config.settings.service.shard)
    except ConfigError as exc:
        print(f"followerwatch: invalid config: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    return config


@app.command()
def run(config: ConfigOpt = None, shard: ShardOpt = None, reset_state: ResetOpt = False) -> None:
    """Run the service: poll every account on schedule until SIGINT/SIGTERM."""
    from followerwatch.service.app import App
    from followerwatch.service.serve import serve

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
    """Poll every account once now, print a table, write the points and evaluate the rules.

    Exits 1 when readings wait in the spool, a whole platform failed or every account failed.
    """
    from followerwatch.service.app import App

    if dry_run and reset_state:
        # A dry run promises to change nothing; setting a state file aside is a change.
        print("followerwatch: --dry-run and --reset-state cannot be combined", file=sys.stderr)
        raise typer.Exit(2)
    cfg = _load_sharded(config, shard)
    if cfg.settings.state.backend == "postgresql":
        # One pass has no leases to poll by: replicas take their accounts only while running.
        print(
            'followerwatch: poll works with [state] backend = "sqlite"; with "postgresql" the '
            "replicas poll (followerwatch run)",
            file=sys.stderr,
        )
        raise typer.Exit(2)

    async def main() -> tuple[list[Row], Unwritten | None, int]:
        async with App(cfg, dry_run=dry_run, reset_state=reset_state) as application:
            if not dry_run:
                await application.prepare()  # create_database
            rows = await application.poll_once()
            # Whether this run's points reached InfluxDB, or wait in the spool (and why).
            unwritten = None if dry_run else await application.writer.unwritten()
        return rows, unwritten, application.lost_readings

    with state_file_errors():
        rows, unwritten, lost = asyncio.run(main())
    print_rows(rows, title="Poll (dry run: nothing written)" if dry_run else "Poll")
    problems = poll_problems(rows, unwritten, lost)
    for problem in problems:
        print(f"followerwatch: {problem}", file=sys.stderr)
    raise typer.Exit(1 if problems else 0)


def _readings(n: int) -> str:
    return f"{n:,} reading" + ("" if n == 1 else "s")


def poll_problems(rows: list[Row], unwritten: Unwritten | None, lost: int) -> list[str]:
    """What fails a poll (exit 1), one line each; accounts not found etc. are not in it."""
    problems = []
    if unwritten is not None and unwritten.lines:
        what = (
            _readings(unwritten.readings) if unwritten.readings else f"{unwritten.lines:,} points"
        )
        problems.append(f"{what} spooled for later: {unwritten.reason}")
    if unwritten is not None and unwritten.rejected:
        problems.append(
            f"{_readings(unwritten.rejected)} rejected by InfluxDB "
            f"(moved to {unwritten.dead_letter}): {unwritten.rejected_reason}"
        )
    if lost:
        problems.append(f"{_readings(lost)} lost: the disk stayed full")
    by_platform: dict[str, list[Row]] = {}
    for row in rows:
        by_platform.setdefault(row.platform, []).append(row)
    down = [mine for mine in by_platform.values() if all(r.source_down for r in mine)]
    for mine in down:
        problems.append(f"{mine[0].platform} failed for every account: {mine[0].failure}")
    if rows and all(r.failure for r in rows) and len(down) < len(by_platform):
        problems.append("every account failed (see the table)")
    return problems


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
    """Validate config and watchlist, check InfluxDB, print the polling plan and rule statuses."""
    from followerwatch.cli.unusual import check_statuses
    from followerwatch.net.http import build_client
    from followerwatch.service.app import build_store
    from followerwatch.service.plan import build_plan

    cfg = _load_sharded(config, shard)
    ok = True
    out.print(f"[green]✓[/] config valid: {len(cfg.accounts)} accounts")

    async def influx() -> tuple[str | None, bool]:
        """The problem, if any, and whether the database is missing."""
        async with build_client() as client:
            store = build_store(cfg.settings.influxdb, client)
            try:
                await store.check()
            except DatabaseMissingError as exc:
                # Read-only: `poll`, `run` and `import` create it when asked to.
                return (None if cfg.settings.influxdb.create_database else str(exc)), True
            except StoreError as exc:
                return str(exc), False
            finally:
                await store.close()
        return None, False

    problem, missing = asyncio.run(influx())
    url = cfg.settings.influxdb.url
    if problem is None:
        created = "; database missing; it will be created on first write" if missing else ""
        out.print(f"[green]✓[/] InfluxDB reachable at {url}{created}")
    else:
        ok = False
        out.print(Text.assemble(("✗", "red"), f" InfluxDB: {problem}"))
    ok = print_plan(build_plan(cfg)) and ok
    if cfg.settings.state.backend == "postgresql":
        from followerwatch.cli.replicas import check_replicas

        ok = check_replicas(cfg, out) and ok
    else:
        ok = check_statuses(cfg, out) and ok
    raise typer.Exit(0 if ok else 1)


def print_plan(rows: list[PlanRow]) -> bool:
    """The polling-plan table; False when an interval is shorter than a ceiling allows.

    No row wraps in 80 columns: values are short, `requests` is left out when the platform
    names would not fit otherwise, and a name that still does not is cut with "…".
    """
    cells: list[dict[str, str | Text]] = []
    over: list[str] = []
    for row in rows:
        name = f"{row.platform} ({row.scope})" if row.scope else row.platform
        cell: dict[str, str | Text] = {
            "platform": Text(name, no_wrap=True, overflow="ellipsis"),
            "accounts": f"{row.accounts:,}",
            "requests": f"{row.requests_per_cycle:,}",
            "interval": format_duration(row.interval),
            "ceiling": "replay" if row.replay else "-",
            "shortest": "-",
            "use": "-",
        }
        if not row.replay and row.ceiling is not None and row.min_interval is not None:
            share = row.share or 0.0
            cell["ceiling"] = f"{row.ceiling[0]:,}/{format_duration(row.ceiling[1])}"
            cell["shortest"] = format_duration(row.min_interval)
            cell["use"] = Text(f"{share:.0%}", style="red" if share > 1 else "")
            if share > 1:
                over.append(
                    f"{name}: interval {cell['interval']} is under {cell['shortest']}, "
                    "the shortest its ceiling sustains (over the limit)"
                )
        cells.append(cell)
    columns = list(cells[0]) if cells else []

    def width(col: str) -> int:
        return max(len(col), *(len(str(c[col])) for c in cells)) + 3  # padding and border

    if cells and sum(width(col) for col in columns) + 1 > out.width:
        columns.remove("requests")  # the least needed: ceiling × shortest ÷ window
    table = Table(title="Polling plan")
    for col in columns:
        table.add_column(col, justify="left" if col == "platform" else "right")
    for cell in cells:
        table.add_row(*(cell[col] for col in columns))
    out.print(table)
    out.print("shortest: the shortest interval the ceiling sustains; use: its share of it")
    for line in over:
        out.print(Text(f"✗ {line}", style="red"))
    x_accounts = sum(r.accounts for r in rows if r.usd_per_day is not None)
    if x_accounts:
        cost = sum(r.usd_per_day or 0.0 for r in rows)
        accounts = f"{x_accounts:,} account{'s' * (x_accounts != 1)}"
        out.print(
            f"X costs ${cost:,.2f}/day for {accounts}: it bills $0.010 per user read and each "
            "user once per UTC day, so polling more often than daily costs nothing extra."
        )
    return not over


@app.command()
def demo(
    influx_url: Annotated[str | None, typer.Option(help="Use this InfluxDB (v1 API).")] = None,
    spawn_influxd: Annotated[
        Path | None,
        typer.Option(
            help="Start the throwaway influxd with its data in this folder (kept at the end)."
        ),
    ] = None,
    seconds: Annotated[float, typer.Option(help="How long the replay takes.")] = 20.0,
    keep_running: Annotated[
        bool,
        typer.Option(
            help="Leave the spawned influxd up at the end until Ctrl-C, to explore the data."
        ),
    ] = False,
) -> None:
    """Replay April 2009 (@aplusk vs @cnnbrk, then an Unfollow Day) through the real pipeline.

    With neither option: a throwaway influxd from PATH, in a temp folder, stopped at the end.
    """
    import math

    from pydantic_core import PydanticCustomError

    from followerwatch.config.fields import url_validator
    from followerwatch.demo.influxd_run import DemoError
    from followerwatch.demo.replay import run_demo

    if influx_url is not None and spawn_influxd is not None:
        print(
            "followerwatch: demo takes --influx-url or --spawn-influxd, not both",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    try:
        if influx_url is not None:
            influx_url = url_validator("a config file; the demo takes no credentials")(influx_url)
    except PydanticCustomError as exc:
        print(f"followerwatch: --influx-url: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if not (math.isfinite(seconds) and seconds > 0):
        print(
            f"followerwatch: --seconds must be a positive number of seconds, not {seconds}",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    logs.configure("info", "console", sys.stdout)
    try:
        code = run_demo(
            out,
            influx_url=influx_url,
            spawn_dir=spawn_influxd,
            seconds=seconds,
            keep_running=keep_running,
        )
    except DemoError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(exc.code) from None
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
