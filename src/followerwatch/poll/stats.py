"""What stored polls said, counted in memory as the pipeline stores them, for /metrics to read."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Sequence

from followerwatch.models import Point
from followerwatch.store.pollpoints import PollPoints
from followerwatch.store.schema import FOLLOWERS, POLLS

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
"""Upper bounds (seconds) the poll durations are counted in; the last bucket has no bound."""
SUCCESS = frozenset({"ok", "partial"})


class Durations:
    """One platform's poll durations: how many fell in each bucket (not cumulative), and the sum."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds


class PollStats:
    """Polls by platform and outcome, their durations and rate limits, and each account's count."""

    def __init__(self, now: Callable[[], float] = time.time, *, per_account: bool = True) -> None:
        self._now = now
        self.started = now()
        self.polls: Counter[tuple[str, str]] = Counter()  # (platform, outcome) → polls
        self.durations: dict[str, Durations] = {}
        self.ratelimit: dict[str, int] = {}  # requests left, as last reported
        self.followers: dict[tuple[str, str], int] = {}  # the last count stored
        self.last_success: dict[str, float] = {}
        # Whether `followers` is kept: a dict entry per account, off for a huge watchlist.
        self.per_account = per_account

    def keep_per_account(self, keep: bool) -> None:
        """Keep each account's last count from now on, or stop (and forget them)."""
        self.per_account = keep
        if not keep:
            self.followers.clear()

    def stored(self, points: Sequence[Point]) -> None:
        """Count what a batch's points say about its poll and its accounts' counts."""
        if isinstance(points, PollPoints):
            # A poll's counts straight from its observations: iterating would build the Points
            # the writer's line encoding exists to skip.
            if self.per_account:
                for obs in points.observations:
                    self.followers[obs.account.key] = obs.followers
            points = points.points
        for point in points:
            tags = dict(point.tags)
            fields = dict(point.fields)
            if point.measurement == POLLS:
                platform, outcome = tags["platform"], tags["outcome"]
                self.polls[(platform, outcome)] += 1
                duration = fields.get("duration_ms")
                if isinstance(duration, int):
                    self.durations.setdefault(platform, Durations()).observe(duration / 1000)
                remaining = fields.get("ratelimit_remaining")
                if isinstance(remaining, int):
                    self.ratelimit[platform] = remaining
                if outcome in SUCCESS:
                    self.last_success[platform] = self._now()
            elif point.measurement == FOLLOWERS:
                count = fields.get("followers")
                if isinstance(count, int) and self.per_account:
                    self.followers[(tags["platform"], tags["account"])] = count

    def since_success(self, platform: str) -> float:
        """Seconds since a poll of the platform last succeeded (since start-up if none has)."""
        return self._now() - self.last_success.get(platform, self.started)
