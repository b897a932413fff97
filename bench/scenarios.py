"""The scenarios: each runs followerwatch as its own process and measures it from outside."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.fakes.shapes import LIMITS, PLATFORMS, split
from bench.harness import (
    ROOT,
    Fake,
    Result,
    fresh_db,
    influx_count,
    influx_writes,
    neighbours,
    points_by_measurement,
    proc_cpu,
    proc_rss_mb,
    reap,
    spawn,
    wait_for,
    wait_stored,
    write_config,
)
from followerwatch.demo.influxd import TempInfluxd

PEER_DB = "peer"


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
    by_measurement = points_by_measurement(influxd)
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


def settle(influxd: TempInfluxd, since: int, timeout: float = 600.0) -> dict[str, int]:
    """Points per measurement from epoch second `since`, once two counts 0.5 s apart agree.

    Points that follow the counts (their threshold lines, say) may land just after them.
    """
    last: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = points_by_measurement(influxd, since=since)
        if now == last:
            break
        last = now
        time.sleep(0.5)
    return last


def cycle(
    influxd: TempInfluxd,
    fake: Fake,
    work: Path,
    n: int,
    interval: int,
    *,
    tag: str = "cycle",
    rule: str = "below = 100",
    prepare: Callable[[Path], object] | None = None,
) -> dict[str, Any]:
    """`followerwatch run` over n accounts: the second (steady-state) cycle, measured alone.

    Start-up (imports, loading the watchlist, the first contact with every source) is paid once
    per process; a service pays the cycle every interval. The second cycle runs from its first
    API request until influxd took its last write (and InfluxDB holds its n observations). Its
    CPU (followerwatch's, influxd's, the fake API's) runs from the end of the first cycle until
    then; its points are those InfluxDB holds with the second cycle's timestamps.
    """
    fresh_db(influxd)
    fake.post("/_bench/reset")
    counts = split(n)
    config = write_config(
        work / f"{tag}-{n}", fake, influxd.url, counts, interval=f"{interval}s", rule=rule
    )
    if prepare is not None:
        prepare(config)
    proc, started = spawn(config, "run")
    total = sum(math.ceil(counts[p] / LIMITS[p]) for p in PLATFORMS)

    def asked() -> int:
        return sum(fake.stats()["requests"].values())

    def abort(why: str) -> CycleAborted:
        proc.send_signal(signal.SIGTERM)
        res = reap(proc, started, fake, config)
        return CycleAborted(why, res.maxrss_kb / 1024, time.monotonic() - started)

    # While waiting, ask what is cheap (the fake's counter, influxd's write statistics): a count
    # of InfluxDB's points costs influxd CPU in proportion to the accounts.
    wait_for(lambda: asked() >= total, interval * 0.9, every=0.05)
    first_done = wait_stored(
        influxd, lambda: influx_count(influxd, "followers") >= n, interval * 0.9
    )
    if first_done is None:
        raise abort(f"the first cycle was not stored within {interval * 0.9:.0f} s")
    startup = first_done - started
    settle(influxd, 0)
    # Points go in at second precision: from the next whole second on, a point is the next
    # cycle's.
    time.sleep(1.02 - time.time() % 1)
    since = int(time.time())
    if asked() > total:
        raise abort(f"the second cycle began before the first was stored ({interval} s)")
    pids = {"followerwatch": proc.pid, "influxd": influxd.pid, "fake API": fake.proc.pid}
    before = {k: proc_cpu(pid) for k, pid in pids.items()}
    writes_before = influx_writes(influxd)
    fake.post("/_bench/reset")
    cpu: dict[str, float] = {}
    writes = (0, 0)

    def snapshot() -> None:
        nonlocal writes
        cpu.update({k: proc_cpu(pid) - before[k] for k, pid in pids.items()})
        writes = influx_writes(influxd)

    # The second cycle starts an interval after the first, not before: sleep till then, so
    # that the bench's own asking costs the fake and influxd nothing meanwhile.
    time.sleep(max(0.0, started + interval - 0.5 - time.monotonic()))
    wait_for(lambda: asked() >= total, interval * 2, every=0.05)
    second_done = wait_stored(
        influxd,
        lambda: influx_count(influxd, "followers", since=since) >= n,
        interval,
        before_check=snapshot,
    )
    rss = proc_rss_mb(proc.pid)
    st = fake.stats()
    if second_done is None or st["first_request"] is None:
        raise abort("the second cycle was not stored")
    gained = settle(influxd, since)
    proc.send_signal(signal.SIGTERM)
    res = reap(proc, started, fake, config)
    # fake.first_request is wall-clock epoch; convert the monotonic end to the same clock.
    end_epoch = time.time() - (time.monotonic() - second_done)
    observations = gained.get("followers", 0)
    return {
        "tag": tag,
        "n": n,
        "interval": interval,
        "startup_to_first_cycle_stored": startup,
        "wall": end_epoch - st["first_request"],
        "cpu": cpu["followerwatch"],
        "cpu_us_per_obs": cpu["followerwatch"] / n * 1e6,
        "influxd_cpu": cpu["influxd"],
        "fake_api_cpu": cpu["fake API"],
        "influxd_points_received": writes[0] - writes_before[0],
        "influxd_write_requests": writes[1] - writes_before[1],
        "observations": observations,
        "points": sum(gained.values()),
        "points_by_measurement": gained,
        "points_per_obs": sum(gained.values()) / max(observations, 1),
        "requests": st["requests"],
        "expected_requests": {p: math.ceil(counts[p] / LIMITS[p]) for p in PLATFORMS},
        "rss_mb_after": rss,
        "maxrss_mb": res.maxrss_kb / 1024,
        "returncode": res.returncode,
    }


class CycleAborted(RuntimeError):
    """A `run` whose cycles did not finish in time: why, its peak RSS, how long it ran."""

    def __init__(self, why: str, maxrss_mb: float, ran: float) -> None:
        super().__init__(why)
        self.maxrss_mb = maxrss_mb
        self.ran = ran


def million(influxd: TempInfluxd, fake: Fake, work: Path, n: int, interval: int) -> dict[str, Any]:
    """One process over n (a million) accounts, default config: RSS, start-up, steady cycle.

    A run that does not keep up is a measurement too: its peak RSS, and the figures it did not
    reach in time as infinite (missed), instead of no figures at all.
    """
    try:
        return cycle(influxd, fake, work, n, interval, tag="million")
    except CycleAborted as exc:
        first = "first cycle" in str(exc)
        return {
            "tag": "million",
            "n": n,
            "interval": interval,
            "error": str(exc),
            "ran_s": exc.ran,
            "maxrss_mb": exc.maxrss_mb,
            "startup_to_first_cycle_stored": math.inf if first else exc.ran,
            "wall": math.inf,
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


def peer(influxd: TempInfluxd, fake: Fake, work: Path, n: int, interval: int) -> dict[str, Any]:
    """The peer baseline (bench/peer.py, its own process) beside followerwatch, both at n.

    Two comparisons: the first pass with its start-up beside one whole `followerwatch poll`,
    and the peer's second pass beside followerwatch's steady cycle (`run`, `interval`).
    """
    fresh_db(influxd, PEER_DB)
    fake.post("/_bench/reset")
    others = neighbours(fake, influxd)
    spawned = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.peer",
            *("--api", fake.url, "--influx", influxd.url, "--database", PEER_DB),
            *("--accounts", str(n), "--passes", "2"),
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    printed = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    neighbour_cpu = {k: proc_cpu(pid) - cpu for k, (pid, cpu) in others.items()}
    if proc.returncode != 0:
        raise RuntimeError(f"the peer exited with {proc.returncode}")
    first, steady = json.loads(printed)
    st = fake.stats()
    # Each pass began on a new second, so InfluxDB keeps both passes' points apart.
    stored = influx_count(influxd, "followers", database=PEER_DB)
    theirs = {
        "requests": first["requests"],
        "requests_served": sum(st["requests"].values()),
        "wall": first["end"] - spawned,
        "cpu": first["cpu_total"],
        "cpu_us_per_obs": first["cpu_total"] / max(first["observations"], 1) * 1e6,
        "observations": first["observations"],
        "points_written": first["points"] + steady["points"],
        "stored": stored,
        "failures": first["failures"] + steady["failures"],
        "maxrss_mb": usage.ru_maxrss / 1024,
        "neighbour_cpu": neighbour_cpu,
        "steady": {
            "requests": steady["requests"],
            "wall": steady["wall"],
            "cpu": steady["cpu"],
            "cpu_us_per_obs": steady["cpu"] / max(steady["observations"], 1) * 1e6,
            "observations": steady["observations"],
        },
    }
    ours = scale(influxd, fake, work, n)
    ours["requests_by_platform"] = ours["requests"]
    ours["requests"] = sum(ours["requests"].values())
    steady_run = cycle(influxd, fake, work, n, interval, tag="peer-cycle")
    ours["steady"] = {
        k: steady_run[k] for k in ("wall", "cpu", "cpu_us_per_obs", "observations", "influxd_cpu")
    } | {"requests": sum(steady_run["requests"].values())}

    def ratio(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        keys = ("requests", "wall", "cpu_us_per_obs")
        return {k: a[k] / b[k] if b[k] else float("nan") for k in keys}

    return {
        "n": n,
        "peer": theirs,
        "followerwatch": ours,
        "ratio": ratio(theirs, ours),
        "ratio_steady": ratio(theirs["steady"], ours["steady"]),
    }
