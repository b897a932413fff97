"""Files named by the config: relative paths from the config's folder, secret files read safely."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from pydantic_core import PydanticCustomError

# Secret files hold a token or a few URLs; anything bigger is the wrong file.
MAX_SECRET_FILE = 64 * 1024
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


def resolve_path(value: object) -> Path:
    """A config path; a relative one is taken from the config file's folder while loading."""
    path = Path(str(value)).expanduser()
    folder = _config_dir.get()
    return path if path.is_absolute() or folder is None else folder / path


def read_secret_file(path: Path, file_key: str) -> str:
    """The text of a secret file: a regular file of at most 64 KiB, opened without blocking."""

    def fail(reason: str) -> PydanticCustomError:
        return PydanticCustomError(
            "secret_file",
            "cannot read {path}: {reason}",
            {"path": str(path), "reason": reason, CONFIG_KEY: file_key},
        )

    try:
        # A FIFO or a device would block or never end: only regular files are opened at all.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise fail("not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise fail("not a regular file")  # swapped after the stat
            raw = fh.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise fail(exc.strerror or type(exc).__name__) from None
    if len(raw) > MAX_SECRET_FILE:
        raise fail(f"larger than {MAX_SECRET_FILE // 1024} KiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("not UTF-8 text") from None
