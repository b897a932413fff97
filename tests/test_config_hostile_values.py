"""Values that passed `check` and crashed or hung later are refused at load: exit 2, one line.

The first case of each table runs the real `followerwatch check` (the same line, exit 2, no
traceback, no secret); the others run the loader, which gives that line's text.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from followerwatch.config.settings import load_config
from test_config_edges import BASE, SECRET, refusal, refused


def write(tmp_path: Path, text: str, name: str = "fw.toml") -> Path:
    """The shared base config plus `text`; a text with no table header is in [influxdb]."""
    path = tmp_path / name
    path.write_text(BASE.replace('url = "http://127.0.0.1:9"\n', "") + text)
    return path


# `~user/...` of a user that does not exist: expanduser raised RuntimeError, a traceback.
TILDE = [
    (
        "platforms.github.token_file",
        '[platforms.github]\ntoken_file = "~nosuchuser-fw/tok"',
    ),
    (
        "notifiers[0].urls_file",
        '[[notifiers]]\ntype = "apprise"\nurls_file = "~nosuchuser-fw/urls"',
    ),
    (
        "notifiers[0].secret_file",
        '[[notifiers]]\ntype = "webhook"\nurl = "http://h/x"\nsecret_file = "~nosuchuser-fw/s"',
    ),
]


@pytest.mark.parametrize(("key", "text"), TILDE, ids=[t[0] for t in TILDE])
def test_a_file_under_an_unknown_users_home_is_refused(tmp_path: Path, key: str, text: str) -> None:
    path = write(tmp_path, text)
    line = refusal(path, cli=text == TILDE[0][1])
    assert f"{path}: {key}: cannot find the home folder of ~nosuchuser-fw" in line


def test_a_file_under_an_unknown_users_home_from_the_environment_names_the_variable(
    tmp_path: Path,
) -> None:
    name = "FOLLOWERWATCH_PLATFORMS__GITHUB__TOKEN_FILE"
    line = refused(write(tmp_path, ""), env={name: "~nosuchuser-fw/tok"})
    assert f"environment {name}: platforms.github.token_file: cannot find the home" in line


# Sent as an HTTP header, which httpx encodes as ASCII: anything else failed every request.
NOT_ASCII = [
    ("platforms.github.token", f'[platforms.github]\ntoken = "{SECRET}é"'),
    (
        "notifiers[0].bearer_token",
        f'[[notifiers]]\ntype = "webhook"\nurl = "http://h/x"\nbearer_token = "tök{SECRET}"',
    ),
    (
        "notifiers[0].headers.X-Team",
        '[[notifiers]]\ntype = "webhook"\nurl = "http://h/x"\nheaders = { X-Team = "équipe" }',
    ),
    (
        "notifiers[0].bearer_token",
        f'[[notifiers]]\ntype = "alertmanager"\nurl = "http://h"\nbearer_token = "{SECRET}ü"',
    ),
    ("platforms.x.bearer_token", f'[platforms.x]\nbearer_token = "{SECRET}\u2019"'),
    ("platforms.youtube.api_key", f'[platforms.youtube]\napi_key = "{SECRET}é"'),
    (
        "platforms.mastodon.tokens.m.social",
        f'[platforms.mastodon.tokens]\n"m.social" = "é{SECRET}"',
    ),
    (
        "platforms.http_json.secret_headers.X-Key",
        f'[platforms.http_json.secret_headers]\nX-Key = "{SECRET}é"',
    ),
    ("platforms.http_json.headers.Accept", '[platforms.http_json.headers]\nAccept = "jsön"'),
    ("platforms.twitch.client_id", '[platforms.twitch]\nclient_id = "clïent"'),
    ("platforms.reddit.user_agent", '[platforms.reddit]\nuser_agent = "fw (by /u/zoë)"'),
    ("influxdb.token", f'token = "{SECRET}é"'),
]


@pytest.mark.parametrize(("key", "text"), NOT_ASCII, ids=[n[0] for n in NOT_ASCII])
def test_a_header_value_that_is_not_ascii_is_refused(tmp_path: Path, key: str, text: str) -> None:
    path = write(tmp_path, text)
    line = refusal(path, cli=text == NOT_ASCII[0][1])
    assert f"{path}: {key}: must be " in line and "ASCII" in line


def test_a_secret_file_that_is_not_ascii_is_refused_without_its_text(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text(f"{SECRET}é\n")
    path = write(tmp_path, '[platforms.github]\ntoken_file = "tok"')
    line = refused(path)
    assert f"{path}: platforms.github.token_file: {tmp_path / 'tok'}: must be ASCII" in line


def test_non_ascii_passwords_and_other_secrets_still_load(tmp_path: Path) -> None:
    # Basic auth and form bodies take UTF-8; Apprise URLs go to Apprise, a webhook secret to HMAC.
    path = write(
        tmp_path,
        'username = "u"\npassword = "pässwörd"\n'
        '[[notifiers]]\ntype = "webhook"\nurl = "http://h/x"\nsecret = "sécret"\n',
    )
    assert sorted(load_config(path).settings.secrets()) == ["pässwörd", "sécret"]


# A port out of range or not a number (or no host) passed, then crashed when the URL was used.
PORTS = [
    ("influxdb.url", 'url = "http://host:99999"'),
    ("influxdb.url", 'url = "http://host:abc"'),
    ("influxdb.url", 'url = "http://host:0"'),
    ("influxdb.url", 'url = "http://:8086"'),
    ("notifiers[0].url", '[[notifiers]]\ntype = "webhook"\nurl = "http://h:99999/x"'),
    ("notifiers[0].url", '[[notifiers]]\ntype = "alertmanager"\nurl = "http://am:-1"'),
    ("platforms.x.base_url", '[platforms.x]\nbase_url = "https://api.x.com:70000"'),
    (
        "platforms.http_json.url",
        '[platforms.http_json]\nurl = "https://api:1e3/u/{handle}"\ncount_path = "n"',
    ),
    ("platforms.mastodon.instance_urls.m", '[platforms.mastodon.instance_urls]\nm = "http://m:x"'),
    (
        "notifiers[0].urls",
        f'[[notifiers]]\ntype = "apprise"\nurls = ["json://u:{SECRET}@h:99999/x"]',
    ),
]


@pytest.mark.parametrize(("key", "text"), PORTS, ids=[f"{p[0]}-{i}" for i, p in enumerate(PORTS)])
def test_a_url_without_a_valid_host_and_port_is_refused(
    tmp_path: Path, key: str, text: str
) -> None:
    path = write(tmp_path, text)
    line = refusal(path, cli=text == PORTS[0][1])
    assert f"{path}: {key}: " in line and ("port" in line or "host" in line), line


# Config and watchlist files are read like secret files: a FIFO or a device hung the load.
def _no_hang(config: Path, cwd: Path | None = None) -> str:
    try:
        return refused(config, cwd=cwd, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {config} hung")


def test_a_fifo_as_the_config_file_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fw.toml"
    os.mkfifo(fifo)
    assert (
        _no_hang(fifo) == f"followerwatch: invalid config: {fifo}: cannot read: not a regular file"
    )


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_a_fifo_or_a_device_as_the_watchlist_is_refused_without_hanging(
    tmp_path: Path, target: str
) -> None:
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
    path = tmp_path / "fw.toml"
    path.write_text(f'watchlist = "{target}"\n' + write(tmp_path, "", "base.toml").read_text())
    named = target if target.startswith("/") else str(tmp_path / target)
    line = _no_hang(path, cwd=tmp_path)
    assert line.endswith(f"{path}: watchlist: {named}: cannot read: not a regular file")


def test_a_watchlist_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "w.toml"
    with big.open("wb") as fh:  # sparse: no disk used, nothing read
        fh.truncate(256 * 1024 * 1024 + 1)  # the documented limit, plus a byte
    path = tmp_path / "fw.toml"
    path.write_text(f'watchlist = "{big}"\n' + write(tmp_path, "", "base.toml").read_text())
    line = refusal(path, cli=True)
    assert line.endswith(f"{path}: watchlist: {big}: cannot read: larger than 256 MiB")
