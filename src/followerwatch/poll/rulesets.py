"""What an account's rule set asks of a poll beyond its evaluation: projections and scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from followerwatch.rules.approaching import Approaching
from followerwatch.rules.base import Rule, Scored


def projects(rules: Sequence[Rule]) -> bool:
    """Whether the rules draw projections (`followerwatch_projections` points)."""
    return any(isinstance(rule, Approaching) for rule in rules)


def scorers(rules: Sequence[Rule]) -> tuple[Scored, ...]:
    """The rules of an account that score its readings (none for most accounts)."""
    return tuple(rule for rule in rules if isinstance(rule, Scored))


def reading_score(rules: Sequence[Scored], states: Mapping[str, str]) -> float | None:
    """The first finite score the rules' states give (None while they are learning): the
    `unusual` field of the reading's `followers` point."""
    for rule in rules:
        value = rule.score(states.get(rule.name))
        # NaN and infinities have no line protocol: such a reading carries no score.
        if value is not None and math.isfinite(value):
            return float(value)
    return None
