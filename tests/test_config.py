"""Config loading: the happy path, the environment, secrets, and one-line errors with exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from followerwatch.config.settings import load_config, read_toml
from followerwatch.config.tomlfile import PIECE_CHARS
from followerwatch.config.watchlist import CHUNK
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
        "a count cannot be negative",
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
    assert missing.returncode == 2 and "no such file" in missing.stderr
    broken = cli(["check", "--config", str(write(tmp_path, "[influxdb\nurl = 1"))])
    assert broken.returncode == 2 and "not valid TOML" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('database = "fw"', 'database = "fw"\nbogus = 1'))
    result = cli(["check"], env={"FOLLOWERWATCH_CONFIG": str(path)})
    assert result.returncode == 2 and "influxdb.bogus" in result.stderr


def toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, re.S)


def bench_shaped_watchlist() -> str:
    """Entries as bench/__main__.py writes them, every platform's shape, plus rule variety."""
    lines = []
    for i in range(50):
        lines.append(f'[[watch]]\nplatform = "x"\nhandle = "u{i}"\nbelow = 100\n')
        lines.append(
            f'[[watch]]\nplatform = "bluesky"\nhandle = "u{i}.bsky.social"\n'
            f'id = "did:plc:{i:024d}"\nabove = [1_000, 2e3]\n'
        )
        lines.append(
            f'[[watch]]\nplatform = "mastodon"\nhandle = "u{i}@bench.social"\n'
            f'id = "{109_000_000_000_000_000 + i}"\nmilestones = {{ every = 1000 }}\n'
            f'labels = {{ team = "t{i % 3}" }}\nchanges = [{{ window = "1h", drop_pct = 5.5 }}]\n'
        )
    return "".join(lines)


DATES = """
start = 2026-03-01T09:00:00Z
end = 2026-03-01T09:00:00+05:30
local = 2026-03-01T09:00:00
day = 2026-03-01
at = 07:32:00.5
negative = 2026-03-01 09:00:00-07:00
"""


