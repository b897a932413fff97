"""The Store protocol: where points go."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from followerwatch.models import Point


class Store(Protocol):
    """A point sink with a reachability check."""

    precision: str

    async def write(self, points: Sequence[Point]) -> None: ...

    async def write_lines(self, lines: Sequence[str]) -> None: ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...


class QueryableStore(Store, Protocol):
    """A store that can also run InfluxQL (the v1 path)."""

    async def query(self, influxql: str, *, epoch: str | None = "s") -> list[dict[str, Any]]: ...
