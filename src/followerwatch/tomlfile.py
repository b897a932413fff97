"""Reading TOML files: rtoml's speed, tomllib's messages and value types."""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timezone
from pathlib import Path
from typing import Any

import rtoml

from followerwatch.errors import ConfigError

__all__ = ["PIECE_CHARS", "Unsplittable", "read_toml", "toml_pieces"]

# rtoml's tree of a piece this long is about 6 MB.
PIECE_CHARS = 1 << 18
# A literal first character lets the regex engine skip ahead: 5 ms on 8.6 MB instead of 190 ms.
_DATETIME = re.compile(r"-\d\d-\d\d[Tt ]\d\d:\d\d")
# A line that is exactly an array-of-tables header `[[watch]]`.
_WATCH_HEADER = re.compile(r"^\[\[watch\]\][ \t]*\r?$", re.M)


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
    cut at `[[watch]]` headers and each piece parsed (and used) on its own. A cut inside a
    multi-line string leaves a piece that fails to parse, and a file that is not only
    [[watch]] entries does not add up: Unsplittable then, part-way, and the caller starts over
    with read_toml. A small file is one piece, parsed by rtoml, else tomllib (its messages).
    """
    text = _text(path)
    if len(text) <= piece_chars:
        try:
            data = rtoml.loads(text)
        except rtoml.TomlParsingError:
            raise Unsplittable from None
        yield _stdlib_zones(data) if _DATETIME.search(text) else data
        return
    cuts = [0]
    for match in _WATCH_HEADER.finditer(text, piece_chars):
        if match.start() >= cuts[-1] + piece_chars:
            cuts.append(match.start())
    cuts.append(len(text))
    for start, end in itertools.pairwise(cuts):
        try:
            part = rtoml.loads(text[start:end])
        except rtoml.TomlParsingError:
            raise Unsplittable from None
        if start == 0:
            entries = part.get("watch")
            if len(cuts) > 2 and not (
                isinstance(entries, list) and _WATCH_HEADER.search(text, 0, end)
            ):
                raise Unsplittable
        elif part.keys() != {"watch"} or not isinstance(part["watch"], list):
            raise Unsplittable
        yield _stdlib_zones(part) if _DATETIME.search(text, start, end) else part


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
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
