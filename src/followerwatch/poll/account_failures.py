"""Per-account failures (not found, suspended, malformed, …): logged once per change, counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import structlog

from followerwatch.models import Failure, FailureKind, Observation

log = structlog.get_logger("followerwatch.accounts")


class AccountFailures:
    """Which accounts are failing now, and per-account failures by kind since start.

    Kept in memory per process, like the collector's source health: an account is logged when
    it starts failing or fails differently, and once when a count is read for it again.
    """

    def __init__(self) -> None:
        self._failing: dict[tuple[str, str], FailureKind] = {}
        self._total: Counter[tuple[str, str]] = Counter()  # (platform, kind) → failed reads

    def update(self, observations: Sequence[Observation], failures: Sequence[Failure]) -> None:
        """Take one answered batch: its failures, and its counts (which end a failure)."""
        for failure in failures:
            account = failure.account
            kind = failure.kind
            self._total[(account.platform, kind)] += 1
            was = self._failing.get(account.key)
            if was == kind:
                continue
            self._failing[account.key] = kind
            log.warning(
                "account failing",
                platform=account.platform,
                account=account.name,
                kind=str(kind),
                detail=failure.detail,
                was=None if was is None else str(was),
            )
        if not self._failing:
            return  # the usual case: nothing to recover from, no lookup per observation
        for obs in observations:
            gone = self._failing.pop(obs.account.key, None)
            if gone is not None:
                log.info(
                    "account recovered",
                    platform=obs.account.platform,
                    account=obs.account.name,
                    was=str(gone),
                    followers=obs.followers,
                )

    def forget(self, watched: Collection[tuple[str, str]]) -> None:
        """Drop accounts no longer watched (a reloaded watchlist), without a log line."""
        for key in [k for k in self._failing if k not in watched]:
            del self._failing[key]

    def failing(self) -> dict[tuple[str, str], int]:
        """(platform, kind) → accounts failing that way now; 0 for kinds seen since start."""
        now: Counter[tuple[str, str]] = Counter(
            (platform, str(kind)) for (platform, _), kind in self._failing.items()
        )
        return {key: now.get(key, 0) for key in sorted({*now, *self.totals()})}

    def totals(self) -> dict[tuple[str, str], int]:
        """(platform, kind) → per-account failed reads since start."""
        return {(platform, str(kind)): n for (platform, kind), n in sorted(self._total.items())}
