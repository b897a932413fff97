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

from followerwatch import __version__, logs
from followerwatch.config import Config, config_path_from_env, load_config
from followerwatch.durations import format_duration
from followerwatch.errors import ConfigError, StoreError
from followerwatch.impact_cli import impact as impact_cmd
from followerwatch.pipeline import Row
from followerwatch.plan import PlanRow
from followerwatch.plot_cli import plot as plot_cmd
from followerwatch.report_cli import report as report_cmd

app = typer.Typer(
    help="Watch follower counts on social platforms, store them in InfluxDB, alert on thresholds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="FOLLOWERWATCH_CONFIG",
        show_envvar=True,
        help="Config TOML (default: ./followerwatch.toml).",
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="Poll only shard INDEX of COUNT (INDEX/COUNT, or auto/COUNT from a StatefulSet "
        "pod's hostname); overrides service.shard.",
    ),
]


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
def run(config: ConfigOpt = None, shard: ShardOpt = None) -> None:
    """Run the service: poll every account on schedule until SIGINT/SIGTERM."""
    from followerwatch.app import App
    from followerwatch.service import serve

    cfg = _load_sharded(config, shard)

    async def main() -> bool:
        async with App(cfg) as application:
            return await serve(application)

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
) -> None:
    """Poll every account once now, print a table, write the points and evaluate the rules."""
    from followerwatch.app import App

    cfg = _load_sharded(config, shard)

    async def main() -> list[Row]:
        async with App(cfg, dry_run=dry_run) as application:
            return await application.poll_once()

    rows = asyncio.run(main())
    print_rows(rows, title="Poll (dry run: nothing written)" if dry_run else "Poll")
    raise typer.Exit(1 if rows and all(r.failure for r in rows) else 0)


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
        rows = [r for r in rows if r.failure or r.events][:MAX_TABLE_ROWS]
        title = f"Accounts with events or failures (first {MAX_TABLE_ROWS})"
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
        note = r.failure or "; ".join(e.message for e in r.events)
        table.add_row(
            r.platform, r.account, "" if r.followers is None else f"{r.followers:,}", change, note
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


@app.command()
def events(
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="How many of the newest events.")] = 20,
) -> None:
    """List recent events with their delivery status per notifier."""
    from followerwatch.state import StateDB

    cfg = _load(config)
    state = StateDB(cfg.settings.service.data_dir / "state.sqlite3")
    try:
        rows = state.events(limit)
    finally:
        state.close()
    table = Table(title=f"Last {len(rows)} events")
    for col in ("time", "platform", "account", "kind", "severity", "message", "deliveries"):
        table.add_column(col)
    for event, deliveries in rows:
        table.add_row(
            event.time.strftime("%Y-%m-%d %H:%M:%S"),
            event.platform,
            event.account,
            str(event.kind),
            str(event.severity),
            event.message,
            ", ".join(f"{n}: {st}" for n, st in sorted(deliveries.items())) or "-",
        )
    out.print(table)


@app.command("test-alert")
def test_alert(config: ConfigOpt = None) -> None:
    """Send a test event through every configured notifier and report each result."""
    from followerwatch.alerting import send_test_alert

    cfg = _load(config)
    results = asyncio.run(send_test_alert(cfg))
    for name, problem in results.items():
        out.print(f"[green]✓[/] {name}" if problem is None else f"[red]✗[/] {name}: {problem}")
    raise typer.Exit(0 if all(p is None for p in results.values()) else 1)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"followerwatch {__version__}")


# --- accounts: edit the watchlist (issue 7) -------------------------------------------------

accounts_app = typer.Typer(help="Add, remove and list watched accounts (edits the TOML in place).")
app.add_typer(accounts_app, name="accounts")


def _config_file(config: Path | None) -> Path:
    path = config_path_from_env(config)
    if path is None:
        print("followerwatch: no config file (use --config)", file=sys.stderr)
        raise typer.Exit(2)
    return path


