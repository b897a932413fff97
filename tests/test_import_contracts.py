"""The stages' import contracts stay without ignored imports, and config assembles from above."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _contract(name: str) -> dict[str, Any]:
    contracts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    [contract] = [c for c in contracts["contracts"] if c["name"].startswith(name)]
    return dict(contract)


def test_the_stages_and_the_rules_ignore_no_imports() -> None:
    assert _contract("Stages import only").get("ignore_imports", []) == []
    assert _contract("Rules import only values").get("ignore_imports", []) == []


def test_the_assembled_settings_sit_above_every_plugin_and_their_blocks_below() -> None:
    layers = [set(layer.replace("|", ":").split(" : ")) for layer in _contract("Stages")["layers"]]

    def level(module: str) -> int:
        return next(i for i, layer in enumerate(layers) if f"followerwatch.{module}" in layer)

    settings = level("config.settings")
    assert level("service") < settings
    for plugin in ("poll", "alerts", "notify", "analysis", "rules", "store", "state", "sources"):
        assert settings < level(plugin), plugin
    assert level("sources") < level("config.base")
