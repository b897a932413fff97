"""The rule keys the rules are built from, as Protocols: config's RuleDefaults satisfies them.

config/ sits above the rules (it assembles every plugin's model), so the rules describe what they
read instead of importing the config model; mypy checks that the real model fits, and
tests/test_rule_keys.py that no key is missing on either side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from followerwatch.rules.trend import MilestoneLadder
from followerwatch.rules.unusual import Direction, Sensitivity


class MilestoneKeys(MilestoneLadder, Protocol):
    """`milestones`: a ladder (`every`) or a list (`levels`); `down` also announces a fall."""

    @property
    def down(self) -> bool: ...


class ChangeKeys(Protocol):
    """One `changes` entry: exactly one of drop, rise, drop_pct, rise_pct within `window` s."""

    @property
    def window(self) -> float: ...

    @property
    def drop(self) -> int | None: ...

    @property
    def rise(self) -> int | None: ...

    @property
    def drop_pct(self) -> float | None: ...

    @property
    def rise_pct(self) -> float | None: ...


class UnusualKeys(Protocol):
    """`unusual`: how far outside its own normal (sensitivity), which way, how many followers."""

    @property
    def sensitivity(self) -> Sensitivity: ...

    @property
    def direction(self) -> Direction: ...

    @property
    def min_change(self) -> int: ...


class RuleKeys(Protocol):
    """An account's resolved rule keys (None: not set); durations are in seconds."""

    @property
    def below(self) -> Sequence[int] | None: ...

    @property
    def above(self) -> Sequence[int] | None: ...

    @property
    def hysteresis(self) -> int | None: ...

    @property
    def for_polls(self) -> int | None: ...

    @property
    def resolved(self) -> bool | None: ...

    @property
    def milestones(self) -> MilestoneKeys | None: ...

    @property
    def changes(self) -> Sequence[ChangeKeys] | None: ...

    @property
    def stale(self) -> float | None: ...

    @property
    def frozen(self) -> float | None: ...

    @property
    def approaching(self) -> float | None: ...

    @property
    def lifecycle(self) -> bool | None: ...

    @property
    def unusual(self) -> UnusualKeys | None: ...
