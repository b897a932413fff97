"""What every command shares: the console and loading the config (exit 2 on a bad one)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import typer
from rich.console import Console

from followerwatch import logs
from followerwatch.config.settings import Config, MissingConfig, find_config, load_config
from followerwatch.errors import ConfigError

out = Console()


def load_or_exit(
    path: Path | None, *, watchlist: bool = False, options: Mapping[str, str] | None = None
) -> Config:
    """The config (exit 2 on a bad one); `watchlist`: the command needs one (see find_config).

    `options` maps the FOLLOWERWATCH_* variables this command set from its options to them.
    """
    try:
        config = load_config(find_config(path, watchlist=watchlist))
    except MissingConfig as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        print(f"followerwatch: {_invalid(str(exc), options or {})}", file=sys.stderr)
        raise typer.Exit(2) from None
    svc = config.settings.service
    logs.register_secrets(config.settings.secrets())
    logs.configure(svc.log_level, svc.log_format)
    return config


def _invalid(problem: str, options: Mapping[str, str]) -> str:
    """A config error as said to the user; one about a variable set from an option names it."""
    for name, option in options.items():
        head = f"environment {name}: "
        if problem.startswith(head):
            key, _, what = problem.removeprefix(head).partition(": ")
            return f"invalid {option}: {what.replace(key, option)}"
    return f"invalid config: {problem}"
