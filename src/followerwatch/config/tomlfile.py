"""Reading TOML files: rtoml's speed, tomllib's messages and value types."""

from __future__ import annotations

import io
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import rtoml

from followerwatch.config.files import MAX_CONFIG_FILE, Unreadable, open_regular
from followerwatch.errors import ConfigError

__all__ = ["PIECE_CHARS", "Unopenable", "Unsplittable", "read_toml", "toml_pieces"]

# rtoml's tree of a piece this long is about 1.5 MB: smaller pieces leave the heap less
# fragmented (100,000 entries: 12 MB less RSS after the load), at the same speed.
PIECE_CHARS = 1 << 16
# A literal first character lets the regex engine skip ahead: 5 ms on 8.6 MB instead of 190 ms.
_DATETIME = re.compile(r"-\d\d-\d\d[Tt ]\d\d:\d\d")
# A line that is exactly an array-of-tables header `[[watch]]`.
_WATCH_HEADER = re.compile(r"^\[\[watch\]\][ \t]*\r?$", re.MULTILINE)


class Unopenable(ConfigError):
    """The file is missing, unreadable, not a regular file or too big: "PATH: problem"."""


class Unsplittable(Exception):
    """The pieces of a file do not parse or do not add up: parse it whole (read_toml does)."""


def read_toml(path: Path, piece_chars: int = PIECE_CHARS) -> dict[str, Any]:
    """A TOML file as a dict; any problem is a one-line ConfigError naming the file.

    rtoml (Rust) parses a 100,000-entry watchlist six times faster than tomllib; tomllib
    re-reads only a file rtoml refuses, for its messages (line and column) and its verdict.
    """
    try:
        pieces = toml_pieces(path, piece_chars)
        data = next(pieces)
        for part in pieces:
            data["watch"].extend(part["watch"])
        return data
    except Unsplittable:
        try:
            return tomllib.loads(_text(path))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def toml_pieces(path: Path, piece_chars: int = PIECE_CHARS) -> Iterator[dict[str, Any]]:
    """A TOML file as dicts whose `watch` lists add up to the file's; the first has the rest.

    rtoml's tree costs 25 times the text (220 MB for an 8.6 MB watchlist), so a big file is
    read and cut at `[[watch]]` header lines, each piece parsed (and used) on its own. A cut
    inside a multi-line string leaves a piece that fails to parse, and a file that is not only
    [[watch]] entries does not add up: Unsplittable then, part-way, and the caller starts over
    with read_toml. A small file is one piece, parsed by rtoml, else tomllib (its messages).
    """
    # newline="": the text reaches the parser exactly as it is in the file.
    with io.TextIOWrapper(_open(path), encoding="utf-8", newline="") as fh:
        try:
            yield from _pieces(fh, piece_chars)
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not valid TOML: not UTF-8") from None
        except OSError as exc:
            raise Unopenable(f"{path}: cannot read: {exc.strerror}") from None


def _pieces(text: TextIO, piece_chars: int) -> Iterator[dict[str, Any]]:
    """The parsed pieces of a file's text (see toml_pieces).

    Read in blocks, and cut at the first header line at least `piece_chars` into a piece:
    splitting 100,000 entries into lines and matching each one took a third of the parse.
    """
    buffer, first, done = "", True, False
    while not done:
        block = text.read(piece_chars)
        done = not block
        buffer += block
        # A header is looked for only on whole lines: up to the last line end read so far.
        end = len(buffer) if done else buffer.rfind("\n") + 1
        while (found := _WATCH_HEADER.search(buffer, piece_chars, end)) is not None:
            cut = found.start()
            piece = buffer[:cut]
            headed = first and _WATCH_HEADER.search(piece) is not None
            yield _piece(piece, first, headed, last=False)
            buffer, end, first = buffer[cut:], end - cut, False
    yield _piece(buffer, first, first and _WATCH_HEADER.search(buffer) is not None, last=True)


def _piece(text: str, first: bool, headed: bool, *, last: bool) -> dict[str, Any]:
    try:
        part = rtoml.loads(text)
    except rtoml.TomlParsingError:
        raise Unsplittable from None
    if first and not last and not (isinstance(part.get("watch"), list) and headed):
        raise Unsplittable
    if not first and (part.keys() != {"watch"} or not isinstance(part["watch"], list)):
        raise Unsplittable
    return _stdlib_zones(part) if _DATETIME.search(text) else part


def _open(path: Path) -> BinaryIO:
    """The file opened for reading: a FIFO or a device would hang the load, so never those."""
    try:
        return open_regular(path, MAX_CONFIG_FILE)
    except Unreadable as exc:
        raise Unopenable(f"{path}: cannot read: {exc}") from None
    except FileNotFoundError:
        raise Unopenable(f"{path}: file not found") from None
    except OSError as exc:
        raise Unopenable(f"{path}: cannot read: {exc.strerror}") from None


def _text(path: Path) -> str:
    try:
        with _open(path) as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise Unopenable(f"{path}: file not found") from None
    except OSError as exc:
        raise Unopenable(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 (byte {exc.start})") from None


def _stdlib_zones(value: Any) -> Any:
    """`value` with every aware datetime's zone a datetime.timezone, as tomllib gives it.

    rtoml's offset datetimes carry its own tzinfo class.
    """
    if isinstance(value, dict):
        return {k: _stdlib_zones(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stdlib_zones(v) for v in value]
    if isinstance(value, datetime) and value.tzinfo is not None:
        offset = value.utcoffset()
        assert offset is not None
        zone = UTC if not offset else timezone(offset)
        return value.replace(tzinfo=zone)
    return value
