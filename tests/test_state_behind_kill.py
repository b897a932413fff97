"""SIGKILL with last counts written behind: no alert repeated or missed, the state file sound.

Three real processes: one killed right after a re-arm, one killed at random while its
write-behind flushes all the time, and the real `followerwatch run` killed at random mid-cycle.
"""

from __future__ import annotations

import contextlib
import csv
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from behind_child import LINE, PERIOD, REARM, REARMED_AT, T0, count
from followerwatch.state.db import StateDB
from service_proc import replay_positions, wait_for

CHILD = Path(__file__).with_name("behind_child.py")


def child(*args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`followerwatch run`, its (many) alert lines appended to a file, never a full pipe."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "followerwatch", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def firings(path: Path) -> list[tuple[str, datetime]]:
    """Every `dropped below` event stored, (account, reading time), in the order stored."""
    with contextlib.closing(sqlite3.connect(str(path))) as db:
        rows = db.execute(
            "SELECT account, time FROM events WHERE kind = 'dropped_below' ORDER BY seq"
        ).fetchall()
    return [(a, datetime.fromisoformat(t)) for a, t in rows]


def sound(path: Path) -> None:
    """The state file opens as the service opens it (quick_check, a write lock) and closes."""
    StateDB(path).close()


@pytest.mark.parametrize("kill_at", [REARMED_AT, len(REARM) - 1])
def test_sigkill_right_after_a_rearm_fires_the_next_crossing_once(
    tmp_path: Path, kill_at: int
) -> None:
    path = tmp_path / "state.sqlite3"
    proc = child(path, "rearm", kill_at)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    sound(path)
    crossed = T0 + timedelta(minutes=REARM.index(4_000))
    assert firings(path) == [("a0", crossed)]

    state = StateDB(path)
    try:
        seen = state.accounts.last_seen("x", "a0")
    finally:
        state.close()
    # The re-arm is on disk with its count; steady counts after it may be lost, no more.
    assert seen is not None and REARMED_AT <= (seen.time - T0).total_seconds() / 60 <= kill_at

    # The restarted process goes on with new readings, straight below the line: fired only
    # if the re-arm held. The old crossing is not repeated, the new ones fire once each.
    after = [(len(REARM) + i, v) for i, v in enumerate([4_100, 4_050, 9_300, 4_020])]
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "import behind_child as c\n"
        "async def main():\n"
        "    state = c.StateDB(Path(sys.argv[1]))\n"
        "    pipe = c.pipeline(state, c.accounts(1))\n"
        f"    for minute, value in {after!r}:\n"
        "        await pipe.process(c.batch(c.accounts(1), minute, [value]))\n"
        "    state.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        cwd=CHILD.parent,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert firings(path) == [
        ("a0", crossed),
        ("a0", T0 + timedelta(minutes=len(REARM))),
        ("a0", T0 + timedelta(minutes=len(REARM) + 3)),
    ]


def test_sigkill_at_random_during_write_behind_flushes_repeats_and_misses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    accounts, minutes = 150, 40 * PERIOD
    rng = random.Random(2718)
    killed = 0
    for _ in range(12):
        proc = child(path, "run", accounts, minutes)
        assert proc.stdout is not None
        if proc.stdout.readline() != b"polling\n":  # the state file is open: polls begin
            break  # got to the end (nothing to poll) or failed: the final run tells
        time.sleep(rng.uniform(0.05, 0.6))
        if proc.poll() is not None:
            break  # got to the end before the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed += 1
        sound(path)
    proc = child(path, "run", accounts, minutes)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert killed >= 5

    # Every account's crossing of every period fired once, at its first reading below the line.
    expected = sorted(
        (f"a{n}", T0 + timedelta(minutes=m))
        for n in range(accounts)
        for m in range(minutes)
        if count(n, m) < LINE and count(n, m - 1) >= LINE
    )
    assert sorted(firings(path)) == expected
    state = StateDB(path)
    try:
        seen = state.accounts.last_seen_many(("x", f"a{n}") for n in range(accounts))
    finally:
        state.close()
    assert {s.time for s in seen.values()} == {T0 + timedelta(minutes=minutes - 1)}


def test_sigkill_of_the_service_mid_cycle_repeats_and_misses_no_alert(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    accounts, rows = 200, 8 * PERIOD
    replay = tmp_path / "replay.csv"
    with replay.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "platform", "account", "followers"])
        for m in range(rows):
            when = (T0 + timedelta(minutes=m)).isoformat()
            writer.writerows([when, "x", f"a{n}", count(n, m)] for n in range(accounts))
    config = tmp_path / "fw.toml"
    config.write_text(
        f"""
[service]
data_dir = "data"
ops_address = ""
[influxdb]
url = "{influx_db[0]}"
database = "{influx_db[1]}"
[platforms.x]
interval = "0.05s"
replay = {{ file = "{replay}" }}
"""
        + "".join(
            f'[[watch]]\nplatform = "x"\nhandle = "a{n}"\nbelow = {LINE}\n' for n in range(accounts)
        )
    )
    state = tmp_path / "data" / "state.sqlite3"
    log = tmp_path / "run.log"

    def positions() -> dict[str, int]:
        return replay_positions(tmp_path / "data")

    rng = random.Random(31337)
    for _ in range(8):
        proc = run(config, log)
        time.sleep(rng.uniform(1.0, 3.5))  # past start-up, mostly mid-cycle, flushes due at 2 s
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        sound(state)
    final_log = tmp_path / "final.log"
    final = run(config, final_log)
    # Never signalled before it is up (a SIGTERM during start-up is the default action).
    wait_for(lambda: "followerwatch started" in final_log.read_text(), "start-up", 60.0)
    wait_for(lambda: min(positions().values(), default=0) >= rows, "the replay's end", 240.0)
    time.sleep(0.5)
    final.send_signal(signal.SIGTERM)
    assert final.wait(30) == 0, final_log.read_text()[-3000:]
    sound(state)

    # A kill between reading a row and committing it loses that row (the replay's position is
    # saved first), so a crossing may fire on its second reading below: once per period, always.
    fired: dict[tuple[str, int], int] = {}
    for account, when in firings(state):
        minute = int((when - T0).total_seconds() // 60)
        assert count(int(account[1:]), minute) < LINE, (account, minute)
        period = (account, minute // PERIOD)
        fired[period] = fired.get(period, 0) + 1
    periods = {(f"a{n}", p) for n in range(accounts) for p in range(rows // PERIOD)}
    assert fired == dict.fromkeys(periods, 1)
