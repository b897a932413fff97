"""Files named by the config: relative paths from the config's folder, secret files read safely."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO

from pydantic_core import PydanticCustomError

# Secret files hold a token or a few URLs; anything bigger is the wrong file.
MAX_SECRET_FILE = 64 * 1024
# A config or watchlist file: 100,000 watch entries take about 10 MB; this is far past any.
MAX_CONFIG_FILE = 256 * 1024 * 1024
# The error context key naming the offending key under the model that raised (see one_line).
CONFIG_KEY = "config_key"

# The folder relative `*_file` paths are resolved from while a config loads (None: the cwd).
_config_dir: ContextVar[Path | None] = ContextVar("followerwatch_config_dir", default=None)


@contextlib.contextmanager
def paths_relative_to(folder: Path) -> Iterator[None]:
    """Inside the block, relative `*_file` paths validated are resolved from `folder`."""
    token = _config_dir.set(folder)
    try:
        yield
    finally:
        _config_dir.reset(token)


class Unreadable(Exception):
    """A file named by the config that is not one to read: the reason, in a few words."""


def resolve_path(value: object, file_key: str) -> Path:
    """A config path; a relative one is taken from the config file's folder while loading."""
    try:
        path = Path(str(value)).expanduser()
    except RuntimeError:  # `~user/...` for a user that does not exist
        raise PydanticCustomError(
            "path",
            "cannot find the home folder of {path}",
            {"path": str(value).partition("/")[0], CONFIG_KEY: file_key},
        ) from None
    folder = _config_dir.get()
    return path if path.is_absolute() or folder is None else folder / path


def open_regular(path: Path, max_bytes: int) -> BinaryIO:
    """`path` opened for reading if it is a regular file of at most `max_bytes`; else Unreadable.

    A FIFO or a device would block or never end: only regular files are opened at all, and
    without blocking. OSError (missing file, no permission) is the caller's to word.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise Unreadable("not a regular file")
    fh = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb")
    info = os.fstat(fh.fileno())
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        fh.close()
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("not a regular file")  # swapped after the stat
        raise Unreadable(f"larger than {_size(max_bytes)}")
    return fh


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 else f"{count >> 10} KiB"


def read_secret_file(path: Path, file_key: str) -> str:
    """The text of a secret file: a regular file of at most 64 KiB, opened without blocking."""

    def fail(reason: str) -> PydanticCustomError:
        return PydanticCustomError(
            "secret_file",
            "cannot read {path}: {reason}",
            {"path": str(path), "reason": reason, CONFIG_KEY: file_key},
        )

    try:
        with open_regular(path, MAX_SECRET_FILE) as fh:
            # Read one byte past the limit: the file may have grown since the fstat.
            raw = fh.read(MAX_SECRET_FILE + 1)
    except Unreadable as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(exc.strerror or type(exc).__name__) from None
    if len(raw) > MAX_SECRET_FILE:
        raise fail(f"larger than {MAX_SECRET_FILE // 1024} KiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("not UTF-8 text") from None
