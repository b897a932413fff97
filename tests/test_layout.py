"""The README map names every stage folder and top-level module, and nothing that is gone."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "followerwatch"


def _map_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## How it fits together", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```text\n(.*?)```", section, re.S)
    assert block, "the README map has no ```text block"
    return block.group(1)


def _stages() -> set[str]:
    return {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def _top_modules() -> set[str]:
    return {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py"}


def test_the_map_names_every_stage_folder() -> None:
    named = set(re.findall(r"^(\w+)/", _map_block(), re.M))
    assert named == _stages()


def test_the_map_names_every_top_level_module() -> None:
    block = _map_block()
    named = set(re.findall(r"\b(\w+\.py)\b", block.split("\n")[-2]))
    assert named == _top_modules()


def test_the_package_top_level_holds_at_most_eight_files() -> None:
    assert len(list(PACKAGE.glob("*.py"))) <= 8