@accounts_app.command("add")
def accounts_add(
    platform: Annotated[str, typer.Argument(help="Platform key, e.g. x, mastodon, youtube.")],
    handle: Annotated[str, typer.Argument(help="The handle as the platform knows it.")],
    config: ConfigOpt = None,
    name: Annotated[str | None, typer.Option(help="The stable `account` tag.")] = None,
    below: Annotated[list[int] | None, typer.Option(help="Alert below this (repeatable).")] = None,
    above: Annotated[list[int] | None, typer.Option(help="Alert at this (repeatable).")] = None,
    every: Annotated[
        int | None, typer.Option(help="A milestone every N followers (`milestones = N`).")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not look the handle up on the platform.")
    ] = False,
) -> None:
    """Add an account to the watchlist after validating it (and looking it up once)."""
    from followerwatch.watchlist_edit import EditError, add_account, resolve_handle

    path = _config_file(config)
    entry: dict[str, object] = {"platform": platform, "handle": handle}
    if name is not None:
        entry["name"] = name
    for key, values in (("below", below), ("above", above)):
        if values:
            entry[key] = values[0] if len(values) == 1 else values
    if every is not None:
        entry["milestones"] = every

    def resolve(candidate: Config) -> str | None:
        logs.register_secrets(candidate.settings.secrets())
        return asyncio.run(resolve_handle(candidate, platform, handle))

    try:
        target, note = add_account(path, entry, None if offline else resolve)
    except ConfigError as exc:
        print(f"followerwatch: not added, the result would be invalid: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    except EditError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if note:
        out.print(note)
    out.print(f"[green]✓[/] added {platform}/{handle} to {target.file}")


@accounts_app.command("remove")
def accounts_remove(
    platform: Annotated[str, typer.Argument(help="Platform key.")],
    handle: Annotated[str, typer.Argument(help="The handle (or the entry's name).")],
    config: ConfigOpt = None,
) -> None:
    """Remove an account from the watchlist."""
    from followerwatch.watchlist_edit import EditError, remove_account

    path = _config_file(config)
    try:
        target, removed = remove_account(path, platform, handle)
    except (ConfigError, EditError) as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    out.print(f"[green]✓[/] removed {platform}/{removed} from {target.file}")


@accounts_app.command("list")
def accounts_list(config: ConfigOpt = None) -> None:
    """List the watched accounts and their threshold rules."""
    cfg = _load(config)
    table = Table(title=f"{len(cfg.accounts)} watched accounts")
    for col in ("platform", "handle", "name", "below", "above", "milestones"):
        table.add_column(col)
    for account in cfg.accounts:
        rules = cfg.rules[account.key]
        ms = rules.milestones
        table.add_row(
            account.platform,
            account.handle,
            account.name if account.name != account.handle else "",
            ", ".join(f"{v:,}" for v in rules.below or ()),
            ", ".join(f"{v:,}" for v in rules.above or ()),
            "" if ms is None else (f"every {ms.every:,}" if ms.every else f"{len(ms.levels)}"),
        )
    out.print(table)


# --- import: history from a CSV (issue 7) -----------------------------------------------------


@app.command("import")
def import_csv(
    file: Annotated[Path, typer.Argument(help="CSV: timestamp,platform,account,followers.")],
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and write nothing.")
    ] = False,
) -> None:
    """Write a CSV of past counts into InfluxDB (idempotent: importing twice changes nothing)."""
    from rich.progress import Progress

    from followerwatch import importer
    from followerwatch.app import build_store
    from followerwatch.http import build_client

    cfg = _load(config)
    labels = {a.key: a.labels for a in cfg.accounts}
    try:
        parsed = importer.parse_csv(file, labels, cfg.settings.influxdb.precision)
    except importer.ImportFileError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    for bad in parsed.bad[:20]:
        out.print(f"[red]✗[/] {file}:{bad.line}: {bad.reason}")
    if len(parsed.bad) > 20:
        out.print(f"… and {len(parsed.bad) - 20} more bad rows")
    summary = (
        f"{len(parsed.lines):,} rows for {len(parsed.accounts)} accounts, "
        f"{len(parsed.bad):,} bad rows"
    )
    if dry_run:
        out.print(f"{summary} (dry run: nothing written)")
        raise typer.Exit(1 if parsed.bad else 0)

    async def write() -> str | None:
        async with build_client() as client:
            store = build_store(cfg.settings.influxdb, client)
            try:
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
        out.print(f"[red]✗[/] import stopped: {problem} (importing again is safe)")
        raise typer.Exit(1)
    out.print(f"[green]✓[/] imported {summary}")
    raise typer.Exit(1 if parsed.bad else 0)


