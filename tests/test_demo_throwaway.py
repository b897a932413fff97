"""`followerwatch demo` with no options: influxd from PATH, always stopped, its folder removed."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from followerwatch.demo.influxd import TempInfluxd

STARTED = re.compile(
    r"Started a throwaway influxd at http://127\.0\.0\.1:\d+ "
    r"\(pid (\d+), data in (\S+), removed at the end\)"
)


def demo_env(tmp: Path, path: str | None = None) -> dict[str, str]:
    """The environment of a demo run: temp folders under `tmp`, wide lines, unbuffered output."""
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}
    if path is not None:
        env["PATH"] = path
    return env


def demo_run(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the demo to its end and capture what it said."""
    return subprocess.run(
        [sys.executable, "-m", "followerwatch", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def demo(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "followerwatch", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


class Lines:
    """The demo's stdout, line by line as it comes, so a test can wait for a moment of the run."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, text: str, timeout: float = 60) -> str:
        """Wait for the first line holding `text` and return it."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, f"{text!r} never came:\n{''.join(self.seen)}"
            self.seen.append(line)
            if text in line:
                return line

    def rest(self) -> str:
        """Everything printed (call after the process ended)."""
        while (line := self._queue.get(timeout=10)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


class Reaper:
    """What a failing test would leave running: killed at teardown (influxd only if still ours)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.influxds: list[tuple[int, Path]] = []

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid, folder in self.influxds:
            with suppress(OSError):
                if alive(pid) and str(folder) in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    """Kills at teardown what the test started and left running."""
    reaper = Reaper()
    yield reaper
    reaper.close()


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has exited: only its parent has not collected it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def influxd_of(demo_pid: int, line: str, reaper: Reaper) -> tuple[int, Path]:
    """The pid and folder the demo names, checked: an influxd it started itself."""
    match = STARTED.search(line)
    assert match, line
    pid, folder = int(match[1]), Path(match[2])
    reaper.influxds.append((pid, folder))
    assert "influxd" in Path(f"/proc/{pid}/cmdline").read_text()
    assert Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(demo_pid)
    assert folder.is_dir()
    return pid, folder


def gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


@contextmanager
def port_held(port: int) -> Iterator[None]:
    """Keep 127.0.0.1:`port` busy (it may be busy already: that is the point)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            pass
        yield


def test_demo_without_options_runs_its_own_influxd_and_stops_it(
    tmp_path: Path, reaper: Reaper
) -> None:
    tmp = tmp_path / "tmp"
    proc = demo("--seconds", "1", env=demo_env(tmp), cwd=tmp_path)
    reaper.procs.append(proc)
    lines = Lines(proc)
    pid, folder = influxd_of(proc.pid, lines.until("Started a throwaway influxd"), reaper)
    assert folder.parent == tmp
    code = proc.wait(timeout=120)
    out = lines.rest()
    assert proc.stderr is not None
    assert code == 0, out + proc.stderr.read()
    assert "@aplusk on x crossed above 1,000,000 followers" in out
    assert "Webhook receiver got 10 alert(s)" in out
    # The unusual drop is flagged once, hours before the million is lost.
    seen = lines.seen
    flags = [i for i, line in enumerate(seen) if "followerwatch flags an unusual drop" in line]
    alerts = [i for i, line in enumerate(seen) if "@aplusk on x is losing" in line]
    [fell] = [i for i, line in enumerate(seen) if "@aplusk on x dropped below" in line]
    assert len(flags) == len(alerts) == 1 and flags[0] < alerts[0] < fell
    # No Grafana URL for an influxd that is gone by the time anyone reads it.
    assert "See it in Grafana" not in out and "again with --keep-running" in out
    assert not alive(pid)
    assert list(tmp.iterdir()) == []  # its folder, and the demo's data folder, removed


def test_demo_without_influxd_on_path_says_how_to_get_one(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    for path in (str(empty), str(Path(sys.executable).parent)):
        result = demo_run(env=demo_env(tmp_path / "tmp", path), cwd=tmp_path)
        # Exit 1, as for an InfluxDB that is unreachable: the command line was right (2 is for
        # bad arguments and config), the machine lacks something.
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            "followerwatch: influxd not found on PATH: install Debian's influxdb package "
            "(apt-get install influxdb), or pass --influx-url URL"
        ]


def test_demo_runs_without_an_ops_error_when_9108_is_busy(
    influxd: TempInfluxd, tmp_path: Path
) -> None:
    args = ["--influx-url", influxd.url, "--seconds", "1"]
    with port_held(9108):
        result = demo_run(*args, env=demo_env(tmp_path / "tmp"), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "crossed above 1,000,000 followers" in result.stdout
    assert "ops endpoint" not in result.stdout + result.stderr
    assert "9108" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "moment", "sig", "again", "code"),
    [
        (["--seconds", "30"], "▶ 14 Apr 2009", signal.SIGINT, None, 130),
        (["--seconds", "30"], "▶ 14 Apr 2009", signal.SIGTERM, None, 130),
        # The impatient user: a second Ctrl-C as the service stops and the demo unwinds.
        (["--seconds", "30"], "▶ 14 Apr 2009", signal.SIGINT, "followerwatch stopped", 130),
        # After the replay: the service's own signal handling is over by then.
        (["--seconds", "1", "--keep-running"], "influxd stays up", signal.SIGTERM, None, 0),
    ],
    ids=["ctrl-c-in-replay", "sigterm-in-replay", "ctrl-c-twice", "sigterm-kept-running"],
)
def test_a_stopped_demo_stops_its_influxd_and_removes_its_folder(
    tmp_path: Path,
    reaper: Reaper,
    args: list[str],
    moment: str,
    sig: signal.Signals,
    again: str | None,
    code: int,
) -> None:
    tmp = tmp_path / "tmp"
    proc = demo(*args, env=demo_env(tmp), cwd=tmp_path)
    reaper.procs.append(proc)
    lines = Lines(proc)
    pid, _ = influxd_of(proc.pid, lines.until("Started a throwaway influxd"), reaper)
    lines.until(moment)
    proc.send_signal(sig)
    if again is not None:
        lines.until(again)
        proc.send_signal(sig)
    assert proc.wait(timeout=60) == code
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "Traceback" not in err + lines.rest()
    assert err.splitlines() == ([] if code == 0 else ["followerwatch: demo interrupted"])
    assert not alive(pid)
    assert list(tmp.iterdir()) == []


def test_a_failing_demo_stops_its_influxd_and_removes_its_folder(
    tmp_path: Path, reaper: Reaper
) -> None:
    tmp = tmp_path / "tmp"
    proc = demo("--seconds", "3", env=demo_env(tmp), cwd=tmp_path)
    reaper.procs.append(proc)
    lines = Lines(proc)
    pid, _ = influxd_of(proc.pid, lines.until("Started a throwaway influxd"), reaper)
    lines.until("▶ 14 Apr 2009")
    os.kill(pid, signal.SIGKILL)  # influxd dies under the demo
    assert proc.wait(timeout=120) == 1
    assert proc.stderr is not None
    err = proc.stderr.read().splitlines()
    assert len(err) == 1 and err[0].startswith("followerwatch: demo failed: "), err
    assert list(tmp.iterdir()) == []


def test_an_influxd_that_cannot_start_is_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "influxd"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'run: open server: listen tcp: bind refused' >&2\nexit 1\n")
    fake.chmod(0o755)
    tmp = tmp_path / "tmp"
    proc = demo(env=demo_env(tmp, f"{fake.parent}:{os.environ['PATH']}"), cwd=tmp_path)
    assert proc.wait(timeout=60) == 1
    assert proc.stderr is not None
    assert proc.stderr.read().splitlines() == [
        "followerwatch: cannot start influxd: influxd exited with status 1 during startup"
        " (run: open server: listen tcp: bind refused)"
    ]
    assert list(tmp.iterdir()) == []


def test_a_killed_demo_takes_its_influxd_along(tmp_path: Path, reaper: Reaper) -> None:
    proc = demo("--seconds", "30", env=demo_env(tmp_path / "tmp"), cwd=tmp_path)
    reaper.procs.append(proc)
    lines = Lines(proc)
    pid, _ = influxd_of(proc.pid, lines.until("Started a throwaway influxd"), reaper)
    proc.kill()  # nothing of ours runs after SIGKILL: Linux's parent-death signal stops influxd
    proc.wait(timeout=30)
    assert gone(pid)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--influx-url", ""], "--influx-url: must be an http:// or https:// URL"),
        (["--influx-url", "http://[::1"], "--influx-url: not a valid URL"),
        (["--influx-url", "http://me:s3cret@127.0.0.1:1"], "--influx-url: must not contain"),
        (["--influx-url", "http://127.0.0.1:1", "--seconds", "nan"], "--seconds must be"),
        (["--influx-url", "http://127.0.0.1:1", "--seconds", "-inf"], "--seconds must be"),
        (["--influx-url", "http://127.0.0.1:1", "--seconds", "0"], "--seconds must be"),
        (["--spawn-influxd", "a-file"], "--spawn-influxd a-file: File exists"),
        (["--spawn-influxd", "d", "--influx-url", "http://127.0.0.1:1"], "not both"),
    ],
)
def test_bad_demo_options_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], line: str
) -> None:
    (tmp_path / "a-file").write_text("")
    result = demo_run(*args, env=demo_env(tmp_path / "tmp"), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    [error] = result.stderr.splitlines()
    assert error.startswith("followerwatch: ") and line in error, error
    assert "s3cret" not in result.stdout + result.stderr
    assert list((tmp_path / "tmp").iterdir()) == []
