"""The rules read their keys through Protocols (rules/keys.py); the config models must fit them.

mypy checks the types where the service builds the rules; this checks the names both ways, so a
key renamed or added in config/ without the rules following fails here.
"""

from __future__ import annotations

from pydantic import BaseModel

from followerwatch.config.base import ChangeConfig, MilestoneConfig, RuleDefaults, UnusualConfig
from followerwatch.rules import build_rules
from followerwatch.rules.keys import ChangeKeys, MilestoneKeys, RuleKeys, UnusualKeys
from followerwatch.rules.milestone import Milestones
from followerwatch.rules.unusual import Unusual
from followerwatch.rules.window import WindowChange

# Rule keys that the rules themselves never read: `repeat` paces re-sent events in the pipeline.
NOT_FOR_THE_RULES = {"repeat"}


def _members(protocol: type) -> set[str]:
    return {
        name
        for cls in protocol.__mro__
        if cls.__module__.startswith("followerwatch.")
        for name, value in vars(cls).items()
        if isinstance(value, property)
    }


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_every_key_the_rules_read_is_a_config_field() -> None:
    assert _members(RuleKeys) <= _fields(RuleDefaults)
    assert _members(MilestoneKeys) <= _fields(MilestoneConfig)
    assert _members(ChangeKeys) <= _fields(ChangeConfig)
    assert _members(UnusualKeys) <= _fields(UnusualConfig)


def test_every_config_field_reaches_the_rules() -> None:
    assert _fields(RuleDefaults) - _members(RuleKeys) == NOT_FOR_THE_RULES
    assert _fields(MilestoneConfig) == _members(MilestoneKeys)
    assert _fields(ChangeConfig) == _members(ChangeKeys)
    assert _fields(UnusualConfig) == _members(UnusualKeys)


def test_the_rules_build_from_the_config_model_as_written() -> None:
    cfg = RuleDefaults.model_validate(
        {
            "milestones": {"every": "1M", "down": True},
            "changes": [{"window": "1d", "drop": "1k"}],
            "unusual": {"direction": "both", "min_change": "1k"},
        }
    )
    rules = build_rules(cfg)
    assert Milestones(1_000_000, (), True, 0) in rules
    assert WindowChange("drop", 86_400.0, 1_000, None) in rules
    assert Unusual("normal", "both", 1_000) in rules
