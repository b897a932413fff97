"""A small real filesystem for fault tests: a size-limited tmpfs mounted on a test's folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_fs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of `size` (e.g. "2m") on `path` for the block; the test fails if it cannot.

    Needs root (CI and the developers' machines run as root). Never a skip: a fault test that
    cannot make its fault must not pass silently.
    """
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs on {path} (root needed): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_read_only(path: Path) -> None:
    """Make the tmpfs on `path` read-only (for root too, unlike a file's mode bits)."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
