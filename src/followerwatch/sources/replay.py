"""`replay`: plays a CSV (`timestamp,platform,account,followers`) back through the pipeline."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from followerwatch.clock import Clock
from followerwatch.errors import ConfigError
from followerwatch.models import Account, FetchResult, Observation


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_replay(path: Path, platform: str) -> dict[str, list[tuple[datetime, int]]]:
    """Rows of one platform by account, sorted by time; a bad row raises ConfigError (its line)."""
    rows: dict[str, list[tuple[datetime, int]]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"timestamp", "platform", "account", "followers"} - set(
                reader.fieldnames or []
            )
            if missing:
                raise ConfigError(f"{path}: header lacks {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                if row["platform"] != platform:
                    continue
                try:
                    when, count = _parse_time(row["timestamp"]), int(row["followers"])
                except (TypeError, ValueError):
                    raise ConfigError(f"{path}:{line}: bad timestamp or followers") from None
                if count < 0:
                    raise ConfigError(f"{path}:{line}: followers cannot be negative")
                rows.setdefault(row["account"], []).append((when, count))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    for series in rows.values():
        series.sort()
    return rows


class ReplaySource:
    """Serves recorded counts: `speed` 0 steps one row per poll, else replays time × speed."""

    def __init__(
        self,
        path: Path,
        platform: str,
        clock: Clock,
        speed: float = 0.0,
        position_file: Path | None = None,
        save_position: bool = True,
    ) -> None:
        self.platform = platform
        self.clock = clock
        self.speed = speed
        self._rows = read_replay(path, platform)
        # Step mode resumes where the last process stopped, so `poll` walks through the file.
        self._position_file = position_file if speed == 0 else None
        self._pos: dict[str, int] = self._load_position()
        self._save = save_position
        self._start = min((s[0][0] for s in self._rows.values() if s), default=None)
        self._wall_start: datetime | None = None

    @property
    def exhausted(self) -> bool:
        """Every row has been played."""
        return all(self._pos.get(k, 0) >= len(v) for k, v in self._rows.items())

    def _cursor(self) -> datetime | None:
        if self.speed == 0 or self._start is None:
            return None
        now = self.clock.now()
        if self._wall_start is None:
            self._wall_start = now
        return self._start + (now - self._wall_start) * self.speed

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        cursor = self._cursor()
        out: list[Observation] = []
        for account in accounts:
            key = account.name if account.name in self._rows else account.handle
            series = self._rows.get(key, [])
            pos = self._pos.get(key, 0)
            end = pos + 1 if cursor is None else pos
            while cursor is not None and end < len(series) and series[end][0] <= cursor:
                end += 1
            for when, count in series[pos : min(end, len(series))]:
                out.append(Observation(account, when, count, handle=account.handle))
            self._pos[key] = min(end, len(series))
        self._save_position()
        return FetchResult(observations=tuple(out), requests=0)

    def _load_position(self) -> dict[str, int]:
        if self._position_file is None or not self._position_file.exists():
            return {}
        try:
            data = json.loads(self._position_file.read_text())
        except (OSError, ValueError):
            return {}
        return (
            {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}
        )

    def _save_position(self) -> None:
        if self._position_file is not None and self._save:
            tmp = self._position_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._pos))
            tmp.replace(self._position_file)