def test_read_toml_gives_what_tomllib_gives(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    texts = [*toml_blocks(readme), bench_shaped_watchlist(), DATES, GOOD]
    assert len(texts) > 5
    for i, text in enumerate(texts):
        path = write(tmp_path, text, f"t{i}.toml")
        expected = tomllib.loads(text)
        got = read_toml(path)
        assert got == expected
        assert shape(got) == shape(expected)


def shape(value: object) -> object:
    """Types all the way down, including each datetime's tzinfo class."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return (type(value), type(getattr(value, "tzinfo", None)))


@pytest.mark.parametrize(
    "text",
    [
        "[influxdb\nurl = 1",
        "a = 1\na = 2",
        '[service]\nlog_level = "info"\n[service]\nlog_level = "debug"',
        "x = [1, 2",
        'name = "unterminated',
        "x = 99999999999999999999999\ny = ",
    ],
)
def test_invalid_toml_keeps_tomllib_message(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(tomllib.TOMLDecodeError) as expected:
        tomllib.loads(text)
    with pytest.raises(ConfigError) as exc:
        read_toml(path)
    assert str(exc.value) == f"{path}: not valid TOML: {expected.value}"


def test_toml_only_tomllib_reads_is_still_read(tmp_path: Path) -> None:
    # TOML caps integers at 64 bits; tomllib reads bigger ones, as read_toml did before rtoml.
    path = write(tmp_path, "big = 99999999999999999999999")
    assert read_toml(path) == {"big": 99999999999999999999999}


def test_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not valid TOML: not UTF-8"):
        read_toml(path)


WATCHLIST_MAIN = 'watchlist = "watch.toml"\n' + GOOD.split("[[watch]]")[0]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            'platform = "x"\nhandle = "ok1"\nhysteresis = -1',
            "watch[0] (x/ok1).hysteresis: a count cannot be negative",
        ),
        ('platform = "x"', "watch[0] (x/?).handle: Field required"),
        (
            'platform = "x"\nhandle = "ok1"\nchanges = [{ window = "1h" }]',
            "watch[0] (x/ok1).changes[0]: set exactly one of drop, rise, drop_pct, rise_pct",
        ),
    ],
)
def test_watchlist_file_errors_name_the_entry(tmp_path: Path, entry: str, message: str) -> None:
    write(tmp_path, '[[watch]]\nplatform = "x"\nhandle = "fine"\n[[watch]]\n' + entry, "watch.toml")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, WATCHLIST_MAIN))
    assert str(exc.value) == f"{tmp_path / 'watch.toml'}: {message.replace('[0]', '[1]', 1)}"


def test_a_watchlist_that_is_not_a_list_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, "watch = 5\n", "watch.toml")
    with pytest.raises(ConfigError, match=r"watch\.toml: watch: Input should be a valid list"):
        load_config(write(tmp_path, WATCHLIST_MAIN))


def test_identical_rule_configs_share_one_resolved_rule_set(tmp_path: Path) -> None:
    entries = "".join(
        f'[[watch]]\nplatform = "x"\nhandle = "h{i}"\n{rule}\n'
        for i, rule in enumerate(
            ["", "", "above = 5", "above = [5]", "above = 6", "hysteresis = 1", "below = 1"]
        )
    )
    config = load_config(write(tmp_path, GOOD.split("[[watch]]")[0] + entries))
    r = [config.rules[("x", f"h{i}")] for i in range(7)]
    assert r[0] is r[1] is config.settings.platform("x").defaults
    assert r[2] is r[3] and r[2] is not r[4]
    assert (r[2].below, r[2].above, r[4].above) == ([1_000_000], [5], [6])
    assert (r[5].below, r[5].hysteresis, r[6].below) == ([1_000_000], 1, [1])
    assert r[0].model_fields_set == {"below"} and r[2].model_fields_set == {"below", "above"}


def test_a_big_watchlist_read_in_pieces_is_what_tomllib_reads(tmp_path: Path) -> None:
    text = "# a watchlist\n" + bench_shaped_watchlist()
    path = write(tmp_path, text)
    pieces = read_toml(path, piece_chars=300)
    assert pieces == tomllib.loads(text) and len(pieces["watch"]) == 150


@pytest.mark.parametrize(
    "text",
    [
        # A `[[watch]]` line inside a multi-line string is not a header.
        '[[watch]]\nplatform = "x"\nhandle = "a"\nname = """\n[[watch]]\n"""\n'
        + bench_shaped_watchlist(),
        # A file that is not only [[watch]] entries: a table after them.
        bench_shaped_watchlist() + '[extra]\nkey = "v"\n',
        # Sub-tables of an entry stay with it.
        '[[watch]]\nplatform = "x"\nhandle = "a"\n[watch.labels]\nteam = "t"\n'
        + bench_shaped_watchlist(),
    ],
    ids=["string", "extra-table", "sub-table"],
)
def test_pieces_that_do_not_add_up_fall_back_to_one_parse(tmp_path: Path, text: str) -> None:
    # 20 characters: the first `[[watch]]` line after the first entry's start is a cut.
    for piece_chars in (20, 200):
        assert read_toml(write(tmp_path, text), piece_chars=piece_chars) == tomllib.loads(text)


def test_an_error_deep_in_a_big_file_has_tomllib_line_numbers(tmp_path: Path) -> None:
    text = bench_shaped_watchlist() + '[[watch]]\nplatform = "x"\nhandle = "a" "b"\n'
    path = write(tmp_path, text)
    with pytest.raises(tomllib.TOMLDecodeError) as expected:
        tomllib.loads(text)
    with pytest.raises(ConfigError) as exc:
        read_toml(path, piece_chars=300)
    assert str(exc.value) == f"{path}: not valid TOML: {expected.value}"


def numbered_entries(n: int) -> list[dict[str, object]]:
    return [{"platform": "x", "handle": f"h{i}"} for i in range(n)]


def test_errors_far_down_a_long_watchlist_name_the_right_entry(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.split("[[watch]]")[0])
    far = CHUNK * 2 + 7
    entries = numbered_entries(far + 10)
    entries[far]["hysteresis"] = -1
    entries[far + 3]["bogus"] = 1
    entries[3]["handle"] = "bad handle"  # a handle error loses to any validation error
    with pytest.raises(ConfigError) as exc:
        load_config(path, {"watch": entries})
    assert str(exc.value) == (
        f"{path}: watch[{far}] (x/h{far}).hysteresis: a count cannot be negative (and 1 more)"
    )
    assert entries[3] == {"platform": "x", "handle": "bad handle"}  # the caller's list is intact
    del entries[far]["hysteresis"], entries[far + 3]["bogus"]
    entries[CHUNK + 1]["handle"] = "H5"
    with pytest.raises(ConfigError) as exc:
        load_config(path, {"watch": entries})
    assert str(exc.value) == f"{path}: watch[3] (x/bad handle).handle: not a valid X handle " + (
        "(must match ^[A-Za-z0-9_]{1,15}$)"
    )
    entries[3]["handle"] = "h3"
    with pytest.raises(ConfigError) as exc:
        load_config(path, {"watch": entries})
    assert (
        str(exc.value) == f"{path}: watch[{CHUNK + 1}] (x/H5): duplicate of an earlier entry on x"
    )
    entries[CHUNK + 1]["handle"] = f"h{CHUNK + 1}"
    config = load_config(path, {"watch": entries})
    assert [a.handle for a in config.accounts] == [e["handle"] for e in entries]


def big_watchlist(n: int) -> list[str]:
    return [f'[[watch]]\nplatform = "x"\nhandle = "h{i}"\nbelow = 100\n' for i in range(n)]


def test_a_watchlist_bigger_than_a_piece_loads_piece_by_piece(tmp_path: Path) -> None:
    entries = big_watchlist(12_000)
    assert sum(map(len, entries)) > 2 * PIECE_CHARS
    write(tmp_path, "".join(entries), "watch.toml")
    config = load_config(write(tmp_path, WATCHLIST_MAIN))
    assert [a.handle for a in config.accounts] == [f"h{i}" for i in range(12_000)]
    assert len({id(r) for r in config.rules.values()}) == 1
    far = 11_000
    entries[far] = entries[far].replace("below = 100", "below = 100\nfor = 0")
    entries[17] = entries[17].replace('"h17"', '"bad handle"')
    write(tmp_path, "".join(entries), "watch.toml")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, WATCHLIST_MAIN))
    assert str(exc.value) == (
        f"{tmp_path / 'watch.toml'}: watch[{far}] (x/h{far}).for: "
        "Input should be greater than or equal to 1"
    )
    entries[far + 1] += "oops = = 1\n"
    text = "".join(entries)
    write(tmp_path, text, "watch.toml")
    with pytest.raises(tomllib.TOMLDecodeError) as expected:
        tomllib.loads(text)
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, WATCHLIST_MAIN))
    assert str(exc.value) == f"{tmp_path / 'watch.toml'}: not valid TOML: {expected.value}"
