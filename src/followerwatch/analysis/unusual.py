"""The unusual rule as `check`, `history` and `report` show it: status lines and scores.

The status line is the rule's own (`status` of its stored state); this module only finds the
rule among an account's rules, reads the stored states without writing anything, and reads the
scores the writer stores as the float field `unusual` of each `followers` point.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from followerwatch.errors import StateFileError
from followerwatch.models import signed
from followerwatch.rules import build_rules
from followerwatch.rules.keys import RuleKeys
from followerwatch.state.rules import RuleStates
from followerwatch.store.base import QueryableStore
from followerwatch.store.influx_v1 import quote_literal

NAME = "unusual"  # the rule's name, its `rule` tag and its key in the rule states
FIELD = "unusual"  # the score's field on `followers`
LEARNING = "too little history"  # how the rule's status line starts while it learns

Key = tuple[str, str]


@runtime_checkable
class StatusRule(Protocol):
    """What the CLI needs of the unusual rule: its name, its status line, whether it fires."""

    @property
    def name(self) -> str: ...

    def status(self, state: str | None) -> str:
        """One line: learning, the typical rate, or the unusual change under way."""
        ...

    def active(self, state: str | None) -> bool:
        """Whether an unusual change is open."""
        ...


def unusual_rule(rules: Iterable[object]) -> StatusRule | None:
    """The unusual rule among an account's rules, if it is on."""
    for rule in rules:
        if isinstance(rule, StatusRule) and rule.name == NAME:
            return rule
    return None


def rule_of(keys: RuleKeys | None) -> StatusRule | None:
    """The unusual rule of an account's resolved rule keys (built as the service builds it)."""
    return None if keys is None else unusual_rule(build_rules(keys))


@dataclass(frozen=True, slots=True)
class Status:
    """One account's unusual-rule status line, and whether the rule fires or still learns."""

    key: Key
    line: str
    firing: bool

    @property
    def learning(self) -> bool:
        """The rule has too little history to judge yet."""
        return self.line.startswith(LEARNING)


def statuses(
    rules: Mapping[Key, StatusRule], states: Mapping[Key, Mapping[str, str]]
) -> list[Status]:
    """The status of every account in `rules` (in its order) from the stored rule states."""
    out = []
    for key, rule in rules.items():
        state = states.get(key, {}).get(NAME)
        out.append(Status(key, rule.status(state), rule.active(state)))
    return out


def stored_states(path: Path, keys: Sequence[Key]) -> dict[Key, dict[str, str]]:
    """The rule states of `keys` in state.sqlite3, read without writing (none if no file yet).

    `check` and `history` only look: the file is never created or migrated, and the connection
    is query-only. (mode=ro would leave the WAL's side files behind; "rw" still falls back to
    reading a write-protected file.)
    """
    if not keys or not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
        db.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise StateFileError(path, f"cannot be read ({exc})", "check it is readable") from None
    try:
        return RuleStates(db).rule_states_many(keys)
    except sqlite3.Error as exc:
        # A file from before rule states existed has no table: nothing stored yet.
        if "no such table" in str(exc):
            return {}
        raise StateFileError(path, f"cannot be read ({exc})", "check it is readable") from None
    finally:
        db.close()


async def load_scores(
    store: QueryableStore, platform: str, account: str, start: datetime, end: datetime | None
) -> dict[datetime, float]:
    """The unusual rule's score of each stored count between two times, by the count's time.

    Counts the rule did not score (off, or learning) have no `unusual` field: they are absent.
    """
    until = "" if end is None else f" AND time <= {int(end.timestamp())}s"
    rows = await store.query(
        f"SELECT {FIELD} FROM followers WHERE platform = {quote_literal(platform)}"
        f" AND account = {quote_literal(account)} AND time >= {int(start.timestamp())}s{until}",
        epoch="s",
    )
    return {
        datetime.fromtimestamp(int(t), UTC): float(v)
        for s in rows
        for t, v in s.get("values") or ()
        if v is not None
    }


def most_unusual(scores: Iterable[float]) -> float | None:
    """The score furthest from zero (a drop on a tie: +3 and -3 give -3), None without any."""
    # The tie-break is explicit so a day's cell does not depend on the order readings came in.
    return max(scores, key=lambda s: (abs(s), -s), default=None)


def per_day(scores: Mapping[datetime, float]) -> dict[date, float]:
    """The most unusual score of each UTC day that has one."""
    days: dict[date, list[float]] = {}
    for when, score in scores.items():
        days.setdefault(when.astimezone(UTC).date(), []).append(score)
    return {day: v for day, values in days.items() if (v := most_unusual(values)) is not None}


def format_score(score: float | None) -> str:
    """A score as a person reads it ("-46.2", "+3.1", "0.0"); blank when there is none."""
    return "" if score is None else signed(score, ".1f")
