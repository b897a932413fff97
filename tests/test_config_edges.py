"""Values that validate today and break later are refused at load: exit 2, one line, no secret.

Every case runs the real `followerwatch check`; a config it accepts gets as far as InfluxDB
(nothing listens on port 9, so exit 1), one it refuses exits 2 before that.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from followerwatch.config.files import MAX_SECRET_FILE
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
SECRET = "S3cret-value-77"


def refused(
    config: Path, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 30
) -> str:
    """The one stderr line of a `check` that must exit 2 (no traceback, no secret in it)."""
    result = run_cli("check", "--config", str(config), env=env, cwd=cwd, timeout=timeout)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    return lines[0]


def refusal(config: Path, *, cli: bool) -> str:
    """`refused` through the CLI, or the same line from the loader (for the cases of a table
    beyond those the CLI runs: `_load` turns any ConfigError into exactly this line and exit 2)."""
    if cli:
        return refused(config)
    with pytest.raises(ConfigError) as exc:
        load_config(config)
    line = f"followerwatch: invalid config: {exc.value}"
    assert "\n" not in line and SECRET not in line
    return line


def write(tmp_path: Path, text: str, name: str = "fw.toml") -> Path:
    path = tmp_path / name
    path.write_text(BASE + text)
    return path


# Item 8: credentials in an http(s) URL. (key in the message, config text, where they go instead)
USERINFO = [
    ("influxdb.url", f'[influxdb]\nurl = "http://admin:{SECRET}@127.0.0.1:9"', "password_file"),
    (
        "notifiers[0].url",
        f'[[notifiers]]\ntype = "webhook"\nurl = "https://u:{SECRET}@hooks.example/x"',
        "bearer_token_file",
    ),
    (
        "notifiers[0].url",
        f'[[notifiers]]\ntype = "alertmanager"\nurl = "http://am:{SECRET}@127.0.0.1:9093"',
        "password_file",
    ),
    (
        "platforms.http_json.url",
        f'[platforms.http_json]\nurl = "https://k:{SECRET}@api.example/u/{{handle}}"\n'
        'count_path = "n"',
        "secret_headers",
    ),
    (
        "platforms.x.base_url",
        f'[platforms.x]\nbase_url = "https://{SECRET}@api.example"',
        "_file",
    ),
]


@pytest.mark.parametrize(("key", "text", "instead"), USERINFO, ids=[u[0] for u in USERINFO])
def test_credentials_in_a_url_are_refused_with_where_they_go(
    tmp_path: Path, key: str, text: str, instead: str
) -> None:
    # The sections are written whole, so BASE's [influxdb] must not be written twice.
    base = BASE if not text.startswith("[influxdb]") else BASE.split("[influxdb]")[0]
    path = tmp_path / "fw.toml"
    path.write_text(base + text + "\n")
    line = refusal(path, cli=text == USERINFO[0][1])
    assert f"{path}: {key}: must not contain credentials" in line and instead in line


def test_credentials_in_a_url_from_the_environment_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    line = refused(path, env={"FOLLOWERWATCH_INFLUXDB__URL": f"http://a:{SECRET}@127.0.0.1:9"})
    assert line.startswith("followerwatch: invalid config: environment FOLLOWERWATCH_INFLUXDB__URL")
    assert "must not contain credentials" in line


def test_apprise_credentials_never_reach_any_output(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("down", status=500)
    url = f"json://user:{SECRET}@{httpserver.host}:{httpserver.port}/hook"
    path = tmp_path / "fw.toml"
    path.write_text(
        BASE.replace("[service]", '[service]\nlog_level = "debug"')
        + f'[[notifiers]]\ntype = "apprise"\nurls = ["{url}"]\n'
    )
    # Logs redact the password on its own too, whatever form a URL is printed in.
    assert SECRET in load_config(path).settings.secrets()
    outputs = []
    for command in ("check", "test-alert", "events"):
        result = run_cli(command, "--config", str(path))
        assert result.returncode in (0, 1), result.stderr
        outputs.append(result.stdout + result.stderr)
    # The test alert really went out with the credentials, and failed.
    assert len(httpserver.log) == 1
    assert httpserver.log[0][0].authorization.password == SECRET  # type: ignore[union-attr]
    assert "apprise" in outputs[1] and "failed" in outputs[1]
    # A config error in the same notifier names the URL by index only.
    path.write_text(path.read_text().replace("json://", "nosuchscheme://"))
    line = refused(path)
    assert "notifiers[0].urls: urls[0] is not a valid Apprise URL" in line
    for output in outputs:
        assert SECRET not in output


# Item 9: empty secrets, inline or from a file, from the file or the environment. (The first
# case of each table runs through the CLI, the others through the loader: see `refusal`.)
EMPTY = [
    (
        "webhook secret",
        '[[notifiers]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/h"\nsecret = ""',
        "notifiers[0].secret: must not be empty",
    ),
    ("inline", '[platforms.x]\nbearer_token = ""', "platforms.x.bearer_token: must not be empty"),
    ("blank", '[platforms.x]\nbearer_token = "  "', "platforms.x.bearer_token: must not be empty"),
    (
        "http_json bearer",
        '[platforms.http_json]\nbearer_token = ""',
        "platforms.http_json.bearer_token: must not be empty",
    ),
    (
        "secret header",
        '[platforms.http_json.secret_headers]\nX-Api-Key = ""',
        "platforms.http_json.secret_headers.X-Api-Key: must not be empty",
    ),
    (
        "apprise url",
        '[[notifiers]]\ntype = "apprise"\nurls = [""]',
        "notifiers[0].urls[0]: must not be empty",
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), EMPTY, ids=[e[0] for e in EMPTY])
def test_an_empty_secret_is_refused(tmp_path: Path, case: str, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert f"{path}: {expected}" in refusal(path, cli=text == EMPTY[0][1])


@pytest.mark.parametrize("content", ["", "\n", "  \n\t\n"], ids=["empty", "newline", "blank"])
def test_an_empty_secret_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "token").write_text(content)
    path = write(
        tmp_path,
        '[[notifiers]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/h"\nsecret_file = "token"',
    )
    line = refusal(path, cli=content == "")
    assert f"{path}: notifiers[0].secret_file: {tmp_path / 'token'}: the file is empty" in line


def test_an_empty_secret_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    line = refused(path, env={"FOLLOWERWATCH_PLATFORMS__X__BEARER_TOKEN": ""})
    assert "environment FOLLOWERWATCH_PLATFORMS__X__BEARER_TOKEN" in line and "empty" in line


# Item 10: relative paths of the file resolve from its folder, whatever the working directory.
def test_relative_secret_files_resolve_from_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    for folder, tag in ((home, "real"), (elsewhere, "decoy")):
        (folder / "secrets").mkdir(parents=True)
        (folder / "secrets" / "x").write_text(f"{tag}-x-token\n")
        (folder / "secrets" / "hook").write_text(f"{tag}-hook-secret")
        (folder / "secrets" / "urls").write_text(f"json://{tag}-host/path\n")
        (folder / "lists").mkdir()
        handle = "realone" if tag == "real" else "decoyone"
        (folder / "lists" / "w.toml").write_text(
            f'[[watch]]\nplatform = "x"\nhandle = "{handle}"\n'
        )
    path = home / "fw.toml"
    path.write_text(
        'watchlist = "lists/w.toml"\n'
        + BASE
        + '[platforms.x]\nbearer_token_file = "secrets/x"\n'
        + '[[notifiers]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/h"\n'
        + 'secret_file = "secrets/hook"\n'
        + '[[notifiers]]\ntype = "apprise"\nurls_file = "secrets/urls"\n'
    )
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert sorted(config.settings.secrets()) == [
        "json://real-host/path",
        "real-hook-secret",
        "real-x-token",
    ]
    assert [a.handle for a in config.accounts] == ["realone"]
    assert config.settings.service.data_dir == home / "state"
    assert config.settings.watchlist == home / "lists" / "w.toml"
    # The CLI run from another folder finds them too (without decoys, main exits 2 here).
    for folder in ("secrets", "lists"):
        for child in (elsewhere / folder).iterdir():
            child.unlink()
    result = run_cli("check", "--config", str(path), cwd=elsewhere)
    assert result.returncode == 1 and "config valid: 1 accounts" in result.stdout, result.stderr


def test_without_a_config_file_relative_secret_files_resolve_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tok").write_text("cwd-token-1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOLLOWERWATCH_PLATFORMS__X__BEARER_TOKEN_FILE", "tok")
    assert load_config(None).settings.secrets() == ["cwd-token-1"]


# Item 11: durations that would crash a timer.
DURATIONS = [
    ("platforms.x.interval", "[platforms.x]\ninterval = inf", "finite"),
    ("platforms.x.interval", "[platforms.x]\ninterval = nan", "finite"),
    ("platforms.x.interval", "[platforms.x]\ninterval = 1e308", "longer than 366 days"),
    ("platforms.x.interval", '[platforms.x]\ninterval = "400d"', "longer than 366 days"),
    ("platforms.x.interval", "[platforms.x]\ninterval = 0", "longer than 0"),
    ("influxdb.timeout", "[influxdb]\ntimeout = inf", "finite"),
    ("alerts.backoff_max", "[alerts]\nbackoff_max = 1e308", "longer than 366 days"),
    ("platforms.x.defaults.stale", "[platforms.x.defaults]\nstale = -inf", "finite"),
    ("platforms.x.max_wait", '[platforms.x]\nmax_wait = "inf"', "finite"),
    ("notifiers[0].timeout", '[[notifiers]]\ntype = "webhook"\nurl = "http://h"\ntimeout = 0', "0"),
]


@pytest.mark.parametrize(
    ("key", "text", "problem"), DURATIONS, ids=[f"{d[0]}={d[1].split('= ')[-1]}" for d in DURATIONS]
)
def test_a_duration_that_would_crash_later_is_refused(
    tmp_path: Path, key: str, text: str, problem: str
) -> None:
    if text.startswith("[influxdb]"):
        path = tmp_path / "fw.toml"
        path.write_text(BASE.replace('url = "http', text.split("\n")[1] + '\nurl = "http'))
    else:
        path = write(tmp_path, text)
    line = refusal(path, cli=text == DURATIONS[0][1])
    assert f"{path}: {key}: " in line and problem in line


# Item 11 (and item 4's config half): thresholds, milestones and counts in 0 … 2^53 − 1.
TOO_BIG = MAX_COUNT + 1
COUNTS = [
    # A single value where a list goes is named by its key (no [0] the user did not write).
    ("platforms.x.defaults.below", "[platforms.x.defaults]\nbelow = 100000000000000000000"),
    ("platforms.x.defaults.above[1]", f"[platforms.x.defaults]\nabove = [5, {TOO_BIG}]"),
    (
        "platforms.x.defaults.milestones.levels[0]",
        f"[platforms.x.defaults]\nmilestones = [{TOO_BIG}]",
    ),
    ("platforms.x.defaults.milestones.every", f"[platforms.x.defaults]\nmilestones = {TOO_BIG}"),
    (
        "platforms.x.defaults.changes[0].drop",
        f'[[platforms.x.defaults.changes]]\nwindow = "1h"\ndrop = {TOO_BIG}',
    ),
    ("platforms.x.defaults.hysteresis", f"[platforms.x.defaults]\nhysteresis = {TOO_BIG}"),
    (
        "watch[0] (x/aplusk).below",
        '[platforms.x]\nbearer_token = "t-1234"\n'
        '[[watch]]\nplatform = "x"\nhandle = "aplusk"\nbelow = -1',
    ),
    ("platforms.youtube.daily_quota", f"[platforms.youtube]\ndaily_quota = {TOO_BIG}"),
]


@pytest.mark.parametrize(("key", "text"), COUNTS, ids=[c[0] for c in COUNTS])
def test_a_count_outside_0_to_2_53_is_refused(tmp_path: Path, key: str, text: str) -> None:
    path = write(tmp_path, text)
    line = refusal(path, cli=text == COUNTS[0][1])
    assert f"{path}: {key}: " in line


def test_counts_up_to_2_53_minus_1_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"[platforms.x.defaults]\nbelow = 0\nabove = {MAX_COUNT}\nmilestones = [{MAX_COUNT}]\n",
    )
    rules = load_config(path).settings.platform("x").defaults
    assert (rules.below, rules.above) == ([0], [MAX_COUNT])


# Item 11: CR or LF in anything sent as an HTTP header.
HEADERS = [
    (
        "notifiers[0].headers.X-Team",
        '[[notifiers]]\ntype = "webhook"\nurl = "http://h"\n'
        'headers = { X-Team = "a\\r\\nX-Evil: 1" }',
        "one line",
    ),
    (
        "notifiers[0].headers.X Team",
        '[[notifiers]]\ntype = "webhook"\nurl = "http://h"\nheaders = { "X Team" = "a" }',
        "header names",
    ),
    (
        "platforms.http_json.headers.Accept",
        '[platforms.http_json.headers]\nAccept = "json\\nX-Evil: 1"',
        "one line",
    ),
    (
        "platforms.http_json.secret_headers.X-Key",
        f'[platforms.http_json.secret_headers]\nX-Key = "{SECRET}\\r\\nX-Evil: 1"',
        "one line",
    ),
    ("platforms.x.bearer_token", f'[platforms.x]\nbearer_token = "{SECRET}\\n"', "one line"),
    ("platforms.twitch.client_id", '[platforms.twitch]\nclient_id = "abc\\r\\n"', "one line"),
]


@pytest.mark.parametrize(("key", "text", "problem"), HEADERS, ids=[h[0] for h in HEADERS])
def test_a_line_break_in_a_header_value_is_refused(
    tmp_path: Path, key: str, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    line = refusal(path, cli=text == HEADERS[0][1])
    assert f"{path}: {key}" in line and problem in line


# Item 11: an environment variable that is not the JSON its key needs.
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FOLLOWERWATCH_INFLUXDB", "{bad"),
        ("FOLLOWERWATCH_NOTIFIERS", f'[{{"type": "webhook", "secret": "{SECRET}"'),
        ("FOLLOWERWATCH_WATCH", "[{"),
    ],
)
def test_bad_json_in_an_environment_variable_is_one_line(
    tmp_path: Path, name: str, value: str
) -> None:
    line = refused(write(tmp_path, ""), env={name: value})
    assert line == f"followerwatch: invalid config: environment {name}: " + (
        f"{name.removeprefix('FOLLOWERWATCH_').lower()}: not valid JSON"
    )


# Item 11: secret files that would hang the load or exhaust memory.
def test_a_fifo_as_secret_file_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    path = write(tmp_path, f'[platforms.x]\nbearer_token_file = "{fifo}"')
    try:
        line = refused(path, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("reading a FIFO as a secret file hung the load")
    assert f"{path}: platforms.x.bearer_token_file: cannot read {fifo}: not a regular file" in line


def test_a_device_as_secret_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[platforms.x]\nbearer_token_file = "/dev/zero"')
    line = refused(path, timeout=15)
    assert "platforms.x.bearer_token_file: cannot read /dev/zero: not a regular file" in line


def test_a_secret_file_over_64_kib_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "token"
    big.write_text(SECRET + " " * (MAX_SECRET_FILE + 1 - len(SECRET)))
    path = write(tmp_path, f'[platforms.x]\nbearer_token_file = "{big}"')
    assert "larger than 64 KiB" in refused(path)
    # At exactly 64 KiB it still loads.
    big.write_text(SECRET + " " * (MAX_SECRET_FILE - len(SECRET)))
    assert load_config(path).settings.secrets() == [SECRET]
