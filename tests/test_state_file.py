"""A damaged or read-only state file stops start-up with one line; never replaced silently."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from followerwatch.demo.influxd import free_port
from followerwatch.disk.sqlite import check_db
from followerwatch.errors import StateFileError
from service_proc import run_cli
from smallfs import remount_read_only, small_fs

GARBAGE = bytes(range(256)) * 64  # 16 KiB that are no SQLite database


def config(tmp_path: Path) -> Path:
    """A replay-driven config whose InfluxDB is a dead port (the spool takes the points)."""
    (tmp_path / "replay.csv").write_text(
        "timestamp,platform,account,followers\n"
        "2026-01-01T00:00:00Z,x,aplusk,1000100\n"
        "2026-01-01T00:05:00Z,x,aplusk,999990\n"
    )
    path = tmp_path / "fw.toml"
    path.write_text(f"""
[service]
data_dir = "data"
log_format = "json"
ops_address = ""
[influxdb]
url = "http://127.0.0.1:{free_port()}"
database = "fw"
[platforms.x]
interval = "1h"
replay = {{ file = "replay.csv" }}
[[watch]]
platform = "x"
handle = "aplusk"
below = 1_000_000
""")
    return path


def spooled(result: subprocess.CompletedProcess[str]) -> bool:
    """A poll that worked: exit 1 only because InfluxDB is a dead port and the reading waits."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 reading spooled for later" in result.stderr, result.stderr
    return True


def one_line_naming(result: object, path: Path, problem: str) -> str:
    """The single stderr line of a command that refused a state file."""
    stderr = getattr(result, "stderr", "")
    assert getattr(result, "returncode", None) == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert str(path) in lines[0] and problem in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("damage", "problem"),
    [(GARBAGE, "is damaged (file is not a database)"), (b"", "is empty (0 bytes)")],
    ids=["garbage", "zero-length"],
)
def test_a_damaged_state_file_stops_every_command_and_reset_keeps_it(
    tmp_path: Path, damage: bytes, problem: str
) -> None:
    cfg = config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    state = data / "state.sqlite3"
    state.write_bytes(damage)
    for args in (("poll",), ("run",), ("events",)):
        line = one_line_naming(run_cli(*args, "--config", str(cfg)), state, problem)
        assert "--reset-state" in line  # the way out
    assert state.read_bytes() == damage  # never touched without --reset-state
    assert list(data.glob("*.broken-*")) == []

    result = run_cli("poll", "--reset-state", "--config", str(cfg))
    assert spooled(result)
    assert "aplusk" in result.stdout
    kept = list(data.glob("state.sqlite3.broken-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damage  # beside the new one, unchanged
    with sqlite3.connect(state) as db:  # the new one is in use: it has the poll's count
        assert db.execute("SELECT followers FROM accounts").fetchall() == [(1_000_100,)]
    # A sound file is never reset, even with the option given again.
    again = run_cli("poll", "--reset-state", "--config", str(cfg))
    assert spooled(again)
    assert len(list(data.glob("state.sqlite3.broken-*"))) == 1
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT followers FROM accounts").fetchall() == [(999_990,)]


def test_a_damaged_spool_is_refused_too(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    spool = data / "spool.sqlite3"
    spool.write_bytes(GARBAGE)
    one_line_naming(run_cli("poll", "--config", str(cfg)), spool, "is damaged")
    result = run_cli("poll", "--reset-state", "--config", str(cfg))
    assert spooled(result)
    assert [p.read_bytes() for p in data.glob("spool.sqlite3.broken-*")] == [GARBAGE]


def test_a_state_file_damaged_inside_fails_quick_check(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert spooled(run_cli("poll", "--config", str(cfg)))
    state = tmp_path / "data" / "state.sqlite3"
    with sqlite3.connect(state) as db:
        page = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = state.stat().st_size
    assert size >= 3 * page
    with state.open("r+b") as fh:  # the header stays valid; a table's page is overwritten
        fh.seek(size - page)
        fh.write(GARBAGE[:page])
    one_line_naming(run_cli("poll", "--config", str(cfg)), state, "is damaged")


def test_a_read_only_state_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    data = tmp_path / "data"
    with small_fs(data, "4m"):
        assert spooled(run_cli("poll", "--config", str(cfg)))
        state = data / "state.sqlite3"
        before = state.read_bytes()
        remount_read_only(data)
        assert not os.access(state, os.W_OK)
        for args in (("poll",), ("run",)):
            line = one_line_naming(run_cli(*args, "--config", str(cfg)), state, "read-only")
            assert "writable" in line
        # --reset-state sets aside only a damaged file, never a sound one it cannot write.
        reset = run_cli("poll", "--reset-state", "--config", str(cfg))
        one_line_naming(reset, state, "read-only")
        assert state.read_bytes() == before


def test_a_dry_run_refuses_to_reset_state(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    state = data / "state.sqlite3"
    state.write_bytes(GARBAGE)
    result = run_cli("poll", "--dry-run", "--reset-state", "--config", str(cfg))
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "--dry-run" in lines[0] and "--reset-state" in lines[0]
    assert state.read_bytes() == GARBAGE  # a dry run changes nothing
    assert list(data.glob("*.broken-*")) == []


@pytest.mark.parametrize("folder", ["data?mode=ro", "data#1"])
def test_the_damage_check_opens_the_file_in_a_folder_named_with_uri_characters(
    tmp_path: Path, folder: str
) -> None:
    data = tmp_path / folder
    data.mkdir()
    state = data / "state.sqlite3"
    state.write_bytes(GARBAGE)
    with pytest.raises(StateFileError, match="is damaged"):
        check_db(state)
    state.unlink()
    sqlite3.connect(state).close()
    with sqlite3.connect(state) as db:
        db.execute("CREATE TABLE t (x)")
    check_db(state)  # a sound file in such a folder is sound
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]  # no other file opened
