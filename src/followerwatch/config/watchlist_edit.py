"""`accounts add/remove`: edit the watchlist TOML in place, validated before anything is written.

Only the lines of the one entry added or removed change; every other byte of the file (comments,
order, blank lines, number formatting) stays as it was. tomlkit renders the new entry, and the
result is parsed again and loaded with `load_config` before it replaces the file.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import tomlkit

from followerwatch.clock import Clock, SystemClock
from followerwatch.config.settings import Config, load_config, read_toml
from followerwatch.errors import ConfigError, SourceError
from followerwatch.sources import REGISTRY
from followerwatch.sources.base import SourceContext

_HEADER = re.compile(r"^\s*\[\[\s*watch\s*\]\]\s*(#.*)?$")
_TABLE = re.compile(r"^\s*\[")


class EditError(Exception):
    """The edit was refused; nothing was written."""


@dataclass(frozen=True)
class Target:
    """The config file and the file that holds its [[watch]] entries (the same, or `watchlist`)."""

    config: Path
    file: Path

    @property
    def separate(self) -> bool:
        """Whether the entries live in a separate watchlist file."""
        return self.file != self.config


def find_target(config: Path) -> Target:
    """Where the [[watch]] entries of this config are written."""
    data = read_toml(config)
    watchlist = data.get("watchlist")
    if isinstance(watchlist, str):
        path = Path(watchlist)
        return Target(config, path if path.is_absolute() else config.parent / path)
    return Target(config, config)


def _entries(text: str) -> list[dict[str, Any]]:
    watch = tomllib.loads(text).get("watch", [])
    return list(watch) if isinstance(watch, list) else []


def entry_spans(lines: list[str]) -> list[tuple[int, int]]:
    """[start, end) line ranges of each [[watch]] entry, its comments above, no blanks after."""
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    spans = []
    for h in headers:
        start = _lead(lines, h)
        nxt = next((j for j in range(h + 1, len(lines)) if _TABLE.match(lines[j])), len(lines))
        end = _lead(lines, nxt) if nxt < len(lines) else nxt
        while end > h + 1 and not lines[end - 1].strip():
            end -= 1
        spans.append((start, end))
    return spans


def _lead(lines: list[str], header: int) -> int:
    """The first line of the comment block directly above a table header (a comment belongs to
    the table below it, not to the one it follows)."""
    start = header
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start


def _spans_or_refuse(target: Target, text: str) -> tuple[list[str], list[tuple[int, int]]]:
    lines = text.splitlines(keepends=True)
    spans = entry_spans(lines)
    if len(spans) != len(_entries(text)):
        raise EditError(
            f"{target.file}: the watch entries are not all written as [[watch]] tables; "
            "edit this file by hand"
        )
    return lines, spans


def render_entry(entry: dict[str, Any]) -> str:
    """One [[watch]] table as TOML, big numbers written with underscores (1_000_000)."""
    table = tomlkit.table()
    for key, value in entry.items():
        if isinstance(value, list):
            table[key] = [_number(v) for v in value]
        else:
            table[key] = _number(value)
    doc = tomlkit.document()
    aot = tomlkit.aot()
    aot.append(table)
    doc["watch"] = aot
    return tomlkit.dumps(doc)


def _number(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return tomlkit.integer(f"{value:_}")
    return value


def _same(entry: dict[str, Any], platform: str, handle: str) -> bool:
    if entry.get("platform") != platform:
        return False
    wanted = handle.lower()
    return str(entry.get("handle", "")).lower() == wanted or entry.get("name") == handle


def add_text(target: Target, text: str, entry: dict[str, Any]) -> str:
    """The file text with `entry` appended after the last [[watch]] entry; refuses duplicates."""
    lines, spans = _spans_or_refuse(target, text)
    platform, handle = entry["platform"], entry["handle"]
    name = entry.get("name")
    for i, existing in enumerate(_entries(text)):
        clash = _same(existing, platform, handle) or (
            name is not None and _same(existing, platform, name)
        )
        if clash:
            line = spans[i][0] + 1
            raise EditError(
                f"{platform}/{handle} is already on the watchlist ({target.file}:{line})"
            )
    at = spans[-1][1] if spans else len(lines)
    head = "".join(lines[:at])
    if head and not head.endswith("\n"):
        head += "\n"
    sep = "\n" if head.strip() else ""
    tail = "".join(lines[at:])
    new = head + sep + render_entry(entry) + tail
    if _entries(new) != [*_entries(text), entry]:
        raise EditError(f"{target.file}: could not place the new entry safely; add it by hand")
    return new


def remove_text(target: Target, text: str, platform: str, name: str) -> tuple[str, str]:
    """The file text without the entry whose resolved name (name, else handle) is platform/name,
    and the removed handle."""
    lines, spans = _spans_or_refuse(target, text)
    entries = _entries(text)
    # (platform, resolved name) is unique on a valid watchlist: the one entry, never a first hit
    # on "handle or name" (one entry's name may be another's handle).
    matches = [
        i
        for i, e in enumerate(entries)
        if e.get("platform") == platform and str(e.get("name") or e.get("handle", "")) == name
    ]
    if not matches:
        raise EditError(f"{platform}/{name} is not on the watchlist ({target.file})")
    index = matches[0]
    start, end = spans[index]
    # The blank lines after the entry go with it, so no gap is left doubled.
    while end < len(lines) and not lines[end].strip():
        end += 1
    if end == len(lines):
        while start > 0 and not lines[start - 1].strip():
            start -= 1
    new = "".join(lines[:start] + lines[end:])
    if _entries(new) != entries[:index] + entries[index + 1 :]:
        raise EditError(f"{target.file}: could not remove the entry safely; remove it by hand")
    return new, str(entries[index].get("handle", name))


def validate(target: Target, new_text: str) -> Config:
    """Load the config as it would be with `new_text` in place; raises ConfigError.

    The candidate is loaded from temporary files beside the real ones (so relative paths
    resolve alike); an error names the real file, never a temporary one.
    """
    directory = target.file.parent
    temps: list[Path] = []
    real: dict[str, Path] = {}
    try:
        candidate = _temp(directory, new_text, temps)
        real.update({str(candidate): target.file, str(candidate.resolve()): target.file})
        if not target.separate:
            return load_config(candidate)
        doc = tomlkit.parse(target.config.read_text(encoding="utf-8"))
        doc["watchlist"] = str(candidate.resolve())
        config = _temp(target.config.parent, tomlkit.dumps(doc), temps)
        real.update({str(config): target.config, str(config.resolve()): target.config})
        return load_config(config)
    except ConfigError as exc:
        message = str(exc)
        for temp, path in real.items():
            message = message.replace(temp, str(path))
        raise ConfigError(message) from None
    finally:
        for path in temps:
            path.unlink(missing_ok=True)


def _temp(directory: Path, text: str, temps: list[Path]) -> Path:
    fd, name = tempfile.mkstemp(prefix=".followerwatch-edit-", suffix=".toml", dir=directory)
    path = Path(name)
    temps.append(path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step, so a running service never reads half an edit."""
    fd, name = tempfile.mkstemp(prefix=".followerwatch-edit-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(name, path.stat().st_mode & 0o7777)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def add_account(
    config: Path,
    entry: dict[str, Any],
    resolve: Callable[[Config], str | None] | None = None,
) -> tuple[Target, str | None]:
    """Validate, optionally resolve (`resolve(candidate)` raises EditError), then write."""
    target = find_target(config)
    text = target.file.read_text(encoding="utf-8")
    new = add_text(target, text, entry)
    candidate = validate(target, new)
    note = resolve(candidate) if resolve is not None else None
    write_atomically(target.file, new)
    return target, note