# --- history and projection (issue 7) -----------------------------------------------------------


@app.command()
def history(
    account: Annotated[str, typer.Argument(help="The account's name (or handle).")],
    config: ConfigOpt = None,
    platform: Annotated[
        str | None, typer.Option(help="The platform, when the name is on several.")
    ] = None,
    since: Annotated[str, typer.Option(help="How far back, e.g. 7d, 36h.")] = "7d",
    window: Annotated[str, typer.Option(help="The trend window for the projection.")] = "24h",
) -> None:
    """Show an account's count per day, a sparkline, and when it reaches its nearest line."""
    from datetime import UTC, datetime, timedelta

    from followerwatch.app import build_store
    from followerwatch.durations import parse_duration
    from followerwatch.history import fetch, per_day, sparkline
    from followerwatch.http import build_client
    from followerwatch.projection import project
    from followerwatch.store.influx_v1 import InfluxV1Store

    cfg = _load(config)
    try:
        since_s, window_s = parse_duration(since), parse_duration(window)
    except ValueError as exc:
        print(f"followerwatch: --since/--window: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    matches = [
        a for a in cfg.accounts if account in (a.name, a.handle) and platform in (None, a.platform)
    ]
    if len(matches) > 1:
        print(f"followerwatch: {account} is on several platforms; add --platform", file=sys.stderr)
        raise typer.Exit(2)
    if not matches and platform is None:
        print(f"followerwatch: {account} is not watched; add --platform", file=sys.stderr)
        raise typer.Exit(2)
    key = matches[0].key if matches else (platform or "", account)
    rules = cfg.rules.get(key)
    lines: list[tuple[str, int]] = []
    if rules is not None:
        lines = [("below", v) for v in rules.below or ()]
        lines += [("above", v) for v in rules.above or ()]
    now = datetime.now(UTC)

    async def load() -> list[tuple[datetime, int]]:
        async with build_client() as client:
            store = build_store(cfg.settings.influxdb, client)
            if not isinstance(store, InfluxV1Store):
                raise StoreError("history needs the v1 transport (InfluxQL queries)")
            return await fetch(store, key[0], key[1], now - timedelta(seconds=since_s))

    try:
        rows = asyncio.run(load())
    except StoreError as exc:
        out.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None
    who = f"@{key[1]} on {key[0]}"
    if not rows:
        out.print(f"no readings of {who} in the last {since}")
        raise typer.Exit(1)
    table = Table(title=f"{who}: last {since}")
    for col in ("day (UTC)", "first", "last", "low", "high", "readings", "net change"):
        table.add_column(col, justify="left" if col.startswith("day") else "right")
    for day in per_day(rows):
        table.add_row(
            day.day.isoformat(),
            f"{day.first:,}",
            f"{day.last:,}",
            f"{day.low:,}",
            f"{day.high:,}",
            str(day.readings),
            f"{day.change:+,}",
        )
    out.print(table)
    values = [v for _, v in rows]
    out.print(f"{sparkline(values)}  {min(values):,} … {max(values):,}, now {values[-1]:,}")
    out.print(project(rows, lines, window=window_s).message(who))


app.command("impact")(impact_cmd)
app.command("plot")(plot_cmd)
app.command("report")(report_cmd)


def main() -> None:
    """Console-script entry point."""
    app()
