"""Config loading: the happy path, the environment, secrets, and one-line errors with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from followerwatch.config import load_config
from followerwatch.errors import ConfigError

GOOD = """
[service]
data_dir = "state"

[influxdb]
url = "http://127.0.0.1:8086"
database = "fw"

[platforms.x]
bearer_token = "tok-123456"
interval = "5m"

[platforms.x.defaults]
below = 1_000_000

[[watch]]
platform = "x"
handle = "aplusk"
hysteresis = 50

[[watch]]
platform = "x"
handle = "cnnbrk"
name = "CNN Breaking"
above = [1_000_000, 2_000_000]
labels = { team = "news" }
"""


def write(tmp_path: Path, text: str, name: str = "fw.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_config_resolves_accounts_rules_and_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert [(a.handle, a.name) for a in config.accounts] == [
        ("aplusk", "aplusk"),
        ("cnnbrk", "CNN Breaking"),
    ]
    assert config.accounts[1].labels == (("team", "news"),)
    aplusk = config.rules[("x", "aplusk")]
    assert (aplusk.below, aplusk.above, aplusk.hysteresis) == ([1_000_000], None, 50)
    cnn = config.rules[("x", "CNN Breaking")]
    assert (cnn.below, cnn.above) == ([1_000_000], [1_000_000, 2_000_000])
    assert config.settings.platform("x").interval == 300.0
    assert config.settings.service.data_dir == tmp_path / "state"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLLOWERWATCH_INFLUXDB__DATABASE", "from_env")
    monkeypatch.setenv("FOLLOWERWATCH_PLATFORMS__X__INTERVAL", "90s")
    config = load_config(write(tmp_path, GOOD))
    assert config.settings.influxdb.database == "from_env"
    assert config.settings.platform("x").interval == 90.0
    assert config.settings.influxdb.url == "http://127.0.0.1:8086"


def test_secret_from_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("file-secret-999\n")
    text = GOOD.replace('bearer_token = "tok-123456"', f'bearer_token_file = "{token}"')
    config = load_config(write(tmp_path, text))
    assert config.settings.secrets() == ["file-secret-999"]


def test_separate_watchlist_file(tmp_path: Path) -> None:
    write(tmp_path, '[[watch]]\nplatform = "x"\nhandle = "bad handle"\n', "watch.toml")
    main = 'watchlist = "watch.toml"\n' + GOOD.split("[[watch]]")[0]
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, main))
    assert str(exc.value).startswith(f"{tmp_path / 'watch.toml'}: watch[0] (x/bad handle).handle")


def cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "followerwatch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


BAD = [
    (
        "unknown key",
        GOOD.replace('database = "fw"', 'database = "fw"\ndatabse = "typo"'),
        "influxdb.databse",
        "Extra inputs are not permitted",
    ),
    (
        "wrong type",
        GOOD.replace('interval = "5m"', "interval = true"),
        "platforms.x.interval",
        "duration",
    ),
    (
        "invalid handle",
        GOOD.replace('handle = "aplusk"', 'handle = "ap lusk\\nx"'),
        "watch[0]",
        "not a valid X handle",
    ),
    ("duplicate", GOOD.replace('handle = "cnnbrk"', 'handle = "APLUSK"'), "watch[1]", "duplicate"),
    (
        "negative hysteresis",
        GOOD.replace("hysteresis = 50", "hysteresis = -1"),
        "watch[0] (x/aplusk).hysteresis",
        "greater than or equal to 0",
    ),
]


@pytest.mark.parametrize(("case", "text", "key", "problem"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_exits_2_with_one_line(
    tmp_path: Path, case: str, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    result = cli(["check", "--config", str(path)])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and key in lines[0] and problem in lines[0]
    assert "Traceback" not in result.stderr and "tok-123456" not in result.stderr


def test_var_and_var_file_both_set_exits_2_without_echoing_the_secret(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("file-secret-999")
    path = write(tmp_path, GOOD)
    result = cli(
        ["check", "--config", str(path)],
        env={"FOLLOWERWATCH_PLATFORMS__X__BEARER_TOKEN_FILE": str(token)},
    )
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert "platforms.x" in line and "bearer_token and bearer_token_file are both set" in line
    assert "tok-123456" not in line and "file-secret-999" not in line


def test_missing_file_and_bad_toml_exit_2(tmp_path: Path) -> None:
    missing = cli(["check", "--config", str(tmp_path / "nope.toml")])
    assert missing.returncode == 2 and "file not found" in missing.stderr
    broken = cli(["check", "--config", str(write(tmp_path, "[influxdb\nurl = 1"))])
    assert broken.returncode == 2 and "not valid TOML" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('database = "fw"', 'database = "fw"\nbogus = 1'))
    result = cli(["check"], env={"FOLLOWERWATCH_CONFIG": str(path)})
    assert result.returncode == 2 and "influxdb.bogus" in result.stderr
