"""The bench's plumbing: the fake API process, configs, spawning and measuring followerwatch."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fakes.shapes import MASTODON_ID0, channel_id, plc
from followerwatch.demo.influxd import TempInfluxd, free_port

ROOT = Path(__file__).resolve().parent.parent
FOLLOWERWATCH = str(Path(sys.executable).with_name("followerwatch"))
DB = "bench"


@dataclass
class Result:
    """What one followerwatch process did, measured from outside."""

    wall: float
    cpu: float
    maxrss_kb: int
    returncode: int
    stats: dict[str, Any]
    spool: dict[str, int] = field(default_factory=dict)


class Fake:
    """The fake API server process."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.fakes.api",
                "--port",
                str(self.port),
                "--latency-ms",
                str(latency_ms),
            ],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("fake API did not start")

    def post(self, path: str) -> None:
        req = urllib.request.Request(self.url + path, data=b"", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_bench/stats", timeout=30) as resp:
            out: dict[str, Any] = json.loads(resp.read())
            return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def watch_lines(platform: str, i: int, rule: str) -> str:
    if platform == "x":
        entry = f'handle = "u{i}"'
    elif platform == "bluesky":
        entry = f'handle = "u{i}.bsky.social"\nid = "{plc(i)}"'
    elif platform == "youtube":
        entry = f'handle = "{channel_id(i)}"'
    else:
        entry = f'handle = "u{i}@bench.social"\nid = "{MASTODON_ID0 + i}"'
    return f'[[watch]]\nplatform = "{platform}"\n{entry}\n{rule}\n'


def write_config(
    directory: Path,
    fake: Fake,
    influx_url: str,
    counts: dict[str, int],
    *,
    interval: str = "5m",
    rule: str = "below = 100",
    webhook: bool = False,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fw = fake.url
    cfg = f"""
watchlist = "watchlist.toml"
[service]
data_dir = "data"
log_level = "warning"
log_format = "json"
ops_address = ""
shutdown_timeout = "20s"
[influxdb]
url = "{influx_url}"
database = "{DB}"
[platforms.x]
bearer_token = "bench-x-token"
base_url = "{fw}"
interval = "{interval}"
jitter = 0
[platforms.bluesky]
base_url = "{fw}"
interval = "{interval}"
jitter = 0
[platforms.youtube]
api_key = "bench-key"
base_url = "{fw}"
daily_quota = 100_000_000
interval = "{interval}"
jitter = 0
[platforms.mastodon]
instance_urls = {{ "bench.social" = "{fw}/mastodon" }}
interval = "{interval}"
jitter = 0
"""
    cfg += f'[[notifiers]]\ntype = "webhook"\nurl = "{fw}/hook"\n' if webhook else ""
    (directory / "followerwatch.toml").write_text(cfg)
    with (directory / "watchlist.toml").open("w") as fh:
        for platform, n in counts.items():
            for i in range(n):
                fh.write(watch_lines(platform, i, rule))
    return directory / "followerwatch.toml"


def spawn(config: Path, command: str) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    log = (config.parent / f"{command}.log").open("wb")
    # BENCH_PROFILE=1: the child runs under cProfile, its stats in <scenario>/<command>.prof.
    prof = ["-m", "cProfile", "-o", str(config.parent / f"{command}.prof")]
    head = [sys.executable, *prof, "-m", "followerwatch"]
    proc = subprocess.Popen(
        [
            *(head if os.environ.get("BENCH_PROFILE") else [FOLLOWERWATCH]),
            command,
            "--config",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=config.parent,
    )
    return proc, started


def reap(proc: subprocess.Popen[bytes], started: float, fake: Fake, config: Path) -> Result:
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    spool = config.parent / "data" / "spool.sqlite3"
    counts: dict[str, int] = {}
    if spool.exists():
        with sqlite3.connect(spool) as db:
            counts = dict(db.execute("SELECT name, value FROM counters").fetchall())
    return Result(
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss,
        proc.returncode,
        fake.stats(),
        counts,
    )


def query(influxd: TempInfluxd, influxql: str, database: str = DB) -> Any:
    """One InfluxQL statement's decoded answer; a count over a million series takes seconds."""
    url = f"{influxd.url}/query?{urllib.parse.urlencode({'db': database})}"
    form = urllib.parse.urlencode({"q": influxql}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=form), timeout=300) as resp:
        return json.loads(resp.read())


def influx_count(
    influxd: TempInfluxd, measurement: str, database: str = DB, since: int | None = None
) -> int:
    """Points of one measurement (its largest field count), optionally from epoch second `since`."""
    where = f" WHERE time >= {since}s" if since is not None else ""
    out = query(influxd, f'SELECT count(*) FROM "{measurement}"{where}', database)
    series = out["results"][0].get("series") or []
    if not series:
        return 0
    return max(int(v) for v in series[0]["values"][0][1:] if v is not None)


def fresh_db(influxd: TempInfluxd, database: str = DB) -> None:
    influxd.query(f"DROP DATABASE {database}")
    influxd.query(f"CREATE DATABASE {database}")


def measurements(influxd: TempInfluxd, database: str = DB) -> list[str]:
    """Every measurement the database holds."""
    shown = query(influxd, "SHOW MEASUREMENTS", database)
    return [v[0] for s in shown["results"][0].get("series") or [] for v in s["values"]]


def points_by_measurement(
    influxd: TempInfluxd, database: str = DB, since: int | None = None
) -> dict[str, int]:
    """Points per measurement (the largest field count), those at epoch second `since` or later."""
    return {
        m: influx_count(influxd, m, database=database, since=since)
        for m in measurements(influxd, database)
    }


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    """Current resident set of a running process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def neighbours(fake: Fake, influxd: TempInfluxd) -> dict[str, tuple[int, float]]:
    """The fake API's and influxd's pids and CPU so far: they share the machine's cores."""
    pids = {"fake API": fake.proc.pid}
    pids["influxd"] = influxd.pid
    return {name: (pid, proc_cpu(pid)) for name, pid in pids.items()}


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.25) -> float | None:
    """Poll `check()` until true; the monotonic time it first was, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(every)
    return None


def influx_writes(influxd: TempInfluxd) -> tuple[int, int]:
    """(points written OK, /write requests) so far, from influxd's own counters.

    Cheap to ask (half a millisecond of influxd CPU), unlike a count, which walks every series:
    about 80 ms at 20,000 accounts even over an empty time range.
    """
    with urllib.request.urlopen(f"{influxd.url}/debug/vars", timeout=30) as resp:
        found: dict[str, Any] = json.loads(resp.read())
    for value in found.values():
        if isinstance(value, dict) and value.get("name") == "httpd":
            return int(value["values"]["pointsWrittenOK"]), int(value["values"]["writeReq"])
    raise RuntimeError("influxd reported no httpd statistics")


def wait_stored(
    influxd: TempInfluxd,
    stored: Callable[[], bool],
    timeout: float,
    *,
    quiet: float = 1.5,
    before_check: Callable[[], None] = lambda: None,
) -> float | None:
    """When influxd took the last write before `quiet` seconds without one, and `stored()` held.

    The monotonic time of that last write, or None on timeout. `stored()` (a count, costly to
    influxd) is asked only once the writes have paused; `before_check` runs just before it.
    """
    deadline = time.monotonic() + timeout
    last, changed = influx_writes(influxd), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = influx_writes(influxd)
        if now != last:
            last, changed = now, time.monotonic()
        elif time.monotonic() - changed >= quiet:
            before_check()
            if stored():
                return changed
            changed = time.monotonic()
    return None
