"""Every registry entry is complete: module, config, syntax, fake, fixtures, tests, docs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from followerwatch.config.base import PlatformConfig
from followerwatch.notify import REGISTRY as NOTIFIERS
from followerwatch.sources import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_source_entry_is_complete(key: str) -> None:
    spec = REGISTRY[key]
    module = importlib.import_module(f"followerwatch.sources.{key}")
    assert spec.key == key and module.__doc__
    assert issubclass(spec.config_model, PlatformConfig) and spec.config_model.__doc__
    assert spec.batch_max >= 1
    assert spec.handle_pattern.pattern.startswith("^") and spec.handle_pattern.pattern.endswith("$")
    if spec.rate_limit_ceiling is not None:
        requests, seconds = spec.rate_limit_ceiling
        assert requests > 0 and seconds > 0
    fixtures = ROOT / "tests" / "fixtures" / key
    assert fixtures.is_dir() and any(fixtures.iterdir()), f"no fixtures for {key}"
    assert (ROOT / "tests" / "sources" / f"test_{key}.py").is_file()
    assert (ROOT / "tests" / "fakes" / f"fake_{key}.py").is_file()
    assert f"[platforms.{key}]" in README, f"README has no config example for {key}"


@pytest.mark.parametrize("key", sorted(NOTIFIERS))
def test_notifier_entry_is_documented(key: str) -> None:
    module = importlib.import_module(f"followerwatch.notify.{key}")
    assert module.__doc__
    assert f'type = "{key}"' in README
