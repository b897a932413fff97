"""The Source protocol every platform module implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from followerwatch.models import Account, FetchResult


class Source(Protocol):
    """Fetches counts for a batch of accounts; raises SourceError subclasses, never logs."""

    key: ClassVar[str]
    batch_max: ClassVar[int]

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult: ...
