"""What the commands accept: account names, durations, dates and output paths, each checked once."""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from followerwatch.cli.options import PlainGroup
from followerwatch.models import Account
from followerwatch.units import parse_duration

# Click's base error, whether typer vendors click (0.2x) or imports it (0.12).
CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
# A lookback longer than this would reach before the times InfluxDB can store (1677).
MAX_LOOKBACK_S = 100 * 365 * 86400.0
# Dates outside these years are typing mistakes, and keep every window inside InfluxDB's range.
YEARS = (1800, 2200)
DATE_HINT = "an ISO 8601 date or time, e.g. 2009-04-27 or 2009-04-27T18:00:00Z (UTC unless a zone)"


class OneLineErrors(PlainGroup):
    """The root command: a usage error is one line on stderr and exit 2, never a box."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; print a usage error in one line (cron logs and pipes read lines)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except CLICK_ERROR as exc:
            print(f"followerwatch: {one_line(exc)}", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            print("followerwatch: aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def one_line(exc: Exception) -> str:
    """The error's message with the command it is about, and where help is, on one line."""
    text = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
    names: list[str] = []
    ctx = getattr(exc, "ctx", None)
    # The subcommands only: the program's own name depends on how it was started.
    while ctx is not None and getattr(ctx, "parent", None) is not None:
        names.insert(0, str(ctx.info_name))
        ctx = ctx.parent
    command = " ".join(names)
    where = " ".join(["followerwatch", *names])
    return f"{command + ': ' if command else ''}{text} (see `{where} --help`)"


class Lookback(str):
    """A duration as the user typed it ("2w"), with its length in seconds."""

    seconds: float

    def __new__(cls, text: str) -> Lookback:
        """Parse `text`; ValueError when it is not a duration a window can have."""
        seconds = parse_duration(text)
        if seconds <= 0:
            raise ValueError("a window must be longer than 0")
        if seconds > MAX_LOOKBACK_S:
            raise ValueError("at most 100 years (5200w)")
        self = super().__new__(cls, text.strip())
        self.seconds = seconds
        return self


# The defaults of --since/--window/--baseline (module-level, so no call sits in a signature).
LAST_24H = Lookback("24h")
LAST_7D = Lookback("7d")
LAST_30D = Lookback("30d")


def lookback(value: str) -> Lookback:
    """Typer parser for --since/--window/--baseline."""
    try:
        return Lookback(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r}: {exc}") from None


def moment(value: str) -> datetime:
    """Typer parser for dates: ISO 8601 with or without time; without a zone it is UTC."""
    from followerwatch.store.importer import parse_time

    try:
        when = parse_time(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: expected {DATE_HINT}") from None
    if not YEARS[0] <= when.astimezone(UTC).year <= YEARS[1]:
        raise typer.BadParameter(f"{value!r}: a year between {YEARS[0]} and {YEARS[1]}")
    return when


# The end of what plot and report draw.
UntilOpt = Annotated[
    datetime | None,
    typer.Option(
        parser=moment, metavar="DATE", help="End (ISO 8601 date or time, UTC unless a zone); now."
    ),
]


def output_file(value: Path | None) -> Path | None:
    """Typer callback for -o/--png: a file name in a folder that exists and can be written."""
    if value is None:
        return None
    try:
        if value.is_dir():
            raise typer.BadParameter(f"{str(value)!r} is a folder; name a file in it")
        folder = value.absolute().parent
        if not folder.is_dir():
            raise typer.BadParameter(f"the folder {str(folder)!r} does not exist")
    except OSError as exc:
        raise typer.BadParameter(f"{str(value)!r}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise typer.BadParameter(f"the folder {str(folder)!r} is not writable")
    return value


def window_order(start: datetime, end: datetime) -> None:
    """Exit 2 unless --from is before --to."""
    if start >= end:
        usage_error(f"--from ({start.isoformat()}) must be before --to ({end.isoformat()})")


def usage_error(message: str) -> NoReturn:
    """One line on stderr, exit 2: an argument the command cannot work with."""
    print(f"followerwatch: {message}", file=sys.stderr)
    raise typer.Exit(2)


class AccountRefError(ValueError):
    """An account reference that names no watched account, or several."""


class UnknownAccount(AccountRefError):
    """No watched account has that name or handle."""


class AmbiguousAccount(AccountRefError):
    """Several watched accounts have that name or handle."""


def platform_keys() -> Collection[str]:
    """The platform keys a reference may start with (`x/…`, `github/…`)."""
    from followerwatch.sources import REGISTRY

    return REGISTRY.keys()


def resolve_account(
    accounts: Sequence[Account],
    ref: str,
    platform: str | None = None,
    *,
    known: Collection[str] | None = None,
) -> Account:
    """The account `ref` names: `platform/name` or a bare name, by name, then handle, then
    handle ignoring case. An unwatched `platform/name` is returned as is (its counts may be
    in InfluxDB); a bare name must match exactly one watched account."""
    keys = platform_keys() if known is None else known
    head, slash, rest = ref.partition("/")
    if slash and head in keys:
        if platform is not None and platform != head:
            raise AccountRefError(f"{ref} is on {head}, not on --platform {platform}")
        try:
            return _match(accounts, rest, head, ref)
        except UnknownAccount:
            # A GitHub repository named like a platform ("x/tools") is still found whole.
            if platform is None and any(a.name == ref or a.handle == ref for a in accounts):
                return _match(accounts, ref, None, ref)
            return Account(head, rest, rest)
    if not ref.strip():
        raise AccountRefError("an account name cannot be empty")
    if platform is not None and platform not in keys:
        raise AccountRefError(f"unknown platform {platform!r} (one of: {', '.join(keys)})")
    try:
        return _match(accounts, ref, platform, ref)
    except UnknownAccount:
        if platform is None:
            raise
        return Account(platform, ref, ref)


def _match(accounts: Sequence[Account], name: str, platform: str | None, ref: str) -> Account:
    if not name.strip():
        raise AccountRefError(f"{ref!r}: the name after the platform is empty")
    pool = [a for a in accounts if platform in (None, a.platform)]
    bare = name.removeprefix("@").casefold()
    for tier in (
        [a for a in pool if a.name == name],
        # The README promises names ignoring case: "ashton" finds the entry named "Ashton".
        [a for a in pool if a.name.casefold() == name.casefold()],
        [a for a in pool if a.handle == name],
        [a for a in pool if a.handle.removeprefix("@").casefold() == bare],
    ):
        if len(tier) == 1:
            return tier[0]
        if tier:
            listed = ", ".join(f"{a.platform}/{a.name}" for a in tier)
            raise AmbiguousAccount(f"{ref} names several accounts: {listed}; write one of them")
    where = f" on {platform}" if platform else ""
    hint = "" if platform else f"; write it as platform/name, e.g. x/{name}"
    raise UnknownAccount(f"{ref} is not watched{where}{hint}")


def account_or_exit(accounts: Sequence[Account], ref: str, platform: str | None = None) -> Account:
    """resolve_account, or one line and exit 2."""
    try:
        return resolve_account(accounts, ref, platform)
    except AccountRefError as exc:
        usage_error(str(exc))
