"""Options several `followerwatch` commands share (no imports of cli, so command modules can)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
