"""The Source protocol every platform module implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import httpx

from followerwatch.clock import Clock
from followerwatch.models import Account, FetchResult


@dataclass(frozen=True)
class SourceContext:
    """What the composition root hands every source builder."""

    client: httpx.AsyncClient
    clock: Clock
    # A folder the source may keep small files in (e.g. a daily quota ledger); it survives restarts.
    state_dir: Path


class Source(Protocol):
    """Fetches counts for a batch of accounts; raises SourceError subclasses, never logs."""

    key: ClassVar[str]
    batch_max: ClassVar[int]

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult: ...
