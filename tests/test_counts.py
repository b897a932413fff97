"""Issue 16 item 7: counts as people write them, in the config and on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from followerwatch.config.settings import load_config
from followerwatch.errors import ConfigError
from followerwatch.models import MAX_COUNT
from service_proc import run_cli

BASE = """
[service]
data_dir = "state"
ops_address = ""

[influxdb]
url = "http://127.0.0.1:9"
"""

ACCEPTED = [
    ('"1M"', 1_000_000),
    ('"1.5k"', 1_500),
    ('"250K"', 250_000),
    ('"2B"', 2_000_000_000),
    ("1_000_000", 1_000_000),
    ('"1_000_000"', 1_000_000),
    ('" 2.25M "', 2_250_000),
    ("1e6", 1_000_000),  # TOML's float, when it is whole
]


@pytest.mark.parametrize(("written", "count"), ACCEPTED)
def test_every_count_key_reads_the_forms_people_write(
    tmp_path: Path, written: str, count: int
) -> None:
    path = tmp_path / "fw.toml"
    path.write_text(
        BASE
        + f"""
[platforms.bluesky.defaults]
below = {written}

[[watch]]
platform = "bluesky"
handle = "a.bsky.social"
above = {written}
hysteresis = {written}
milestones = {written}
changes = [{{ window = "1d", drop = {written} }}]

[[watch]]
platform = "bluesky"
handle = "b.bsky.social"
below = [{written}, 3]
milestones = [{written}]
"""
    )
    config = load_config(path)
    a = config.rules[("bluesky", "a.bsky.social")]
    b = config.rules[("bluesky", "b.bsky.social")]
    assert a.below == [count]  # the platform default
    assert a.above == [count] and a.hysteresis == count
    assert a.milestones is not None and a.milestones.every == count
    assert a.changes is not None and a.changes[0].drop == count
    assert b.below == [count, 3]
    assert b.milestones is not None and b.milestones.levels == [count]


REFUSED = [
    ('"1m"', "'1m': m means minutes; write M for a million (e.g. '1M')"),
    ('"1.2345k"', "'1.2345k' is not a whole number"),
    ('"-1k"', "a count cannot be negative"),
    ("-5", "a count cannot be negative"),
    ('"99999999999B"', f"a count cannot be larger than {MAX_COUNT:,}"),
    (str(MAX_COUNT + 1), f"a count cannot be larger than {MAX_COUNT:,}"),
    ('"inf"', "'inf': expected a count like 1000, 1_000_000, '1.5k', '250K', '1M' or '2B'"),
    ('"1,000"', "'1,000': expected a count like"),
    # Only ASCII digits, and an underscore only between two of them.
    ('"١٠٠٠"', "'١٠٠٠': expected a count like"),
    ('"１０００"', "'１０００': expected a count like"),
    ('"1_.5k"', "'1_.5k': expected a count like"),
    ('"_1000"', "'_1000': expected a count like"),
    ("1.5", "expected a count like"),
    ("true", "expected a count like"),  # a single value where a list goes: a clear message
]


@pytest.mark.parametrize(("written", "message"), REFUSED)
def test_counts_that_are_not_whole_numbers_in_range_are_refused_by_key(
    tmp_path: Path, written: str, message: str
) -> None:
    path = tmp_path / "fw.toml"
    entry = '[[watch]]\nplatform = "bluesky"\nhandle = "a.bsky.social"\n'
    for key in ("below", "hysteresis", "milestones"):
        path.write_text(BASE + entry + f"{key} = {written}\n")
        with pytest.raises(ConfigError) as exc:
            load_config(path)
        shown = f"{key}.every" if key == "milestones" else key
        assert f"{path}: watch[0] (bluesky/a.bsky.social).{shown}: {message}" in str(exc.value)


def test_a_lowercase_m_is_refused_with_the_hint_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "fw.toml"
    path.write_text(BASE + '[[watch]]\nplatform = "bluesky"\nhandle = "a.bsky.social"\n')
    path.write_text(path.read_text() + 'below = "1m"\n')
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"followerwatch: invalid config: {path}: watch[0] (bluesky/a.bsky.social).below: "
        "'1m': m means minutes; write M for a million (e.g. '1M')"
    )


def test_accounts_add_takes_counts_as_typed_and_writes_whole_numbers(tmp_path: Path) -> None:
    path = tmp_path / "fw.toml"
    path.write_text('[platforms.x]\nbearer_token = "t"\n')
    added = run_cli(
        *("accounts", "add", "x", "jack", "--below", "5M", "--above", "1.5k", "--above", "2B"),
        *("--every", "100k", "--offline", "--config", str(path)),
    )
    assert added.returncode == 0, added.stderr
    assert path.read_text().endswith(
        '[[watch]]\nplatform = "x"\nhandle = "jack"\nbelow = 5_000_000\n'
        "above = [1_500, 2_000_000_000]\nmilestones = 100_000\n"
    )
    before = path.read_text()
    refused = run_cli(
        "accounts", "add", "x", "jill", "--below", "5m", "--offline", "--config", str(path)
    )
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "followerwatch: --below: '5m': m means minutes; write M for a million (e.g. '1M')"
    )
    assert path.read_text() == before
