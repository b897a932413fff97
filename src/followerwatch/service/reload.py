"""Hot reload: the config (and watchlist) files are polled every second and applied on change.

Polling a content hash needs no extra dependency and sees every kind of edit (in place, or an
editor's write-and-rename). An edit that does not load is refused once with one error naming the
file and line; the service keeps running on what it had until the file loads again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import structlog

from followerwatch.config.settings import Config, load_config
from followerwatch.errors import ConfigError

log = structlog.get_logger("followerwatch.reload")

_WATCH_ERROR = re.compile(r"^(?P<file>.+?): watch\[(?P<index>\d+)\]")
_HEADER = re.compile(r"^\s*\[\[\s*watch\s*\]\]")


def watched_files(config: Config) -> list[Path]:
    """The config file and, when it names one, the watchlist file."""
    if config.path is None:
        return []
    files = [config.path]
    watchlist = config.settings.watchlist
    if watchlist is not None:
        files.append(watchlist if watchlist.is_absolute() else config.path.parent / watchlist)
    return files


def _stat(files: list[Path]) -> tuple[tuple[int, ...], ...]:
    """What the filesystem says about the files; any write changes ctime (and usually more)."""
    out: list[tuple[int, ...]] = []
    for path in files:
        try:
            st = path.stat()
        except OSError as exc:
            out.append((-1, exc.errno or 0))
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def _fingerprint(files: list[Path]) -> tuple[tuple[str, str], ...]:
    out = []
    for path in files:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            digest = f"unreadable: {exc.strerror}"
        out.append((str(path), digest))
    return tuple(out)


def with_line(message: str) -> str:
    """Name the line of the [[watch]] entry an error is about: "fw.toml:14: watch[2] …"."""
    match = _WATCH_ERROR.match(message)
    if match is None:
        return message
    try:
        lines = Path(match["file"]).read_text(encoding="utf-8").splitlines()
    except OSError:
        return message
    headers = [n for n, line in enumerate(lines, start=1) if _HEADER.match(line)]
    index = int(match["index"])
    if index >= len(headers):
        return message
    return f"{match['file']}:{headers[index]}:{message[len(match['file']) + 1 :]}"


class ConfigWatcher:
    """Calls `apply(new_config)` whenever the files behind `config` change and load cleanly."""

    def __init__(
        self,
        config: Config,
        apply: Callable[[Config], object],
        *,
        load: Callable[[Path], Config] = load_config,
        interval: float = 1.0,
    ) -> None:
        if config.path is None:
            raise ValueError("a config loaded from no file cannot be watched")
        self.path = config.path
        self._apply = apply
        self._load = load
        self.interval = interval
        self._files = watched_files(config)
        self._stats = _stat(self._files)
        self._seen = _fingerprint(self._files)

    def check(self) -> bool:
        """Reload if the files changed; True when a new config was applied."""
        # Hashing a 100,000-entry watchlist every second costs more than a poll cycle's
        # share of the CPU; a stat that shows no write at all skips it.
        stats = _stat(self._files)
        if stats == self._stats:
            return False
        self._stats = stats
        now = _fingerprint(self._files)
        if now == self._seen:
            return False  # touched or rewritten with the same bytes
        self._seen = now
        try:
            config = self._load(self.path)
        except ConfigError as exc:
            log.error(
                "config change refused; still running the previous watchlist",
                error=with_line(str(exc)),
            )
            return False
        self._apply(config)
        # The watchlist file may have been renamed in the config itself.
        self._files = watched_files(config)
        self._stats = _stat(self._files)
        self._seen = _fingerprint(self._files)
        log.info("config reloaded", accounts=len(config.accounts))
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Check every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            if stop.is_set():
                return
            try:
                self.check()
            except Exception:
                # A reload must never take the running service down with it.
                log.exception("config reload failed; still running the previous watchlist")
