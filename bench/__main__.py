"""`python -m bench`: followerwatch against a real influxd and a fake multi-platform API.

Every scenario runs followerwatch as its own process (`followerwatch poll` or `run`) and measures
it from outside: wall time, the child's rusage (CPU, peak RSS), what the fake API served, and
what InfluxDB holds afterwards. See README "Benchmark".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fakes.api import LIMITS, MASTODON_ID0, channel_id, plc
from followerwatch.demo.influxd import TempInfluxd, free_port

ROOT = Path(__file__).resolve().parent.parent
FOLLOWERWATCH = str(Path(sys.executable).with_name("followerwatch"))
PLATFORMS = ("x", "bluesky", "youtube", "mastodon")
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


def split(n: int) -> dict[str, int]:
    """N accounts spread evenly over the four platforms."""
    base, extra = divmod(n, len(PLATFORMS))
    return {p: base + (1 if k < extra else 0) for k, p in enumerate(PLATFORMS)}


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
        import sqlite3

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


def influx_count(influxd: TempInfluxd, measurement: str) -> int:
    out: Any = influxd.query(f'SELECT count(*) FROM "{measurement}"', database=DB)
    series = out["results"][0].get("series") or []
    if not series:
        return 0
    return max(int(v) for v in series[0]["values"][0][1:] if v is not None)


def fresh_db(influxd: TempInfluxd) -> None:
    influxd.query(f"DROP DATABASE {DB}")
    influxd.query(f"CREATE DATABASE {DB}")


def scale(influxd: TempInfluxd, fake: Fake, work: Path, n: int) -> dict[str, Any]:
    """One `followerwatch poll` over n accounts; everything measured."""
    fresh_db(influxd)
    fake.post("/_bench/reset")
    counts = split(n)
    config = write_config(work / f"scale-{n}", fake, influxd.url, counts)
    others = neighbours(fake, influxd)
    proc, started = spawn(config, "poll")
    res = reap(proc, started, fake, config)
    neighbour_cpu = {k: proc_cpu(pid) - cpu for k, (pid, cpu) in others.items()}
    st = res.stats
    shown: Any = influxd.query("SHOW MEASUREMENTS", database=DB)
    names = [v[0] for s in shown["results"][0].get("series") or [] for v in s["values"]]
    by_measurement = {m: influx_count(influxd, m) for m in names}
    observations = by_measurement.get("followers", 0)
    expected = {p: math.ceil(counts[p] / LIMITS[p]) for p in PLATFORMS}
    cycle = (st["last_request"] or 0) - (st["first_request"] or 0)
    return {
        "n": n,
        "returncode": res.returncode,
        "wall": res.wall,
        "cycle_requests_span": cycle,
        "cpu": res.cpu,
        "cpu_us_per_obs": res.cpu / max(observations, 1) * 1e6,
        "maxrss_mb": res.maxrss_kb / 1024,
        "requests": st["requests"],
        "expected_requests": expected,
        "rejected": st["rejected"],
        "accounts_served": st["accounts"],
        "observations": observations,
        "points_written": res.spool.get("written", 0),
        "points_confirmed": sum(by_measurement.values()),
        "by_measurement": by_measurement,
        "spool": res.spool,
        "neighbour_cpu": neighbour_cpu,
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
    proc = getattr(influxd, "_proc", None)
    if proc is not None:
        pids["influxd"] = proc.pid
    return {name: (pid, proc_cpu(pid)) for name, pid in pids.items()}


def wait_for(check: Any, timeout: float, every: float = 0.25) -> float | None:
    """Poll `check()` until true; the monotonic time it first was, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(every)
    return None


