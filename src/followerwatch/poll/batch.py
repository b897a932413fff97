"""The values a poll batch passes through: report rows, the evaluated batch, a held batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from followerwatch.models import Account, Event, FetchResult, Point
from followerwatch.poll.suspect import Screened
from followerwatch.state.db import Change
from followerwatch.store.pollpoints import PollPoints


class Row(NamedTuple):
    """One line of a poll report (a NamedTuple: one per observation, and cheap to build)."""

    platform: str
    account: str
    followers: int | None
    change: int | None
    events: tuple[Event, ...] = ()
    failure: str | None = None
    # A fall to 0 held until it has lasted the platform's `zero_confirm` (nothing stored yet).
    suspect: bool = False
    # The platform failed the whole batch (auth, rate limit, unreachable), not this account.
    source_down: bool = False


class Prepared(NamedTuple):
    """A batch screened and evaluated: what it commits, its report rows and its points."""

    changes: list[Change]
    rows: list[Row]
    points: PollPoints
    screened: Screened  # the suspect zeros it holds and releases, committed with it


class Waiting(NamedTuple):
    """A poll batch waiting in memory for the disk; `prepared` once it has been evaluated."""

    result: FetchResult
    extra_points: Sequence[Point]
    polled: Sequence[Account]
    polled_at: datetime  # stale and lifecycle rules judge an absent count as of then
    prepared: Prepared | None = None
