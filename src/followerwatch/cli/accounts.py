"""`followerwatch accounts add/remove/list`: edit the watchlist TOML in place (issue 7)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from followerwatch import logs
from followerwatch.cli.options import ConfigOpt, Typer
from followerwatch.config.settings import Config, MissingConfig, find_config
from followerwatch.errors import ConfigError
from followerwatch.units import parse_count

accounts_app = Typer(help="Add, remove and list watched accounts (edits the TOML in place).")


def _config_file(config: Path | None) -> Path:
    try:
        path = find_config(config, watchlist=True)
    except MissingConfig as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if path is None:
        print(
            "followerwatch: the watchlist comes from the environment; accounts add and remove "
            "edit a config file (use --config)",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    return path


def _counts(option: str, values: list[str]) -> list[int]:
    """Each value of a count option (e.g. "5M"), or exit 2 with one line."""
    try:
        return [parse_count(value) for value in values]
    except ValueError as exc:
        print(f"followerwatch: {option}: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


@accounts_app.command("add")
def accounts_add(
    platform: Annotated[str, typer.Argument(help="Platform key, e.g. x, mastodon, youtube.")],
    handle: Annotated[str, typer.Argument(help="The handle as the platform knows it.")],
    config: ConfigOpt = None,
    name: Annotated[str | None, typer.Option(help="The stable `account` tag.")] = None,
    below: Annotated[
        list[str] | None,
        typer.Option(metavar="COUNT", help="Alert below this, e.g. 5M (repeatable)."),
    ] = None,
    above: Annotated[
        list[str] | None,
        typer.Option(metavar="COUNT", help="Alert at this, e.g. 250k (repeatable)."),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            metavar="COUNT", help="A milestone every COUNT followers (`milestones = COUNT`)."
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not look the handle up on the platform.")
    ] = False,
) -> None:
    """Add an account to the watchlist after validating it (and looking it up once)."""
    from followerwatch.cli.common import out
    from followerwatch.config.watchlist_edit import EditError, add_account, resolve_handle

    # Written as whole numbers (5_000_000), whatever form they were typed in.
    lines = {
        key: _counts(f"--{key}", values or [])
        for key, values in (("below", below), ("above", above))
    }
    milestones = _counts("--every", [every]) if every is not None else []
    path = _config_file(config)
    entry: dict[str, object] = {"platform": platform, "handle": handle}
    if name is not None:
        entry["name"] = name
    for key, values in lines.items():
        if values:
            entry[key] = values[0] if len(values) == 1 else values
    if milestones:
        entry["milestones"] = milestones[0]

    def resolve(candidate: Config) -> str | None:
        logs.register_secrets(candidate.settings.secrets())
        return asyncio.run(resolve_handle(candidate, platform, handle))

    try:
        target, note = add_account(path, entry, None if offline else resolve)
    except ConfigError as exc:
        print(f"followerwatch: not added, the result would be invalid: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except EditError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if note:
        out.print(escape(note))
    out.print(f"[green]✓[/] added {escape(f'{platform}/{handle} to {target.file}')}")


@accounts_app.command("remove")
def accounts_remove(
    account: Annotated[
        str, typer.Argument(help="platform/name (x/jack), the name alone, or the platform key.")
    ],
    handle: Annotated[
        str | None, typer.Argument(help="The handle or name, after a platform key.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Remove an account from the watchlist (`remove x/jack`, `remove jack` or `remove x jack`)."""
    from followerwatch.cli.args import (
        AccountRefError,
        AmbiguousAccount,
        resolve_account,
        usage_error,
    )
    from followerwatch.cli.common import load_or_exit, out
    from followerwatch.config.watchlist_edit import EditError, remove_account

    path = _config_file(config)
    ref = account if handle is None else f"{account}/{handle}"
    try:
        found = resolve_account(load_or_exit(path).accounts, ref)
    except AmbiguousAccount as exc:
        usage_error(str(exc))
    except AccountRefError as exc:
        # Not on the watchlist: refused, as the README's "1 refused" says.
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    try:
        target, removed = remove_account(path, found.platform, found.name)
    except (ConfigError, EditError) as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    out.print(f"[green]✓[/] removed {escape(f'{found.platform}/{removed} from {target.file}')}")


@accounts_app.command("list")
def accounts_list(config: ConfigOpt = None) -> None:
    """List the watched accounts and their threshold rules."""
    from followerwatch.cli.common import load_or_exit, out

    cfg = load_or_exit(config, watchlist=True)
    table = Table(title=f"{len(cfg.accounts)} watched accounts")
    for col in ("platform", "handle", "name", "below", "above", "milestones"):
        table.add_column(col)
    for account in cfg.accounts:
        rules = cfg.rules[account.key]
        ms = rules.milestones
        table.add_row(
            account.platform,
            escape(account.handle),
            escape(account.name) if account.name != account.handle else "",
            ", ".join(f"{v:,}" for v in rules.below or ()),
            ", ".join(f"{v:,}" for v in rules.above or ()),
            "" if ms is None else (f"every {ms.every:,}" if ms.every else f"{len(ms.levels)}"),
        )
    out.print(table)