def cycle(influxd: TempInfluxd, fake: Fake, work: Path, n: int, interval: int) -> dict[str, Any]:
    """`followerwatch run` over n accounts: the second (steady-state) cycle, measured alone.

    Start-up (imports, loading the watchlist, the first contact with every source) is paid once
    per process; a service pays the cycle every interval. The second cycle runs from its first
    API request until InfluxDB holds both cycles' observations; its CPU is the process's CPU
    between the end of the first cycle and the end of the second.
    """
    fresh_db(influxd)
    fake.post("/_bench/reset")
    counts = split(n)
    config = write_config(work / f"cycle-{n}", fake, influxd.url, counts, interval=f"{interval}s")
    proc, started = spawn(config, "run")
    total = sum(math.ceil(counts[p] / LIMITS[p]) for p in PLATFORMS)

    def stored(k: int) -> bool:
        return influx_count(influxd, "followers") >= k

    first_done = wait_for(lambda: stored(n), interval * 0.9, every=0.5)
    if first_done is None or sum(fake.stats()["requests"].values()) > total:
        proc.send_signal(signal.SIGTERM)
        reap(proc, started, fake, config)
        raise RuntimeError(f"the first cycle did not finish within {interval * 0.9:.0f} s")
    startup = first_done - started
    cpu_before = proc_cpu(proc.pid)
    fake.post("/_bench/reset")
    second_done = wait_for(lambda: stored(2 * n), interval * 2, every=0.1)
    cpu_after = proc_cpu(proc.pid)
    rss = proc_rss_mb(proc.pid)
    st = fake.stats()
    proc.send_signal(signal.SIGTERM)
    res = reap(proc, started, fake, config)
    if second_done is None or st["first_request"] is None:
        raise RuntimeError("the second cycle did not finish")
    # fake.first_request is wall-clock epoch; convert the monotonic end to the same clock.
    end_epoch = time.time() - (time.monotonic() - second_done)
    wall = end_epoch - st["first_request"]
    cpu = cpu_after - cpu_before
    return {
        "n": n,
        "interval": interval,
        "startup_to_first_cycle_stored": startup,
        "wall": wall,
        "cpu": cpu,
        "cpu_us_per_obs": cpu / n * 1e6,
        "requests": st["requests"],
        "expected_requests": {p: math.ceil(counts[p] / LIMITS[p]) for p in PLATFORMS},
        "rss_mb_after": rss,
        "maxrss_mb": res.maxrss_kb / 1024,
        "returncode": res.returncode,
    }


def run_until(config: Path, fake: Fake, done: Any, timeout: float) -> Result:
    proc, started = spawn(config, "run")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not done(fake.stats()):
        time.sleep(0.25)
    proc.send_signal(signal.SIGTERM)
    return reap(proc, started, fake, config)


def quota(
    influxd: TempInfluxd, fake: Fake, work: Path, window: int, windows: int, batches: int
) -> dict[str, Any]:
    """`followerwatch run` on X only, demand above the ceiling; the fake enforces 300/window."""
    fresh_db(influxd)
    fake.post(f"/_bench/reset?x_limit=300&x_window={window}")
    config = write_config(work / "quota", fake, influxd.url, {"x": batches * 100}, interval="1s")
    res = run_until(config, fake, lambda s: len(s["windows"]) > windows, window * (windows + 2))
    full = res.stats["windows"][:windows]
    served = sum(int(w[2]) for w in full)
    span = (
        res.stats["windows"][windows][0] if len(res.stats["windows"]) > windows else time.time()
    ) - full[0][0]
    ceiling = 300 / window
    return {
        "window_s": window,
        "windows": len(full),
        "served": served,
        "rate": served / span,
        "ceiling": ceiling,
        "fraction": served / span / ceiling,
        "per_window": [int(w[2]) for w in full],
        "429s": res.stats["x_429"],
        "demand": batches,
    }


