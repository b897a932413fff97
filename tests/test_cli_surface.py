"""Issue 16 item 8: --version, help without artefacts, a check table that fits 80 columns, and
`accounts add` errors that name the user's file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import typer
from typer.testing import CliRunner

from followerwatch import __version__
from followerwatch.cli.main import app
from followerwatch.demo.influxd import free_port
from service_proc import run_cli

# Typer's type labels (`--help <bool>`, `<path>`, `<list[int]>`) and its `{file}` usage
# placeholders; help text such as "NAME.broken-<UTC time>" is prose, not a label.
ARTEFACT = re.compile(r"<[a-z][a-z_\[\]|,]*>|\{[a-z_]+\}")


def test_version_flag_prints_the_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"followerwatch {__version__}"
    assert run_cli("version").stdout == result.stdout  # the command stays


def command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group of the app, as the words that reach it."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def test_every_help_is_free_of_typer_artefacts() -> None:
    paths = list(command_paths(typer.main.get_command(app)))
    assert ("accounts", "add") in paths and ("import",) in paths and len(paths) > 15
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, (path, result.output)
        found = ARTEFACT.findall(result.output)
        assert not found, (path, found, result.output)
    # The usage line names an argument as FILE, the way help conventionally does.
    usage = runner.invoke(app, ["import", "--help"], env={"COLUMNS": "100"}).output
    assert "import [OPTIONS] FILE" in usage
    assert "--help   " in usage and "--dry-run   " in usage  # a flag shows no type
    assert run_cli("--help").stdout.count("--version") == 1


PLATFORMS = """
[platforms.x]
bearer_token = "t"
interval = "1s"
[platforms.youtube]
api_key = "k"
[platforms.twitch]
client_id = "i"
client_secret = "s"
"""
HANDLES = [
    ("x", "aplusk"),
    ("mastodon", "Gargron@mastodon.social"),
    ("mastodon", "someone@a-rather-long-instance-name.example"),
    ("bluesky", "jay.bsky.team"),
    ("youtube", "@mkbhd"),
    ("github", "torvalds"),
    ("twitch", "ninja"),
    ("reddit", "r/python"),
]


def test_no_row_of_the_check_table_wraps_at_80_columns(tmp_path: Path) -> None:
    path = tmp_path / "fw.toml"
    path.write_text(
        f'[service]\ndata_dir = "state"\n[influxdb]\nurl = "http://127.0.0.1:{free_port()}"\n'
        + PLATFORMS
        + "".join(f'[[watch]]\nplatform = "{p}"\nhandle = "{h}"\n' for p, h in HANDLES)
    )
    result = run_cli("check", "--config", str(path), env={"COLUMNS": "80"})
    assert result.returncode == 1  # nothing listens at that InfluxDB, and x is over its limit
    lines = result.stdout.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("└"))
    table = lines[top : bottom + 1]
    assert all(len(line) <= 80 for line in table), "\n".join(table)
    rows = [line for line in table if line.startswith("│")]
    platforms = [row.strip("│ ").split(" ")[0] for row in rows]
    assert platforms == [p for p, _ in HANDLES], "\n".join(table)  # one line per row
    x = [c.strip() for c in rows[0].strip("│").split("│")]
    assert x[-3:] == ["300/15m", "3s", "300%"]
    assert "✗ x: interval 1s is under 3s, the shortest its ceiling sustains" in result.stdout


def test_accounts_add_errors_name_the_real_file_never_a_temporary_one(tmp_path: Path) -> None:
    config = tmp_path / "fw.toml"
    config.write_text('[platforms.x]\nbearer_token = "t"\n')
    inline = run_cli("accounts", "add", "x", "not a handle!", "--offline", "-c", str(config))
    assert inline.returncode == 2
    assert inline.stderr.startswith(
        f"followerwatch: not added, the result would be invalid: {config}: watch[0] "
    )
    separate = tmp_path / "sep.toml"
    separate.write_text('watchlist = "list.toml"\n[platforms.x]\nbearer_token = "t"\n')
    (tmp_path / "list.toml").write_text('[[watch]]\nplatform = "x"\nhandle = "ok"\n')
    listed = run_cli("accounts", "add", "x", "bad handle", "--offline", "-c", str(separate))
    assert listed.returncode == 2
    assert f": {tmp_path / 'list.toml'}: watch[1] (x/bad handle).handle: " in listed.stderr
    for result in (inline, listed):
        assert ".followerwatch-edit" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw.toml", "list.toml", "sep.toml"]
