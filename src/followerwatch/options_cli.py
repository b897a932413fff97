"""Options several `followerwatch` commands share (no imports of cli, so command modules can)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from followerwatch.errors import StateFileError

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
ResetOpt = Annotated[
    bool,
    typer.Option(
        "--reset-state",
        help="If state.sqlite3 or spool.sqlite3 is damaged, keep it aside as "
        "NAME.broken-<UTC time> and start with a new one (sound files are kept as they are).",
    ),
]


@contextmanager
def state_file_errors() -> Iterator[None]:
    """Exit 1 with one line naming the file when a local database is damaged or read-only."""
    try:
        yield
    except StateFileError as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
