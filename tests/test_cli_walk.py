"""Every command and every option, walked with hostile values: one line back, never a traceback.

The commands and options come from the typer app itself, so a new option is walked without
editing this file. In-process (CliRunner reproduces the exit code and stderr of the real
entry point: the one-line usage errors live in the root command's `main`), plus one subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from followerwatch.cli.main import app
from followerwatch.demo.influxd import TempInfluxd

HUGE = "9" * 400
UNICODE = "ünï☃ 名前"
# The name the walk's watchlist gives a Unicode account; it must stay usable.
UNICODE_NAME = "Café ☕ 名前"

# What each walked value is checked against: exit 2 (an argument error) unless listed here.
# A value can be legitimate for some options; then the command does its work and may end 0 or
# 1 as the README documents, and the walk still demands no traceback and at most one stderr line.
ALLOWED: dict[tuple[str, str], set[int]] = {
    # `accounts add`: README "1 refused (nothing written)"; a hostile-looking handle or name
    # ("inf") can be a real one, and is then added (0).
    ("accounts add", "platform"): {1, 2},
    ("accounts add", "handle"): {0, 1, 2},
    ("accounts add", "name"): {0, 1, 2},
    ("accounts add", "below"): {1, 2},
    ("accounts add", "above"): {1, 2},
    ("accounts add", "every"): {1, 2},
    # `accounts remove`: an account that is not on the watchlist is "1 refused".
    ("accounts remove", "account"): {1, 2},
    ("accounts remove", "handle"): {1, 2},
    # Any file name in an existing folder is a valid output; the command then runs (1: no counts).
    ("plot", "output"): {0, 1, 2},
    ("report", "output"): {0, 1, 2},
    ("impact", "png"): {0, 1, 2},
    # A whole number is a valid goal; the analysis then runs (1: no counts in the window).
    ("impact", "below"): {1, 2},
    ("impact", "above"): {1, 2},
    # README: demo exits "1 if nothing landed" (an unusable InfluxDB URL).
    ("demo", "influx_url"): {1, 2},
    # `--shard ""` is documented: one process polls all (then the command works: 0 or 1).
    ("check", "shard"): {0, 1, 2},
    ("poll", "shard"): {0, 1, 2},
    # Any platform/name is a valid account to look up (1: no counts for it).
    ("history", "account"): {1, 2},
    ("impact", "account"): {1, 2},
    ("impact", "control"): {1, 2},
    ("plot", "account"): {1, 2},
}
# Walking these would start real work per value; other tests cover them.
SKIPPED = {
    # Every hostile value is a folder name a throwaway influxd could use: a whole demo each.
    ("demo", "spawn_influxd", None),
    # `--shard ""` is valid (no shard): the service would start and run until stopped.
    ("run", "shard", ""),
}
# Longer than this for one in-process run is a hang (the whole walk takes seconds).
STUCK_S = 20
# Valid values for required parameters that are not the one being walked.
VALID = {
    "account": "aplusk",
    "start": "2009-04-20",
    "end": "2009-04-28T00:00:00Z",
    "platform": "x",
    "handle": "newcomer",
}


def commands() -> Iterator[tuple[list[str], object]]:
    """(path, command) of the root and every command and subcommand of the app."""

    def walk(cmd: object, path: list[str]) -> Iterator[tuple[list[str], object]]:
        yield path, cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def config_text(url: str, db: str) -> str:
    """A valid config: x served from a replay file (no network), a Unicode-named account."""
    return f"""
[service]
data_dir = "data"
log_format = "json"

[influxdb]
url = "{url}"
database = "{db}"

[platforms.x]
replay = {{ file = "replay.csv" }}

[[watch]]
platform = "x"
handle = "aplusk"
below = 1_000_000

