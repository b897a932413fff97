"""What every command shares: the console and loading the config (exit 2 on a bad one)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from followerwatch import logs
from followerwatch.config.settings import Config, MissingConfig, find_config, load_config
from followerwatch.errors import ConfigError

out = Console()


def load_or_exit(path: Path | None, *, watchlist: bool = False) -> Config:
    """The config (exit 2 on a bad one); `watchlist`: the command needs one (see find_config)."""
    try:
        config = load_config(find_config(path, watchlist=watchlist))
    except MissingConfig as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        print(f"followerwatch: invalid config: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    svc = config.settings.service
    logs.register_secrets(config.settings.secrets())
    logs.configure(svc.log_level, svc.log_format)
    return config
