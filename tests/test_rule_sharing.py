"""Accounts with the same rule config share one immutable rule tuple."""

from __future__ import annotations

from pathlib import Path

from followerwatch.config.settings import load_config
from followerwatch.rules import build_rule_sets, build_rules

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
