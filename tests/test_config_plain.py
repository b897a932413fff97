"""Plain watch entries are read straight from their dicts: the same accounts, rules and errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from followerwatch.config.base import RuleDefaults
from followerwatch.config.watchlist import _WATCH_LIST, _Builder, resolve_watch
from followerwatch.errors import ConfigError
from followerwatch.sources import REGISTRY

DEFAULTS = {key: RuleDefaults() for key in REGISTRY} | {
    "x": RuleDefaults(below=[10]),
    "bluesky": RuleDefaults.model_validate({"unusual": True}),
}

ENTRIES: list[dict[str, Any]] = [
    {"platform": "x", "handle": "a"},
    {"platform": "x", "handle": "b", "below": 100},
    {"platform": "x", "handle": "c", "below": [100]},
    {"platform": "x", "handle": "d", "below": "100"},
    {"platform": "x", "handle": "e", "below": 100.0},
    {"platform": "x", "handle": "f", "above": ["1.5k", 2000], "hysteresis": 5, "for": 2},
    {"platform": "x", "handle": "g", "for_polls": 2, "above": [1500, 2000], "hysteresis": 5},
    {"platform": "x", "handle": "h", "milestones": 1000, "resolved": True, "repeat": "1h"},
    {"platform": "x", "handle": "i", "milestones": [5, 1], "lifecycle": False},
    {"platform": "x", "handle": "j", "changes": [{"window": "1d", "drop_pct": 5}]},
    {"platform": "x", "handle": "k", "stale": "2h", "frozen": "3d", "approaching": "7d"},
    {"platform": "x", "handle": "L", "name": "Named", "labels": {"team": "news"}},
    {"platform": "bluesky", "handle": "m.bsky.social", "id": "did:plc:abc", "below": 100},
    {"platform": "mastodon", "handle": "n@x.social", "id": "123", "labels": {}},
    {"platform": "x", "handle": "o", "unusual": True},
    {"platform": "x", "handle": "p", "unusual": {}},
    {"platform": "x", "handle": "q", "unusual": {"sensitivity": "normal", "min_change": "100"}},
    {"platform": "x", "handle": "r", "unusual": {"direction": "both", "min_change": 0}},
    {"platform": "x", "handle": "s", "unusual": False},
    {"platform": "bluesky", "handle": "t.bsky.social", "unusual": False},
    {"platform": "bluesky", "handle": "u.bsky.social", "unusual": {"sensitivity": "high"}},
]


def as_models(entries: list[dict[str, Any]]) -> list[Any]:
    """The same entries as validated models, which take the models' path."""
    return list(_WATCH_LIST.validate_python(entries))


def test_plain_entries_resolve_as_their_models_do() -> None:
    plain = _Builder(DEFAULTS, "w")
    assert plain.add_plain(list(ENTRIES), 0)  # every entry above is plain
    accounts, rules = resolve_watch([as_models(ENTRIES)], DEFAULTS, "w")
    assert plain.accounts == accounts
    assert [a.labels for a in plain.accounts] == [a.labels for a in accounts]
    assert plain.rules == rules
    assert list(plain.rules) == list(rules)
    # One RuleDefaults per resolved config, whichever way it was written (100, [100], "100").
    assert len({id(v) for v in plain.rules.values()}) == len({id(v) for v in rules.values()})
    assert plain.rules[("x", "b")] is plain.rules[("x", "c")] is plain.rules[("x", "d")]
    assert plain.rules[("x", "b")] is plain.rules[("x", "e")]  # 100.0 validates as 100
    assert plain.rules[("x", "f")] is plain.rules[("x", "g")]
    assert plain.rules[("x", "a")] is DEFAULTS["x"]
    # `unusual`: true, {} and its defaults written out are one config; false turns a default off.
    assert plain.rules[("x", "o")] is plain.rules[("x", "p")] is plain.rules[("x", "q")]
    assert plain.rules[("x", "o")].unusual == DEFAULTS["bluesky"].unusual
    both = plain.rules[("x", "r")].unusual
    assert both is not None and (both.direction, both.min_change) == ("both", 0)
    assert plain.rules[("x", "s")].unusual is None
    assert plain.rules[("bluesky", "t.bsky.social")].unusual is None
    high = plain.rules[("bluesky", "u.bsky.social")].unusual
    assert high is not None and (high.sensitivity, high.direction) == ("high", "down")
    # The rules dict is keyed by each account's own key tuple (shared, not a copy).
    for account in plain.accounts:
        assert next(k for k in plain.rules if k == account.key) is account.key


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"id": 5}, "watch[1] (x/z).id: Input should be a valid string"),
        ({"labels": {"time": "t"}}, "watch[1] (x/z).labels: Value error, label key 'time'"),
        ({"labels": {"a": 1}}, "watch[1] (x/z).labels.a: Input should be a valid string"),
        ({"name": "a\nb"}, "watch[1] (x/z).name: Value error, the name must be 1-100"),
        ({"name": ""}, "watch[1] (x/z).name: Value error, the name must be 1-100"),
        ({"below": datetime(2026, 1, 1, tzinfo=UTC)}, "watch[1] (x/z).below: "),
        ({"below": float("nan")}, "watch[1] (x/z).below: "),
        ({"hysteresis": -1}, "watch[1] (x/z).hysteresis: a count cannot be negative"),
        ({"bogus": 1}, "watch[1] (x/z).bogus: Extra inputs are not permitted"),
        ({"unusual": 1}, "watch[1] (x/z).unusual: must be true, false or a table"),
        ({"unusual": "true"}, "watch[1] (x/z).unusual: must be true, false or a table"),
        ({"unusual": {"level": 3}}, "watch[1] (x/z).unusual.level: Extra inputs are not"),
        ({"unusual": {"direction": "left"}}, "watch[1] (x/z).unusual.direction: Input should"),
        ({"unusual": {"min_change": -1}}, "watch[1] (x/z).unusual.min_change: a count cannot"),
        ({"platform": "nope"}, "watch[1] (nope/z).platform: Value error, unknown platform"),
        ({"handle": 5}, "watch[1] (x/5).handle: Input should be a valid string"),
    ],
)
def test_what_is_not_plain_gets_the_models_error(entry: dict[str, Any], expected: str) -> None:
    entries = [{"platform": "x", "handle": "y"}, {"platform": "x", "handle": "z"} | entry]
    assert not _Builder(DEFAULTS, "w").add_plain(list(entries), 0)
    with pytest.raises(ConfigError) as exc:
        resolve_watch([entries], DEFAULTS, "w")
    assert str(exc.value).startswith(f"w: {expected}")


def test_for_and_for_polls_together_take_the_models_path() -> None:
    entries = [{"platform": "x", "handle": "z", "for": 2, "for_polls": 3}]
    assert not _Builder(DEFAULTS, "w").add_plain(list(entries), 0)
    with pytest.raises(ConfigError) as exc:
        resolve_watch([entries], DEFAULTS, "w")
    assert str(exc.value) == "w: watch[0] (x/z).for_polls: Extra inputs are not permitted"


def test_a_value_whose_repr_looks_plain_is_not_cached_as_plain() -> None:
    class Sneaky(int):
        def __repr__(self) -> str:
            return "100"

    entries = [{"platform": "x", "handle": "a", "below": 100}]
    builder = _Builder(DEFAULTS, "w")
    assert builder.add_plain(entries, 0)
    assert not builder.add_plain([{"platform": "x", "handle": "b", "below": Sneaky(7)}], 1)
