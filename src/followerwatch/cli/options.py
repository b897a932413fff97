"""Options several `followerwatch` commands share (no imports of cli, so command modules can)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType

from followerwatch.errors import StateFileError, StateUnavailable

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
    except (StateFileError, StateUnavailable) as exc:
        print(f"followerwatch: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


# Typer's own labels (`<path>`, `list[int]`) as the metavars help conventionally shows.
_METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH"}
_LABEL = re.compile(r"^<?(?:list\[)?([^\]>]*)\]?>?$")


class _PlainArgument(TyperArgument):
    """An argument shown as FILE in the usage line and its help row, not `{file}` `<path>`."""

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.metavar or self.name or ""
        name = name if self.required else f"[{name}]"
        return [name + ("..." if self.nargs != 1 else "")]

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _plain(params: list[Any], ctx: Any) -> list[Any]:
    """`params` with conventional metavars: none for a flag (`--help`, not `--help <bool>`)."""
    for param in params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "").upper()
            # Typer offers no hook for an argument's class; this one only changes its help.
            param.__class__ = _PlainArgument
        elif isinstance(param, TyperOption) and param.metavar is None:
            if param.is_flag or param.count:
                param.metavar = ""
            else:
                label = str(param.display_type_rich(ctx) or "")
                match = _LABEL.match(label)
                inner = match.group(1) if match else label
                param.metavar = (
                    f"[{inner}]" if "|" in inner else _METAVARS.get(inner, inner.upper())
                )
    return params


class PlainCommand(TyperCommand):
    """A command whose --help shows FILE and PATH, never `{file}` or `<bool>`."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx), ctx)


class PlainGroup(TyperGroup):
    """A command group whose --help shows no `<bool>` beside its flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx), ctx)


class Typer(typer.Typer):
    """typer.Typer whose groups and commands show plain help (PlainGroup, PlainCommand)."""

    def __init__(self, *, cls: type[TyperGroup] = PlainGroup, **kwargs: Any) -> None:
        super().__init__(cls=cls, **kwargs)

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        """typer.Typer.command, with PlainCommand for the class."""
        return super().command(name, cls=cls or PlainCommand, **kwargs)
