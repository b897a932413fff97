"""The values a poll batch passes through: report rows, the evaluated batch, a held batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from followerwatch.models import Account, Event, Failure, FetchResult, Point
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


def batch_keys(result: FetchResult, polled: Sequence[Account]) -> list[tuple[str, str]]:
    """Every account a batch reads and writes state of."""
    keys = [o.account.key for o in result.observations]
    return keys + [a.key for a in polled] + [f.account.key for f in result.failures]


def failure_row(failure: Failure) -> Row:
    """The report row of an account the platform gave no count for."""
    account = failure.account
    # The kind, then the platform's own words: "not_found: Could not find user with …".
    status = f"{failure.kind}: {failure.detail}" if failure.detail else str(failure.kind)
    return Row(account.platform, account.name, None, None, failure=status)
