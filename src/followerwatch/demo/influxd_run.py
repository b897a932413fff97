"""The demo's own InfluxDB: find influxd, start a throwaway one, and always stop it again.

Always means on Ctrl-C, SIGTERM and SIGHUP too (they unwind like Ctrl-C, so every context exits),
and on errors; if the demo is killed outright, Linux stops influxd (TempInfluxd die_with_parent).
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType

from rich.console import Console

from followerwatch.demo.influxd import InfluxdError, TempInfluxd

NO_INFLUXD = (
    "influxd not found on PATH: install Debian's influxdb package (apt-get install influxdb), "
    "or pass --influx-url URL"
)
# The shell's code for "stopped by Ctrl-C"; SIGTERM and SIGHUP end the demo the same way.
INTERRUPTED = 130


class DemoError(Exception):
    """The demo cannot go on: one line for the user, and the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def influxd_on_path() -> str:
    """The influxd the demo starts: the one on PATH; DemoError saying how to get one if none."""
    binary = shutil.which("influxd")
    if binary is None:
        raise DemoError(NO_INFLUXD)
    return binary


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, so the demo unwinds."""
    previous = [
        (sig, signal.signal(sig, _interrupt))
        for sig in (signal.SIGTERM, signal.SIGHUP)
        if signal.getsignal(sig) is not signal.SIG_IGN  # nohup stays nohup
    ]
    try:
        yield
    finally:
        for sig, handler in previous:
            signal.signal(sig, handler)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait while influxd is being stopped and its folder removed."""
    previous = [
        (sig, signal.signal(sig, signal.SIG_IGN))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    ]
    try:
        yield
    finally:
        for sig, handler in previous:
            signal.signal(sig, handler)


def _one_line(exc: InfluxdError) -> str:
    # "influxd exited … during startup; log PATH:" then the log's tail: the first part and the
    # last log line (the folder, and so the log, may be gone by the time the user reads this).
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    head = lines[0].split("; log ")[0].rstrip(":") if lines else "influxd failed"
    return f"{head} ({lines[-1]})" if len(lines) > 1 else head


def spawn(stack: ExitStack, console: Console, binary: str, directory: Path | None) -> str:
    """Start influxd with its data in `directory` (None: a temp folder); stopped with `stack`."""
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file, or a place we may not write: the option is wrong
            raise DemoError(f"--spawn-influxd {directory}: {exc.strerror}", 2) from None
    server = TempInfluxd(directory, binary=binary, die_with_parent=True)
    try:
        stack.enter_context(server)
    except InfluxdError as exc:
        raise DemoError(f"cannot start influxd: {_one_line(exc)}") from None
    where = str(directory) if directory is not None else f"{server.data_dir}, removed at the end"
    console.print(
        f"Started a throwaway influxd at {server.url} (pid {server.pid}, data in {where})"
    )
    return server.url
