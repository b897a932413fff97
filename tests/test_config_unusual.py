"""The `unusual` key: true, false or a table, on an entry or as a platform default; bad values
exit 2 with one line naming the file, the key and the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from followerwatch.alerts.routing import RouteConfig
from followerwatch.config.base import RuleDefaults
from followerwatch.config.settings import load_config
from followerwatch.errors import ConfigError
from followerwatch.models import EventKind
from followerwatch.rules import build_rule_sets, build_rules
from followerwatch.rules.lifecycle import Lifecycle
from followerwatch.rules.unusual import Unusual

HEAD = """
[service]
data_dir = "state"

[platforms.bluesky.defaults]
unusual = true
"""


def entry(handle: str, rule: str = "") -> str:
    return f'[[watch]]\nplatform = "bluesky"\nhandle = "{handle}.bsky.social"\n{rule}\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fw.toml"
    path.write_text(text)
    return path


def unusual_rules(config_rules: RuleDefaults) -> list[Unusual]:
    return [r for r in build_rules(config_rules) if isinstance(r, Unusual)]


def test_true_false_and_tables_resolve_over_the_platform_default(tmp_path: Path) -> None:
    text = HEAD + "".join(
        [
            entry("inherits"),
            entry("off", "unusual = false"),
            entry("high", 'unusual = { sensitivity = "high" }'),
            entry("all", 'unusual = { sensitivity = "low", direction = "both", min_change = 0 }'),
            entry("again", "unusual = true"),
        ]
    )
    config = load_config(write(tmp_path, text))
    rules = {handle.split(".")[0]: cfg for (_, handle), cfg in config.rules.items()}
    assert unusual_rules(rules["inherits"]) == [Unusual("normal", "down", 100)]
    assert rules["off"].unusual is None and unusual_rules(rules["off"]) == []
    # A table replaces the default's as a whole: the keys it leaves out take their defaults.
    assert unusual_rules(rules["high"]) == [Unusual("high", "down", 100)]
    assert unusual_rules(rules["all"]) == [Unusual("low", "both", 0)]
    assert rules["again"].unusual == rules["inherits"].unusual
    # The rule goes before the lifecycle rule, which every account has unless turned off.
    assert isinstance(build_rules(rules["off"])[-1], Lifecycle)


def test_without_the_key_no_account_has_the_rule(tmp_path: Path) -> None:
    text = HEAD.replace("unusual = true", "below = 5") + entry("a")
    config = load_config(write(tmp_path, text))
    assert [unusual_rules(cfg) for cfg in config.rules.values()] == [[]]


def test_the_same_settings_written_differently_share_one_rule_tuple(tmp_path: Path) -> None:
    text = HEAD.replace("unusual = true", "below = 5") + "".join(
        [
            entry("a", "unusual = true"),
            entry("b", "unusual = {}"),
            entry("c", 'unusual = { sensitivity = "normal", min_change = 100 }'),
            entry("d", 'unusual = { direction = "up" }'),
        ]
    )
    config = load_config(write(tmp_path, text))
    sets = build_rule_sets(config.rules)
    a, b, c, d = (sets[("bluesky", f"{h}.bsky.social")] for h in "abcd")
    assert a is b is c and a is not d
    assert Unusual("normal", "up", 100) in d


def test_an_environment_default_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLLOWERWATCH_PLATFORMS__BLUESKY__DEFAULTS__UNUSUAL", '{"direction": "up"}')
    config = load_config(write(tmp_path, HEAD + entry("a") + entry("b", "unusual = false")))
    assert unusual_rules(config.rules[("bluesky", "a.bsky.social")]) == [
        Unusual("normal", "up", 100)
    ]
    assert config.rules[("bluesky", "b.bsky.social")].unusual is None


BAD = [
    ("text", 'unusual = "yes"', "unusual", "must be true, false or a table"),
    ("number", "unusual = 1", "unusual", "must be true, false or a table"),
    ("list", "unusual = []", "unusual", "must be true, false or a table"),
    ("unknown key", "unusual = { sensitivty = 'high' }", "unusual.sensitivty", "Extra inputs"),
    ("sensitivity", "unusual = { sensitivity = 'extreme' }", "unusual.sensitivity", "'normal'"),
    ("direction", "unusual = { direction = 'sideways' }", "unusual.direction", "'both'"),
    ("negative", "unusual = { min_change = -5 }", "unusual.min_change", "cannot be negative"),
    ("not a count", "unusual = { min_change = 'lots' }", "unusual.min_change", "count"),
    ("nan", "unusual = { min_change = nan }", "unusual.min_change", "expected a count"),
    ("too big", "unusual = { min_change = 9_007_199_254_740_992 }", "unusual.min_change", "larger"),
]


@pytest.mark.parametrize(("case", "rule", "key", "problem"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_value_on_an_entry_is_one_line_naming_it(
    tmp_path: Path, case: str, rule: str, key: str, problem: str
) -> None:
    path = write(tmp_path, HEAD + entry("a") + entry("b", rule))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: watch[1] (bluesky/b.bsky.social).{key}: "), message
    assert problem in message and "\n" not in message


@pytest.mark.parametrize(("case", "rule", "key", "problem"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_platform_default_is_one_line_naming_it(
    tmp_path: Path, case: str, rule: str, key: str, problem: str
) -> None:
    path = write(tmp_path, HEAD.replace("unusual = true", rule) + entry("a"))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: platforms.bluesky.defaults.{key}: "), message
    assert problem in message


def cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "followerwatch", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (HEAD + entry("a", "unusual = { sensitivity = 'extreme' }"), "watch[0]"),
        (HEAD.replace("unusual = true", "unusual = 'on'") + entry("a"), "platforms.bluesky"),
    ],
    ids=["entry", "default"],
)
def test_check_exits_2_with_one_line_and_no_traceback(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    result = cli(["check", "--config", str(path)])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and f"{key}" in lines[0] and ".unusual" in lines[0]
    assert "Traceback" not in result.stderr


def test_routes_take_the_unusual_event_kinds() -> None:
    kinds = ["unusual_drop", "unusual_rise", "unusual_cleared"]
    route = RouteConfig.model_validate({"notifiers": ["log"], "kinds": kinds})
    assert route.kinds == [
        EventKind.UNUSUAL_DROP,
        EventKind.UNUSUAL_RISE,
        EventKind.UNUSUAL_CLEARED,
    ]
