"""The README's commands and config examples cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from followerwatch.config.settings import load_config
from followerwatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", README, flags=re.S)


def test_readme_commands_exist() -> None:
    for script in ("scripts/demo", "scripts/test"):
        assert f"{script} " in README
        assert (ROOT / script).stat().st_mode & 0o111
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("index", range(len(TOML_BLOCKS)))
def test_readme_config_examples_load(tmp_path: Path, index: int) -> None:
    # The first block is the full reference; later ones are parts added to it.
    text = TOML_BLOCKS[index] if index == 0 else TOML_BLOCKS[0] + "\n" + TOML_BLOCKS[index]
    # Secrets in the examples point at /run/secrets/…; give them real files here.
    for n, path in enumerate(sorted(set(re.findall(r'_file = "([^"]+)"', text)))):
        secret = tmp_path / f"secret{n}"
        secret.write_text(f"example-secret-{n}")
        text = text.replace(f'"{path}"', f'"{secret}"')
    config_path = tmp_path / "followerwatch.toml"
    config_path.write_text(text)
    config = load_config(config_path)
    assert config.accounts, "an example should watch at least one account"


def test_readme_documents_the_schema_and_payload() -> None:
    for name in ("`followers`", "`followerwatch_events`", "`followerwatch_polls`", '"version": 1'):
        assert name in README


def test_the_rules_example_shows_every_rule_key() -> None:
    from followerwatch.config.base import RuleDefaults

    example = next(block for block in TOML_BLOCKS if "\napproaching = " in block)
    written = set(re.findall(r"^(\w+) = ", example, flags=re.M))
    keys = {field.alias or name for name, field in RuleDefaults.model_fields.items()}
    assert keys <= written, keys - written


def _rows_name_real_tests(heading: str, numbered: int) -> None:
    section = README.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| (\d+|—) \|", line)]
    numbers = [r.split("|")[1].strip() for r in rows]
    assert [int(n) for n in numbers if n != "—"] == list(range(1, numbered + 1))
    for row in rows:
        cell = row.rsplit("|", 2)[1]
        # `file.py`, `file.py::test_name` (a trailing * is a prefix), or `::name` in the last file.
        refs = re.findall(r"`([\w/]+\.py)?(?:::(\w+\*?))?`", cell)
        assert refs, row
        text = ""
        for path, name in refs:
            if path:
                text = (ROOT / "tests" / path).read_text()
            assert text, row
            if name:
                tail = r"\w*" if name.endswith("*") else r"\b"
                assert re.search(rf"def {re.escape(name.rstrip('*'))}{tail}", text), (path, name)


def test_every_test_the_reliability_table_names_exists() -> None:
    _rows_name_real_tests("## Trust at the edges", 16)


def test_every_test_the_command_line_table_names_exists() -> None:
    _rows_name_real_tests("## The command line", 12)


def test_the_platforms_the_readme_lists_are_the_ones_the_config_accepts() -> None:
    from followerwatch.sources import REGISTRY

    paragraph = README.split("\nPlatforms: ", 1)[1].split("\n\n", 1)[0]
    listed = {name.lower() for name in re.findall(r"\*\*([\w ]+?)\*\*", paragraph)}
    # The generic JSON source is listed by its key, as the config spells it.
    titles = {"http_json" if k == "http_json" else s.title.lower() for k, s in REGISTRY.items()}
    assert listed == titles
    for key in REGISTRY:
        load_config(None, {"platforms": {key: {}}})
    with pytest.raises(ConfigError, match="replay"):
        load_config(None, {"watch": [{"platform": "replay", "handle": "aplusk"}]})