def latency(influxd: TempInfluxd, fake: Fake, work: Path, crossings: int) -> dict[str, Any]:
    """`followerwatch run` over X accounts with an `above` line; the fake then lifts every count."""
    fresh_db(influxd)
    fake.post("/_bench/reset")
    batches = math.ceil(crossings / 100)
    config = write_config(
        work / "latency",
        fake,
        influxd.url,
        {"x": crossings},
        interval="2s",
        rule="above = 500_000",
        webhook=True,
    )
    proc, started = spawn(config, "run")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and fake.stats()["requests"]["x"] < batches:
        time.sleep(0.1)
    time.sleep(0.5)
    fake.post("/_bench/phase?n=1")
    while time.monotonic() < deadline and len(fake.stats()["hooks"]) < crossings:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    res = reap(proc, started, fake, config)
    sent, hooks = res.stats["crossed_sent"], res.stats["hooks"]
    lat = sorted(
        hooks[f"x:u{k}"] - sent[f"x:{k}"]
        for k in range(crossings)
        if f"x:u{k}" in hooks and f"x:{k}" in sent
    )

    def pick(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {
        "crossings": crossings,
        "delivered": len(lat),
        "p50": pick(0.5),
        "p99": pick(0.99),
        "max": lat[-1] if lat else float("nan"),
        "webhooks": res.stats["hook_count"],
    }


def print_table(out: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    for s in out.get("scale", []):
        tag = f"scale {s['n']:,}"
        rows += [
            (f"{tag}: wall, whole `poll` process", f"{s['wall']:.2f} s"),
            (f"{tag}: first→last API request", f"{s['cycle_requests_span']:.2f} s"),
            (f"{tag}: CPU user+sys", f"{s['cpu']:.2f} s"),
            (f"{tag}: CPU per observation", f"{s['cpu_us_per_obs']:.0f} µs"),
            (f"{tag}: peak RSS", f"{s['maxrss_mb']:.0f} MB"),
            (
                f"{tag}: CPU of the fake API / influxd meanwhile",
                " / ".join(f"{v:.2f} s" for v in s["neighbour_cpu"].values()),
            ),
        ]
        for p in PLATFORMS:
            rows.append(
                (
                    f"{tag}: requests {p} (⌈N/{LIMITS[p]}⌉)",
                    f"{s['requests'][p]} ({s['expected_requests'][p]})",
                )
            )
        rows += [
            (f"{tag}: observations in InfluxDB", f"{s['observations']:,}"),
            (
                f"{tag}: points written / confirmed",
                f"{s['points_written']:,} / {s['points_confirmed']:,}",
            ),
        ]
    mem = out.get("memory")
    if mem:
        rows.append(
            (
                "memory: RSS at " + " / ".join(f"{k:,}" for k in mem["n"]),
                " / ".join(f"{v:.0f} MB" for v in mem["rss_mb"]),
            )
        )
        rows.append(("memory: bytes per account", f"{mem['bytes_per_account']:,.0f}"))
    q = out.get("quota")
    if q:
        rows += [
            (
                f"quota: X 300/{q['window_s']} s, sustained",
                f"{q['rate']:.2f}/s of {q['ceiling']:.2f}/s = {q['fraction']:.1%}",
            ),
            ("quota: 200s per window", ", ".join(map(str, q["per_window"]))),
            ("quota: 429s received", str(q["429s"])),
        ]
    for c in out.get("cycle", []):
        tag = f"cycle {c['n']:,}"
        rows += [
            (
                f"{tag}: start-up → first cycle stored",
                f"{c['startup_to_first_cycle_stored']:.2f} s",
            ),
            (f"{tag}: steady cycle, first request → stored", f"{c['wall']:.2f} s"),
            (f"{tag}: steady cycle CPU user+sys", f"{c['cpu']:.2f} s"),
            (f"{tag}: steady cycle CPU per observation", f"{c['cpu_us_per_obs']:.0f} µs"),
            (f"{tag}: RSS after / peak", f"{c['rss_mb_after']:.0f} / {c['maxrss_mb']:.0f} MB"),
        ]
        rows += [
            (
                f"{tag}: requests {p} (⌈N/{LIMITS[p]}⌉)",
                f"{c['requests'][p]} ({c['expected_requests'][p]})",
            )
            for p in PLATFORMS
        ]
    lat = out.get("latency")
    if lat:
        rows += [
            (f"alert latency: {lat['delivered']:,}/{lat['crossings']:,} crossings delivered", ""),
            (
                "alert latency: p50 / p99 / max",
                f"{lat['p50'] * 1000:.0f} / {lat['p99'] * 1000:.0f} / {lat['max'] * 1000:.0f} ms",
            ),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'figure'.ljust(width)} | value\n{'-' * width}-|------")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--memory-small", type=int, default=10_000)
    parser.add_argument("--scenarios", default="scale,cycle,memory,quota,latency")
    parser.add_argument(
        "--cycle-interval", type=int, default=90, help="`run` interval for the cycle scenario"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fake API latency")
    parser.add_argument(
        "--quota-window", type=int, default=60, help="X's 900 s, scaled (a 1 s margin: 1.6 %%)"
    )
    parser.add_argument("--quota-windows", type=int, default=3)
    parser.add_argument("--quota-batches", type=int, default=60, help="X batches (×100 accounts)")
    parser.add_argument("--crossings", type=int, default=1_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: temporary)")
    args = parser.parse_args(argv)
    chosen = set(args.scenarios.split(","))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="followerwatch-bench-") as tmp:
        work = args.keep or Path(tmp)
        fake = Fake(args.latency_ms)
        try:
            with TempInfluxd(work / "influxd") as influxd:
                if "memory" in chosen:
                    small = scale(influxd, fake, work, args.memory_small)
                    out["scale"] = [small]
                if chosen & {"scale", "memory"}:
                    out.setdefault("scale", []).append(scale(influxd, fake, work, args.accounts))
                if "cycle" in chosen:
                    out["cycle"] = [cycle(influxd, fake, work, args.accounts, args.cycle_interval)]
                if "memory" in chosen:
                    a, b = out["scale"][0], out["scale"][-1]
                    out["memory"] = {
                        "n": [a["n"], b["n"]],
                        "rss_mb": [a["maxrss_mb"], b["maxrss_mb"]],
                        "bytes_per_account": (b["maxrss_mb"] - a["maxrss_mb"])
                        * 2**20
                        / max(b["n"] - a["n"], 1),
                    }
                if "quota" in chosen:
                    out["quota"] = quota(
                        influxd,
                        fake,
                        work,
                        args.quota_window,
                        args.quota_windows,
                        args.quota_batches,
                    )
                if "latency" in chosen:
                    out["latency"] = latency(influxd, fake, work, args.crossings)
        finally:
            fake.stop()
    print_table(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