[[watch]]
platform = "x"
handle = "cafe"
name = "{UNICODE_NAME}"
"""


@pytest.fixture
def walk_env(tmp_path: Path, influxd: TempInfluxd) -> Iterator[dict[str, Path]]:
    """A folder with a valid config, a CSV to import, and a database with one account's counts."""
    db = "walk_" + os.urandom(4).hex()
    with httpx.Client(base_url=influxd.url, timeout=10) as client:
        client.post("/query", params={"q": f'CREATE DATABASE "{db}"'}).raise_for_status()
        line = f"followers,platform=x,account={UNICODE_NAME.replace(' ', chr(92) + ' ')} "
        points = "\n".join(
            f"{line}followers={1000 + i}i {1_700_000_000 + i * 3600}" for i in (0, 1)
        )
        client.post(
            "/write", params={"db": db, "precision": "s"}, content=points
        ).raise_for_status()
    (tmp_path / "replay.csv").write_text(
        "timestamp,platform,account,followers\n2026-01-01T00:00:00Z,x,aplusk,1000100\n"
    )
    (tmp_path / "import.csv").write_text(
        "timestamp,platform,account,followers\n2009-04-20T00:00:00Z,x,aplusk,1000\n"
    )
    text = config_text(influxd.url, db)
    config = tmp_path / "fw.toml"
    config.write_text(text)
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield {"dir": tmp_path, "config": config}
    finally:
        os.chdir(cwd)
        with httpx.Client(base_url=influxd.url, timeout=10) as client:
            client.post("/query", params={"q": f'DROP DATABASE "{db}"'})


# Values hostile to one option only: a well-formed shard whose COUNT would hang owner().
HOSTILE_FOR = {"shard": ["1/99999999999999999999"]}


def hostile(missing: Path) -> list[str]:
    """Values no option should crash on: empty, huge, inf, nan, negative, Unicode, a lost path,
    and text that Rich would read as markup."""
    return ["", HUGE, "inf", "nan", "-1", UNICODE, str(missing), "[/b]", "x/[/b]", "[red]x"]


