"""Issue 16 item 3: a missing config file is an error; an environment-only config is not."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from service_proc import run_cli

NO_CONFIG = (
    "followerwatch: no config at ./followerwatch.toml (use --config or FOLLOWERWATCH_CONFIG)"
)


def clean_env(**extra: str) -> dict[str, str]:
    """No FOLLOWERWATCH_* variable of the test's own environment leaks into the command."""
    env = {name: "" for name in os.environ if name.upper().startswith("FOLLOWERWATCH_")}
    return {**env, **extra}


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_config_named_by_option_or_variable_that_does_not_exist_exits_2(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope.toml"
    by_option = run_cli("check", "--config", str(missing), env=clean_env())
    assert one_line(by_option) == (
        f"followerwatch: no config at {missing} (named by --config; no such file)"
    )
    by_variable = run_cli("poll", env=clean_env(FOLLOWERWATCH_CONFIG=str(missing)))
    assert one_line(by_variable) == (
        f"followerwatch: no config at {missing} (named by FOLLOWERWATCH_CONFIG; no such file)"
    )


@pytest.mark.parametrize(
    "command", [("check",), ("poll",), ("run",), ("accounts", "list"), ("accounts", "add")]
)
def test_an_empty_folder_is_not_an_empty_watchlist(tmp_path: Path, command: tuple[str]) -> None:
    args = (*command, "x", "jack") if command == ("accounts", "add") else command
    # `run` used to start polling nothing, forever: the timeout makes that a failure.
    result = run_cli(*args, cwd=tmp_path, env=clean_env(), timeout=30)
    assert one_line(result) == NO_CONFIG
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing created (no data folder, no state)


def test_the_environment_alone_can_configure_influxdb_and_the_watchlist(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    url, db = influx_db
    env = clean_env(
        FOLLOWERWATCH_INFLUXDB__URL=url,
        FOLLOWERWATCH_INFLUXDB__DATABASE=db,
        FOLLOWERWATCH_SERVICE__DATA_DIR=str(tmp_path / "state"),
        FOLLOWERWATCH_WATCH=json.dumps([{"platform": "bluesky", "handle": "jay.bsky.team"}]),
    )
    result = run_cli("check", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config valid: 1 accounts" in result.stdout
    assert "InfluxDB reachable" in result.stdout
    listed = run_cli("accounts", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and "jay.bsky.team" in listed.stdout
    edit = run_cli("accounts", "add", "bluesky", "b.bsky.social", cwd=tmp_path, env=env)
    assert one_line(edit) == (
        "followerwatch: the watchlist comes from the environment; accounts add and remove "
        "edit a config file (use --config)"
    )
    # InfluxDB alone is not a config: without a watchlist the missing file is the problem.
    del env["FOLLOWERWATCH_WATCH"]
    assert one_line(run_cli("check", cwd=tmp_path, env=env)) == NO_CONFIG
