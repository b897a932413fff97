"""Accounts with the same rule config share one immutable rule tuple."""

from __future__ import annotations

from pathlib import Path

import pytest

from followerwatch.config.base import RuleDefaults
from followerwatch.config.settings import load_config
from followerwatch.models import ByConfig
from followerwatch.rules import build_rule_sets, build_rules
from followerwatch.store.thresholds import threshold_lines

CONFIG = """
[platforms.x]
bearer_token = "t"
[platforms.x.defaults]
below = 10
[platforms.bluesky.defaults]
below = 10
"""


def test_same_config_same_rules_other_config_other_rules(tmp_path: Path) -> None:
    entries = [
        ("x", "a", ""),
        ("x", "b", ""),
        ("x", "c", "above = 99"),
        ("x", "d", "above = [99]"),
        ("x", "e", "above = 98"),
        ("bluesky", "f.bsky.social", ""),
    ]
    text = CONFIG + "".join(
        f'[[watch]]\nplatform = "{p}"\nhandle = "{h}"\n{extra}\n' for p, h, extra in entries
    )
    path = tmp_path / "fw.toml"
    path.write_text(text)
    config = load_config(path)
    sets = build_rule_sets(config.rules)
    assert sets.keys() == config.rules.keys()
    for key, rules in sets.items():
        # Shared or not, every account gets exactly the rules its own config builds.
        assert list(rules) == build_rules(config.rules[key])
    assert sets[("x", "a")] is sets[("x", "b")]
    assert sets[("x", "c")] is sets[("x", "d")]
    assert sets[("x", "c")] is not sets[("x", "e")] and sets[("x", "c")] != sets[("x", "e")]
    # Equal rules on another platform come from another RuleDefaults: built separately.
    assert sets[("bluesky", "f.bsky.social")] is not sets[("x", "a")]
    assert len({id(r) for r in sets.values()}) == 4


def test_per_account_maps_are_views_that_read_like_dicts(tmp_path: Path) -> None:
    text = CONFIG + "".join(
        f'[[watch]]\nplatform = "x"\nhandle = "{h}"\n{extra}\n'
        for h, extra in [("a", ""), ("b", "lifecycle = false\nbelow = []"), ("c", "above = 5")]
    )
    path = tmp_path / "fw.toml"
    path.write_text(text)
    config = load_config(path)
    lines = threshold_lines(config)
    as_dict = {("x", "a"): (("below", 10),), ("x", "c"): (("below", 10), ("above", 5))}
    assert lines == as_dict and dict(lines) == as_dict and dict(lines.items()) == as_dict
    assert len(lines) == 2 and bool(lines) and list(lines) == list(as_dict)
    assert ("x", "b") not in lines and ("x", "zz") not in lines and ("x", "a") in lines
    assert lines.get(("x", "b"), ()) == () and lines.get(("x", "zz")) is None
    with pytest.raises(KeyError):
        lines[("x", "b")]
    # An account's lines and rules are its config's: shared, never copied per account.
    assert lines[("x", "a")] is lines.get(("x", "a"))
    rules = build_rule_sets(config.rules)
    assert rules[("x", "b")] == () and len(rules) == 3
    assert not threshold_lines(load_config(path, {"watch": []}))


def test_a_derived_map_is_made_once_per_config_and_leaves_out_falsy_values(
    tmp_path: Path,
) -> None:
    text = CONFIG + "".join(
        f'[[watch]]\nplatform = "x"\nhandle = "{h}"\n{extra}\n'
        for h, extra in [("a", ""), ("b", 'stale = "1h"'), ("c", 'stale = "1h"')]
    )
    path = tmp_path / "fw.toml"
    path.write_text(text)
    config = load_config(path)
    made: list[object] = []

    def stale(rules: RuleDefaults) -> float | None:
        made.append(rules)
        return rules.stale

    derived = ByConfig(config.rules, {id(r): r for r in config.rules.values()}).derive(stale)
    assert dict(derived) == {("x", "b"): 3600.0, ("x", "c"): 3600.0} and len(made) == 2
    assert ("x", "a") not in derived and derived.get(("x", "a")) is None
    # Nothing has a value: empty, and known so without a pass over the accounts.
    assert not derived.derive(lambda seconds: None) and len(derived.derive(lambda s: 0)) == 0