def invoke(runner: CliRunner, args: list[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one in-process run; a stray exception counts as a crash."""

    def stuck(signum: int, frame: object) -> None:
        raise TimeoutError(f"no exit within {STUCK_S} s")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(STUCK_S)
    try:
        result = runner.invoke(app, args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    crash = result.exception is not None and not isinstance(result.exception, SystemExit)
    if crash:
        return 99, result.stdout, f"Traceback: {result.exception!r}"
    return result.exit_code, result.stdout, result.stderr


def arguments(
    path: list[str], cmd: object, walked: str, value: str, env: dict[str, Path]
) -> list[str]:
    """The command line: `value` for the walked parameter, valid values for the required ones
    and --config; positional arguments in their declared order."""
    positional: list[str] = []
    options: list[str] = []
    for param in getattr(cmd, "params", []):
        name = param.name or ""
        if name == walked:
            given = value
        elif name == "config":
            given = str(env["config"])
        elif param.required:
            suffix = {"plot": ".png", "report": ".html"}.get(" ".join(path), "")
            known = {"output": str(env["dir"] / f"out{suffix}"), "file": "import.csv"}
            found = known.get(name, VALID.get(name))
            assert found is not None, f"{' '.join(path)}: give VALID a value for {name}"
            given = found
        else:
            continue
        if param.param_type_name == "argument":
            positional.append(given)
        elif getattr(param, "is_flag", False):
            options.append(f"{param.opts[0]}={given}")
        else:
            options += [param.opts[0], given]
    return [*path, *positional, *options]


def test_every_option_refuses_hostile_values_in_one_line(walk_env: dict[str, Path]) -> None:
    runner = CliRunner()
    text = walk_env["config"].read_text()
    problems: list[str] = []
    walked = 0
    for path, cmd in commands():
        where = " ".join(path)
        for param in getattr(cmd, "params", []):
            name = param.name or ""
            if (where, name, None) in SKIPPED:
                continue
            allowed = ALLOWED.get((where, name), {2})
            values = hostile(walk_env["dir"] / "missing" / "out.file")
            for value in [*values, *HOSTILE_FOR.get(name, [])]:
                if (where, name, value) in SKIPPED:
                    continue
                args = arguments(path, cmd, name, value, walk_env)
                walk_env["config"].write_text(text)  # `accounts add/remove` edit it
                code, out, err = invoke(runner, args)
                walked += 1
                lines = err.splitlines()
                bad = (
                    "Traceback" in out + err
                    or len(lines) > 1
                    or (code == 2 and len(lines) != 1)
                    or code not in allowed
                )
                if bad:
                    problems.append(f"{where} {args[len(path) :]!r}: exit {code}, {err!r}")
    assert walked > 200
    assert not problems, "\n".join(problems)


def test_from_after_to_and_bad_durations_exit_2_in_one_line(walk_env: dict[str, Path]) -> None:
    runner = CliRunner()
    config = ["--config", str(walk_env["config"])]
    for args in (
        ["impact", "aplusk", "--from", "2009-04-28", "--to", "2009-04-20", *config],
        ["impact", "aplusk", "--from", "2009-04-28", "--to", "2009-04-28", *config],
        ["history", "aplusk", "--since", "inf", *config],
        ["history", "aplusk", "--since", "2fortnights", *config],
        ["plot", "aplusk", "-o", str(walk_env["dir"] / "no" / "p.png"), *config],
        ["report", "-o", str(walk_env["dir"] / "no" / "r.html"), *config],
        ["plot", "aplusk", "-o", "p.png", "--until", "2009-02-30", *config],
    ):
        code, out, err = invoke(runner, args)
        assert code == 2 and len(err.splitlines()) == 1, (args, code, out, err)
        assert "Traceback" not in out + err
    _, _, err = invoke(runner, ["history", "aplusk", "--since", "3y", *config])
    assert "units: s m h d w" in err


def test_unicode_account_names_stay_valid(walk_env: dict[str, Path]) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    config = ["--config", str(walk_env["config"])]
    for ref in (UNICODE_NAME, f"x/{UNICODE_NAME}", "CAFE"):
        code, out, err = invoke(runner, ["history", ref, "--since", "5200w", *config])
        assert (code, err) == (0, ""), (ref, out, err)
        assert "1,001" in out


def test_a_usage_error_is_one_line_from_the_real_entry_point(tmp_path: Path) -> None:
    # The one subprocess: the console entry point itself, not only CliRunner.
    result = subprocess.run(
        [sys.executable, "-m", "followerwatch", "history", "x/aplusk", "--since", "2fortnights"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "followerwatch: history: Invalid value for '--since': '2fortnights': expected a duration"
        " like 60, '90s', '5m', '1h30m', '2d' or '2w' (units: s m h d w)"
        " (see `followerwatch history --help`)"
    ]


def test_brackets_in_user_text_are_printed_not_read_as_markup(walk_env: dict[str, Path]) -> None:
    bad = walk_env["dir"] / "bad.csv"
    bad.write_text("timestamp,platform,account,followers\n2009-04-20T00:00:00Z,x,aplusk,[red]x\n")
    code, out, err = invoke(CliRunner(), ["import", str(bad), "--dry-run"])
    assert code == 1 and "Traceback" not in out + err
    assert "[red]x" in out, out


def test_report_without_a_watchlist_is_refused(tmp_path: Path) -> None:
    # Like check and poll: a page of "0 accounts" is not a success.
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        runner = CliRunner(env={"FOLLOWERWATCH_CONFIG": None})
        code, out, err = invoke(runner, ["report", "-o", "r.html"])
    finally:
        os.chdir(cwd)
    assert code == 2, out + err
    assert err.splitlines() == [
        "followerwatch: no config at ./followerwatch.toml (use --config or FOLLOWERWATCH_CONFIG)"
    ]
    assert not (tmp_path / "r.html").exists()


def test_report_that_cannot_be_written_is_one_line(walk_env: dict[str, Path]) -> None:
    dangling = walk_env["dir"] / "dangling.html"
    dangling.symlink_to(walk_env["dir"] / "gone" / "r.html")
    config = ["--config", str(walk_env["config"])]
    for target in (str(dangling), "/dev/full"):
        code, out, err = invoke(CliRunner(), ["report", "-o", target, *config])
        assert code == 1, (target, out, err)
        assert err.startswith(f"followerwatch: cannot write {target}: ") and err.count("\n") == 1
