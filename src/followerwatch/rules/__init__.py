"""Alert rules: pure functions of (previous state, reading) → (new state, events)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from followerwatch.models import ByConfig
from followerwatch.rules.approaching import Approaching
from followerwatch.rules.base import Rule
from followerwatch.rules.health import Frozen, Stale
from followerwatch.rules.keys import RuleKeys
from followerwatch.rules.lifecycle import Lifecycle
from followerwatch.rules.milestone import Milestones
from followerwatch.rules.threshold import Threshold
from followerwatch.rules.unusual import Unusual
from followerwatch.rules.window import WindowChange


def build_rules(cfg: RuleKeys) -> list[Rule]:
    """The rules of one account from its resolved config."""
    hyst = cfg.hysteresis or 0
    for_polls, resolved = cfg.for_polls or 1, bool(cfg.resolved)
    rules: list[Rule] = [Threshold("below", v, hyst, for_polls, resolved) for v in cfg.below or []]
    rules += [Threshold("above", v, hyst, for_polls, resolved) for v in cfg.above or []]
    if cfg.milestones is not None:
        m = cfg.milestones
        rules.append(Milestones(m.every, tuple(sorted(m.levels)), m.down, hyst))
    for c in cfg.changes or []:
        amount = c.drop if c.drop is not None else c.rise
        percent = c.drop_pct if c.drop_pct is not None else c.rise_pct
        if c.drop is not None or c.drop_pct is not None:
            rules.append(WindowChange("drop", c.window, amount, percent))
        else:
            rules.append(WindowChange("rise", c.window, amount, percent))
    if cfg.stale:
        rules.append(Stale(cfg.stale))
    if cfg.frozen:
        rules.append(Frozen(cfg.frozen))
    lines = tuple([("below", v) for v in cfg.below or []] + [("above", v) for v in cfg.above or []])
    if cfg.approaching and lines:
        rules.append(Approaching(lines, cfg.approaching))
    if cfg.unusual is not None:
        u = cfg.unusual
        rules.append(Unusual(u.sensitivity, u.direction, u.min_change))
    if cfg.lifecycle is not False:
        rules.append(Lifecycle())
    return rules


K = TypeVar("K", bound=Hashable)


def build_rule_sets(configs: Mapping[K, RuleKeys]) -> Mapping[K, Sequence[Rule]]:
    """The rules of every account; accounts holding the same rule keys object share one tuple.

    Rules are immutable (their state lives in SQLite), and the config shares one RuleDefaults
    between entries with the same rule keys, so 100,000 accounts with a handful of rule
    configs need a handful of rule tuples, and no dict of their own (a view of `configs`).
    """
    built: dict[int, Sequence[Rule]] = {}
    for cfg in configs.values():
        if id(cfg) not in built:
            built[id(cfg)] = tuple(build_rules(cfg))
    return ByConfig(configs, built)
