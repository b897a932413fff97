"""One name per account in every command, and options checked before any work (issue 16, 5-6)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from followerwatch.cli.args import AmbiguousAccount, resolve_account
from followerwatch.cli.main import app
from followerwatch.config.settings import load_config
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.units import parse_duration

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# Stored under these (platform, account) tags: hourly, falling 10 an hour, for six days.
STORED = [("x", "aplusk"), ("x", "obama"), ("github", "octocat/hello-world")]

CONFIG = """
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
handle = "BarackObama"
name = "obama"

[[watch]]
platform = "x"
handle = "cnnbrk"

[[watch]]
platform = "mastodon"
handle = "cnnbrk@mastodon.social"
name = "cnnbrk"

[[watch]]
platform = "github"
handle = "octocat/hello-world"
"""


def tag(value: str) -> str:
    return value.replace(" ", "\\ ").replace(",", "\\,")


@pytest.fixture
def setup(tmp_path: Path, influxd: TempInfluxd) -> Iterator[Path]:
    """A config with five entries (one name on two platforms) and counts for three of them."""
    db = "args_" + os.urandom(4).hex()
    lines = [
        f"followers,platform={p},account={tag(a)} followers={1_000_500 - 10 * h}i "
        f"{int((NOW - timedelta(hours=6 * 24 - h)).timestamp())}"
        for p, a in STORED
        for h in range(6 * 24 + 1)
    ]
    with httpx.Client(base_url=influxd.url, timeout=10) as client:
        client.post("/query", params={"q": f'CREATE DATABASE "{db}"'}).raise_for_status()
        write = client.post("/write", params={"db": db, "precision": "s"}, content="\n".join(lines))
        write.raise_for_status()
    (tmp_path / "replay.csv").write_text("timestamp,platform,account,followers\n")
    config = tmp_path / "fw.toml"
    config.write_text(CONFIG.format(url=influxd.url, db=db))
    try:
        yield config
    finally:
        with httpx.Client(base_url=influxd.url, timeout=10) as client:
            client.post("/query", params={"q": f'DROP DATABASE "{db}"'})


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_every_command_takes_the_name_the_platform_name_and_the_handle(
    setup: Path, tmp_path: Path
) -> None:
    c = ["--config", str(setup)]
    start, end = (NOW - timedelta(days=2)).date(), (NOW - timedelta(days=1)).date()
    for ref, who in (
        ("aplusk", "@aplusk"),
        ("x/aplusk", "@aplusk"),
        ("obama", "@obama"),
        ("x/obama", "@obama"),
        ("BarackObama", "@obama"),  # the handle
        ("x/barackobama", "@obama"),  # the handle, in any case
        ("@BarackObama", "@obama"),
    ):
        code, out, err = run("history", ref, "--since", "2w", *c)
        assert (code, err) == (0, ""), (ref, out, err)
        assert f"{who} on x" in out and "now 999,060" in out
        png = tmp_path / "plot.png"
        code, out, err = run("plot", ref, "-o", str(png), "--since", "1w", *c)
        assert (code, err) == (0, ""), (ref, out, err)
        assert png.read_bytes()[:4] == b"\x89PNG"
        png.unlink()
        code, out, err = run(
            "impact", ref, "--from", str(start), "--to", str(end), "--baseline", "3d", *c
        )
        assert (code, err) == (0, ""), (ref, out, err)
        assert who in out and "no counts" not in out


def test_a_github_repository_name_is_not_mistaken_for_a_platform(setup: Path) -> None:
    c = ["--config", str(setup)]
    for ref in ("octocat/hello-world", "github/octocat/hello-world", "Octocat/Hello-World"):
        code, out, err = run("history", ref, "--since", "2w", *c)
        assert (code, err) == (0, ""), (ref, out, err)
        assert "@octocat/hello-world on github" in out


def test_an_ambiguous_name_is_refused_with_its_candidates(setup: Path, tmp_path: Path) -> None:
    c = ["--config", str(setup)]
    before = setup.read_text()
    for args in (
        ["history", "cnnbrk", *c],
        ["plot", "cnnbrk", "-o", str(tmp_path / "p.png"), *c],
        ["impact", "cnnbrk", "--from", "2009-04-27", "--to", "2009-04-28", *c],
        [
            "impact",
            "x/aplusk",
            "--from",
            "2009-04-27",
            "--to",
            "2009-04-28",
            "--control=cnnbrk",
            *c,
        ],
        ["accounts", "remove", "cnnbrk", *c],
    ):
        code, out, err = run(*args)
        assert code == 2 and len(err.splitlines()) == 1, (args, out, err)
        assert "cnnbrk names several accounts: x/cnnbrk, mastodon/cnnbrk" in err
    assert setup.read_text() == before
    # Either spelling with its platform picks one.
    assert run("history", "mastodon/cnnbrk", *c)[2] == ""


def test_accounts_remove_takes_the_same_names(setup: Path) -> None:
    c = ["--config", str(setup)]
    assert run("accounts", "remove", "x/barackobama", *c)[0] == 0
    assert run("accounts", "remove", "octocat/hello-world", *c)[0] == 0
    assert run("accounts", "remove", "x", "cnnbrk", *c)[0] == 0
    names = [(a.platform, a.name) for a in load_config(setup).accounts]
    assert names == [("x", "aplusk"), ("mastodon", "cnnbrk")]
    code, _, err = run("accounts", "remove", "nobody", *c)
    assert code == 1 and "nobody is not watched" in err


def test_dates_with_or_without_time_and_weeks(setup: Path, tmp_path: Path) -> None:
    c = ["--config", str(setup)]
    day = (NOW - timedelta(days=1)).date().isoformat()
    for until in (day, f"{day}T12:00", f"{day}T12:00:00+02:00", f"{day}T12:00:00Z"):
        code, out, err = run("report", "-o", str(tmp_path / "r.html"), "--until", until, *c)
        assert (code, err) == (0, ""), (until, out, err)
    page = (tmp_path / "r.html").read_text()
    assert "@obama (x)" in page and "data:image/png;base64," in page
    assert parse_duration("2w") == 14 * 86400 and parse_duration("1w2d") == 9 * 86400
    # The config reads durations with the same parser.
    text = setup.read_text().replace('handle = "aplusk"\n', 'handle = "aplusk"\nstale = "1w"\n')
    setup.write_text(text)
    assert load_config(setup).rules[("x", "aplusk")].stale == 7 * 86400
    setup.write_text(text.replace('"1w"', '"1y"'))
    code, _, err = run("accounts", "list", *c)
    assert code == 2 and err.count("\n") == 1
    assert "aplusk).stale: expected a duration like" in err and "(units: s m h d w)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "x/aplusk", "--since", "inf"], "'inf': a duration must be a finite"),
        (["history", "x/aplusk", "--window", "2y"], "(units: s m h d w)"),
        (["plot", "aplusk", "-o", "p.png", "--until", "27/04/2009"], "expected an ISO 8601 date"),
        (["plot", "aplusk", "-o", "missing/p.png"], "folder"),
        (["report", "-o", "missing/r.html"], "does not exist"),
        (["impact", "aplusk", "--from", "2009-04-28", "--to", "2009-04-27"], "must be before"),
        (
            ["impact", "aplusk", "--from", "2009-04-27", "--to", "2009-04-28", "--png", "no/i.png"],
            "folder",
        ),
        (["history", "aplusk", "--platform", "myspace"], "unknown platform 'myspace'"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(
    setup: Path, tmp_path: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(*args, "--config", str(setup))
    assert code == 2 and len(err.splitlines()) == 1, (out, err)
    assert message in err and "Traceback" not in out + err
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.html"))


def test_the_resolver_prefers_the_name_then_the_handle() -> None:
    from followerwatch.models import Account

    accounts = [Account("x", "jack", "boss"), Account("bluesky", "boss.bsky.social", "jack")]
    # `jack` is x's handle and bluesky's name: the name wins.
    assert resolve_account(accounts, "jack").platform == "bluesky"
    assert resolve_account(accounts, "x/jack").name == "boss"
    # Unwatched but with a platform: its counts may still be in InfluxDB.
    assert resolve_account(accounts, "x/dorsey").key == ("x", "dorsey")
    with pytest.raises(AmbiguousAccount, match="x/a, bluesky/a"):
        resolve_account([Account("x", "a", "a"), Account("bluesky", "a", "a")], "a")


def test_a_bare_name_is_matched_ignoring_case_before_the_handle() -> None:
    from followerwatch.models import Account

    accounts = [Account("x", "aplusk", "Ashton"), Account("bluesky", "ashton.bsky.social", "Bo")]
    assert resolve_account(accounts, "ashton").handle == "aplusk"
    assert resolve_account(accounts, "x/ASHTON").handle == "aplusk"
    # An exact name still wins over a name that differs only in case.
    both = [Account("x", "a1", "Ann"), Account("x", "a2", "ann")]
    assert resolve_account(both, "ann").handle == "a2"
    with pytest.raises(AmbiguousAccount, match="x/Ann, x/ann"):
        resolve_account(both, "ANN")
