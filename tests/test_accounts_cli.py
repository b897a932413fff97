"""`followerwatch accounts add/remove/list`: in-place edits that keep every other byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.config.settings import load_config
from followerwatch.config.watchlist_edit import EditError, add_text, entry_spans, find_target
from service_proc import run_cli as cli

HEAD = """# followerwatch config, hand-written
[service]
data_dir = "data"   # state lives here
log_format = "json"

[platforms.x]
bearer_token = "{token}"
base_url = "{base_url}"
interval = "5m"
"""

WATCH = """
# The 2009 race.
[[watch]]
platform = "x"
handle = "aplusk"      # Ashton
below = 1_000_000

# CNN, with a name.
[[watch]]
platform = "x"
handle = "cnnbrk"
name = "CNN Breaking News"
above = [1_000_000, 2_000_000]
"""

TAIL = """
# Alerts go to the log.
[[notifiers]]
type = "log"
"""


def write_config(
    tmp_path: Path, base_url: str = "http://127.0.0.1:9", separate: bool = False
) -> Path:
    config = tmp_path / "fw.toml"
    head = HEAD.format(token=TOKEN, base_url=base_url)
    if separate:
        config.write_text('watchlist = "watchlist.toml"\n' + head + TAIL)
        (tmp_path / "watchlist.toml").write_text("# my watchlist" + WATCH)
    else:
        config.write_text(head + WATCH + TAIL)
    return config


@pytest.mark.parametrize("separate", [False, True])
def test_add_then_remove_round_trips_byte_for_byte(tmp_path: Path, separate: bool) -> None:
    config = write_config(tmp_path, separate=separate)
    target = find_target(config)
    original = target.file.read_text()

    added = cli(
        *("accounts", "add", "x", "jack", "--below", "5000000", "--every", "100000"),
        *("--offline", "--config", str(config)),
    )
    assert added.returncode == 0, added.stderr
    last = "above = [1_000_000, 2_000_000]\n"
    new = '[[watch]]\nplatform = "x"\nhandle = "jack"\nbelow = 5_000_000\nmilestones = 100_000\n'
    assert target.file.read_text() == original.replace(last, last + "\n" + new)
    loaded = load_config(config)
    assert [a.handle for a in loaded.accounts] == ["aplusk", "cnnbrk", "jack"]
    assert loaded.rules[("x", "jack")].below == [5_000_000]

    removed = cli("accounts", "remove", "x", "jack", "--config", str(config))
    assert removed.returncode == 0, removed.stderr
    assert target.file.read_text() == original


def test_remove_keeps_the_neighbours_comments(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = cli("accounts", "remove", "x", "aplusk", "--config", str(config))
    assert result.returncode == 0, result.stderr
    text = config.read_text()
    assert "aplusk" not in text and "# The 2009 race." not in text
    assert "# CNN, with a name.\n[[watch]]" in text
    assert "# followerwatch config, hand-written" in text and "# Alerts go to the log." in text
    assert [a.name for a in load_config(config).accounts] == ["CNN Breaking News"]


def test_remove_by_name_and_unknown(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert cli("accounts", "remove", "x", "CNN Breaking News", "-c", str(config)).returncode == 0
    before = config.read_text()
    result = cli("accounts", "remove", "x", "nobody", "-c", str(config))
    assert result.returncode == 1 and "not on the watchlist" in result.stderr
    assert config.read_text() == before


def test_duplicates_and_invalid_results_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    before = config.read_text()
    dup = cli("accounts", "add", "x", "APLUSK", "--offline", "-c", str(config))
    assert dup.returncode == 1 and "already on the watchlist" in dup.stderr
    assert f"{config}:" in dup.stderr  # names the line of the existing entry
    bad = cli("accounts", "add", "x", "not a handle!", "--offline", "-c", str(config))
    assert bad.returncode == 2 and "not a valid X handle" in bad.stderr
    unknown = cli("accounts", "add", "nosuch", "someone", "--offline", "-c", str(config))
    assert unknown.returncode == 2 and "unknown platform" in unknown.stderr
    assert config.read_text() == before
    assert not list(tmp_path.glob(".followerwatch-edit-*"))


def test_add_looks_the_handle_up_once(tmp_path: Path, httpserver: HTTPServer) -> None:
    fake = FakeX(httpserver, SystemClock())
    user = make_user(7)
    user["username"] = "jack"
    user["public_metrics"]["followers_count"] = 6_400_000
    fake.add(user)
    config = write_config(tmp_path, base_url=fake.base_url)
    before = config.read_text()

    missing = cli("accounts", "add", "x", "ghost", "-c", str(config))
    assert missing.returncode == 1 and "not_found" in missing.stderr
    assert config.read_text() == before

    found = cli("accounts", "add", "x", "jack", "-c", str(config))
    assert found.returncode == 0, found.stderr
    assert "6,400,000" in found.stdout
    assert [s.args["usernames"] for s in fake.seen] == ["ghost", "jack"]
    assert TOKEN not in found.stdout + found.stderr + missing.stdout + missing.stderr
    assert "jack" in [a.handle for a in load_config(config).accounts]


def test_list_shows_accounts_and_rules(tmp_path: Path) -> None:
    result = cli("accounts", "list", "-c", str(write_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    line = next(li for li in result.stdout.splitlines() if "cnnbrk" in li)
    assert "CNN Breaking News" in line and "1,000,000, 2,000,000" in line


def test_entries_written_inline_are_not_edited(tmp_path: Path) -> None:
    path = tmp_path / "fw.toml"
    text = 'watch = [{ platform = "x", handle = "a" }]\n'
    path.write_text(text)
    with pytest.raises(EditError, match="by hand"):
        add_text(find_target(path), text, {"platform": "x", "handle": "b"})


def test_entry_spans_take_the_comment_above_a_header() -> None:
    text = "a = 1\n\n# one\n[[watch]]\nx = 1\n\n# two\n[[watch]]\nx = 2\n"
    assert entry_spans(text.splitlines(keepends=True)) == [(2, 5), (6, 9)]


def test_remove_takes_the_resolved_entry_when_a_name_is_another_entrys_handle(
    tmp_path: Path,
) -> None:
    config = tmp_path / "fw.toml"
    config.write_text(
        HEAD.format(token=TOKEN, base_url="http://127.0.0.1:9")
        + '\n[[watch]]\nplatform = "x"\nhandle = "robert2"\nname = "bob"\n'
        + '\n[[watch]]\nplatform = "x"\nhandle = "bob"\nname = "Robert"\n'
    )
    result = cli("accounts", "remove", "x/Robert", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "removed x/bob" in result.stdout
    assert [(a.handle, a.name) for a in load_config(config).accounts] == [("robert2", "bob")]
    # And the other way round: the name "bob" is the entry named bob, not the handle bob.
    config.write_text(
        HEAD.format(token=TOKEN, base_url="http://127.0.0.1:9")
        + '\n[[watch]]\nplatform = "x"\nhandle = "bob"\nname = "Robert"\n'
        + '\n[[watch]]\nplatform = "x"\nhandle = "robert2"\nname = "bob"\n'
    )
    assert cli("accounts", "remove", "x/bob", "-c", str(config)).returncode == 0
    assert [(a.handle, a.name) for a in load_config(config).accounts] == [("bob", "Robert")]
