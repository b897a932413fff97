"""The values a poll hands the state database: last counts, changes, held zeros."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from followerwatch.models import Event

# The one rule whose state is a learned summary rewritten by every poll (a rule with
# `soft_state`): it is kept in the account's own row (`accounts.summary`), written with the last
# count in one row write, instead of a second row in rule_state. See state/rules.py.
SUMMARY_RULE = "unusual"


# NamedTuples, not frozen dataclasses: as immutable, and several times cheaper to build, which
# counts at one or two per observation.
class LastSeen(NamedTuple):
    """The last stored count of an account."""

    followers: int
    time: datetime
    platform_id: str | None
    handle: str | None


class Change(NamedTuple):
    """Everything one account's poll changes, committed atomically."""

    platform: str
    account: str
    last: LastSeen | None
    rule_states: dict[str, str]
    events: tuple[Event, ...]
    closed: tuple[str, ...] = ()
    # Every (time, count) read in this batch, for the history window rules use.
    history: tuple[tuple[datetime, int], ...] = ()
    # The count must be committed with the poll even if nothing else changed: the account's
    # first count, or a new handle or platform id (see state/behind.py).
    journal: bool = False
    # Every rule state in it is a learned summary that may be written behind with the count
    # (no event, no closed condition; see state/behind.py).
    soft: bool = False


class HeldZero(NamedTuple):
    """A reading of exactly 0 held as suspect (kept until confirmed or recovered)."""

    platform: str
    account: str
    time: datetime
    following: int | None
    posts: int | None
    platform_id: str | None
    handle: str | None
    resolution: int | None