def remove_account(config: Path, platform: str, name: str) -> tuple[Target, str]:
    """Remove the entry of the resolved account platform/name, validated before writing."""
    target = find_target(config)
    text = target.file.read_text(encoding="utf-8")
    new, removed = remove_text(target, text, platform, name)
    validate(target, new)
    write_atomically(target.file, new)
    return target, removed


async def resolve_handle(
    config: Config,
    platform: str,
    handle: str,
    *,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """Fetch the account once with the platform's real source; EditError if it has no count."""
    from followerwatch.net.http import build_client

    pcfg = config.settings.platform(platform)
    if pcfg.replay is not None:
        return f"{platform} is served from a replay file; the handle was not looked up"
    account = next(a for a in config.accounts if a.platform == platform and a.handle == handle)
    state_dir = config.settings.service.data_dir / "sources" / platform
    state_dir.mkdir(parents=True, exist_ok=True)
    async with build_client(transport) as client:
        ctx = SourceContext(client, clock or SystemClock(), state_dir)
        source = REGISTRY[platform].build(pcfg, ctx)
        try:
            result = await source.fetch([account])
        except SourceError as exc:
            raise EditError(
                f"could not look up {platform}/{handle}: {exc} (--offline adds it unchecked)"
            ) from None
    for obs in result.observations:
        return f"found {platform}/{handle}: {obs.followers:,} followers now"
    for failure in result.failures:
        raise EditError(f"{platform}/{handle}: {failure.kind} on {platform}; not added")
    raise EditError(f"{platform}/{handle}: {platform} returned nothing for it; not added")
