"""The score a reading's rules give it (the `unusual` field of its `followers` point)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from followerwatch.rules.base import Rule, Scored


def scorers(rules: Sequence[Rule]) -> tuple[Scored, ...]:
    """The rules of an account that score its readings (none for most accounts)."""
    return tuple(rule for rule in rules if isinstance(rule, Scored))


def reading_score(rules: Sequence[Scored], states: Mapping[str, str]) -> float | None:
    """The first finite score the rules' states give (None while they are learning)."""
    for rule in rules:
        value = rule.score(states.get(rule.name))
        # NaN and infinities have no line protocol: such a reading carries no score.
        if value is not None and math.isfinite(value):
            return float(value)
    return None
