"""`replicas`: N `followerwatch run` processes sharing one throwaway PostgreSQL (issue 19).

Three figures, measured from outside: how long the replicas take to spread the 64 virtual
shards evenly; the steady cycle over all of them (the second cycle, from its first API request
until InfluxDB holds its n observations: CPU of each replica and of PostgreSQL's server
processes, peak RSS, points per observation); and the handover after one replica is SIGKILLed
(when the others hold all its shards, and when every one of its accounts is stored again). A
dead replica's leases lapse at most a TTL after the kill and the others claim them at their
next tick, a third of the TTL later: the handover is bounded by TTL + TTL/3.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fakes.shapes import split
from bench.harness import (
    FOLLOWERWATCH,
    Fake,
    fresh_db,
    influx_count,
    influx_writes,
    proc_cpu,
    wait_for,
    wait_stored,
    write_config,
)
from bench.replicas_probe import (
    fair,
    holders,
    layout,
    server_cpu,
    server_cpu_since,
    shards_of,
    spans,
    spread,
    stamps_since,
    stored_since,
    vm_hwm_mb,
)
from bench.scenarios import settle
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.demo.postgres import TempPostgres


@dataclass
class Replica:
    """One `followerwatch run` process of the bench."""

    index: int
    proc: subprocess.Popen[bytes]
    started: float
    maxrss_kb: int = 0
    returncode: int | None = None

    @property
    def pid(self) -> int:
        """Its process id (part of its replica id in the lease table)."""
        return self.proc.pid

    def reap(self) -> None:
        """Wait for it to exit; keep its peak RSS and exit code."""
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = self.returncode = os.waitstatus_to_exitcode(status)
        self.maxrss_kb = usage.ru_maxrss


def start(config: Path, index: int) -> Replica:
    """One replica with its own data folder (a pod's emptyDir) and its own log."""
    data = config.parent / f"data-{index}"
    log = (config.parent / f"run-{index}.log").open("wb")
    proc = subprocess.Popen(
        [FOLLOWERWATCH, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=config.parent,
        env={**os.environ, "FOLLOWERWATCH_SERVICE__DATA_DIR": str(data)},
    )
    log.close()
    return Replica(index, proc, time.monotonic())


def replicas(
    influxd: TempInfluxd,
    fake: Fake,
    work: Path,
    n: int,
    interval: int,
    *,
    count: int = 3,
    ttl: float = 15.0,
) -> dict[str, Any]:
    """`count` replicas over n accounts: spread, the steady cycle, the handover after SIGKILL."""
    fresh_db(influxd)
    fake.post("/_bench/reset")
    directory = work / f"replicas-{n}"
    config = write_config(directory, fake, influxd.url, split(n), interval=f"{interval}s")
    # In the system's temporary folder: the server's own user may not enter `work` (0700).
    pg = TempPostgres().start()
    dsn = pg.dsn
    with config.open("a") as fh:
        fh.write(f'[state]\nbackend = "postgresql"\ndsn = "{dsn}"\nlease_ttl = "{ttl}s"\n')
    keys, total = layout(config)
    assert pg.process is not None
    postmaster = pg.process.pid
    running: list[Replica] = []
    try:
        running = [start(config, k) for k in range(count)]
        out = measure(influxd, fake, dsn, postmaster, running, keys, total, n, interval)
    finally:
        for r in running:
            if r.returncode is None:
                r.proc.send_signal(signal.SIGTERM)
        for r in running:
            if r.returncode is None:
                r.reap()
        pg.close()
    return {
        "n": n,
        "replicas": count,
        "interval": interval,
        "ttl": ttl,
        "bound": ttl + ttl / 3,
        **out,
        "maxrss_mb": [r.maxrss_kb / 1024 for r in running],
        "returncodes": [r.returncode for r in running],
    }


def measure(
    influxd: TempInfluxd,
    fake: Fake,
    dsn: str,
    postmaster: int,
    running: list[Replica],
    keys: dict[int, list[tuple[str, str]]],
    total: int,
    n: int,
    interval: int,
) -> dict[str, Any]:
    """The three figures, the replicas running."""
    t0 = min(r.started for r in running)
    even = fair(len(running))

    def spread_ok() -> bool:
        return spread(dsn) == even

    leased_at = wait_for(lambda: bool(holders(dsn)), max(60.0, interval * 0.9), every=0.1)
    spread_at = wait_for(spread_ok, max(60.0, interval * 0.9), every=0.1)
    if spread_at is None:
        raise RuntimeError(f"the shards did not spread as {even}: {spread(dsn)}")
    spread_s = spread_at - t0
    first_done = wait_stored(influxd, lambda: influx_count(influxd, "followers") >= n, interval)
    if first_done is None:
        raise RuntimeError(f"the first cycle was not stored within {interval} s")
    settle(influxd, 0)
    first_request = fake.stats()["first_request"]

    def asked() -> int:
        return sum(fake.stats()["requests"].values())

    # Points go in at second precision: from the next whole second on, a point is the next
    # cycle's.
    time.sleep(1.02 - time.time() % 1)
    since = int(time.time())
    fake.post("/_bench/reset")
    cpu_before = {r.index: proc_cpu(r.pid) for r in running}
    pg_before = server_cpu(postmaster)
    side = {"influxd": influxd.pid, "fake API": fake.proc.pid}
    side_before = {k: proc_cpu(pid) for k, pid in side.items()}
    writes_before = influx_writes(influxd)
    cpu: dict[int, float] = {}
    pg_cpu = 0.0
    side_cpu: dict[str, float] = {}
    writes = (0, 0)

    def snapshot() -> None:
        nonlocal pg_cpu, writes
        cpu.update({r.index: proc_cpu(r.pid) - cpu_before[r.index] for r in running})
        pg_cpu = server_cpu_since(postmaster, pg_before)
        side_cpu.update({k: proc_cpu(pid) - side_before[k] for k, pid in side.items()})
        writes = influx_writes(influxd)

    # Sleep until the second cycle is due, so the bench's own asking costs nothing meanwhile.
    time.sleep(max(0.0, first_request + interval - 0.5 - time.time()))
    wait_for(lambda: asked() >= total, interval, every=0.05)
    second_done = wait_stored(
        influxd,
        lambda: influx_count(influxd, "followers", since=since) >= n,
        interval,
        before_check=snapshot,
    )
    st = fake.stats()
    if second_done is None or st["first_request"] is None:
        raise RuntimeError("the second cycle was not stored")
    end_epoch = time.time() - (time.monotonic() - second_done)
    gained = settle(influxd, since)
    pids = [r.pid for r in running]
    own = spans(stamps_since(influxd, since), keys, holders(dsn), pids)
    ref = int(st["first_request"])
    observations = gained.get("followers", 0)
    steady = {
        "wall": end_epoch - st["first_request"],
        "requests_span": (st["last_request"] or 0) - st["first_request"],
        "requests": sum(st["requests"].values()),
        "expected_requests": total,
        "cpu": [cpu[r.index] for r in running],
        "cpu_total": sum(cpu.values()),
        "cpu_us_per_obs": sum(cpu.values()) / n * 1e6,
        "pg_cpu": pg_cpu,
        "influxd_cpu": side_cpu["influxd"],
        "fake_api_cpu": side_cpu["fake API"],
        "influxd_points_received": writes[0] - writes_before[0],
        "influxd_write_requests": writes[1] - writes_before[1],
        "observations": observations,
        "points": sum(gained.values()),
        "points_per_obs": sum(gained.values()) / max(observations, 1),
        "points_by_measurement": gained,
        "rss_mb": [vm_hwm_mb(r.pid) for r in running],
        # Each replica's own first and last observation stamp, in whole seconds from the one of
        # the cycle's first request:
        # the replicas' beats differ by when each gained its shards.
        "replica_stamps": [None if o is None else (o[0] - ref, o[1] - ref) for o in own],
    }
    return {
        "spread_s": spread_s,
        "first_lease_s": None if leased_at is None else leased_at - t0,
        "spread": even,
        "startup_to_first_cycle_stored": first_done - t0,
        "steady": steady,
        "handover": handover(influxd, dsn, running, keys, interval),
    }


def handover(
    influxd: TempInfluxd,
    dsn: str,
    running: list[Replica],
    keys: dict[int, list[tuple[str, str]]],
    interval: int,
) -> dict[str, Any]:
    """SIGKILL the first replica: when its shards are all held by the others, and when every
    one of its accounts is stored again (its first new observation's timestamp, and when
    InfluxDB was seen to hold them all)."""
    victim = running[0]
    # On a whole second, so that every point stamped from then on is an observation after it.
    time.sleep(1.02 - time.time() % 1)
    lost = shards_of(holders(dsn), victim.pid)
    accounts = {key for s in lost for key in keys.get(s, [])}
    killed_epoch = time.time()
    since = int(killed_epoch)
    killed = time.monotonic()
    victim.proc.send_signal(signal.SIGKILL)
    victim.reap()

    first_taken: float | None = None

    def taken() -> bool:
        nonlocal first_taken
        held = holders(dsn)
        moved = [s in held and f":{victim.pid}:" not in held[s] for s in lost]
        if first_taken is None and any(moved):
            first_taken = time.monotonic()
        return all(moved)

    taken_at = wait_for(taken, interval, every=0.1)
    seen: dict[tuple[str, str], int] = {}

    def stored() -> bool:
        seen.clear()
        seen.update(stored_since(influxd, since))
        return accounts <= seen.keys()

    stored_at = wait_stored(influxd, stored, interval, quiet=1.0)
    firsts = [seen[a] for a in accounts if a in seen]
    return {
        "killed_shards": len(lost),
        "killed_accounts": len(accounts),
        "shards_taken_s": None if taken_at is None else taken_at - killed,
        "first_shard_taken_s": None if first_taken is None else first_taken - killed,
        "stored_again_s": None if stored_at is None else stored_at - killed,
        "last_first_observation_s": max(firsts) - killed_epoch if firsts else None,
        "accounts_stored_again": len(firsts),
        "spread_after": spread(dsn),
    }


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The handover's bound (TTL + TTL/3), as a summary row."""
    taken = r["handover"]["shards_taken_s"]
    return [
        {
            "figure": f"replicas: SIGKILL → its shards held by the others (TTL {r['ttl']:g} s, "
            f"N={r['n']:,})",
            "scenario": "replicas",
            "value": math.inf if taken is None else taken,
            "target": r["bound"],
            "unit": "s",
            "digits": 2,
            "met": taken is not None and taken <= r["bound"],
        }
    ]


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """The scenario's figures, as (name, value) rows."""
    tag = f"replicas {r['n']:,} × {r['replicas']}"
    s, h = r["steady"], r["handover"]

    def each(values: list[float], unit: str, fmt: str = ".2f") -> str:
        return " / ".join(f"{v:{fmt}}" for v in values) + f" {unit}"

    def secs(v: float | None) -> str:
        return "not done" if v is None else f"{v:.2f} s"

    return [
        (f"{tag}: lease TTL (handover bound TTL + TTL/3)", f"{r['ttl']:g} s ({r['bound']:g} s)"),
        (f"{tag}: start → first shard leased", secs(r["first_lease_s"])),
        (f"{tag}: start → shards spread {'/'.join(map(str, r['spread']))}", secs(r["spread_s"])),
        (f"{tag}: start → first cycle stored", secs(r["startup_to_first_cycle_stored"])),
        (f"{tag}: steady cycle, first request → stored", secs(s["wall"])),
        (f"{tag}: steady cycle, first → last API request", secs(s["requests_span"])),
        (
            f"{tag}: steady cycle, each replica's first → last stamp (whole s)",
            " / ".join(
                "none" if o is None else f"{o[0]:+.0f} → {o[1]:+.0f} s" for o in s["replica_stamps"]
            ),
        ),
        (
            f"{tag}: steady cycle requests (Σ per shard)",
            f"{s['requests']} ({s['expected_requests']})",
        ),
        (f"{tag}: steady cycle CPU per replica", each(s["cpu"], "s")),
        (f"{tag}: steady cycle CPU, all replicas", f"{s['cpu_total']:.2f} s"),
        (f"{tag}: steady cycle CPU per observation (Σ)", f"{s['cpu_us_per_obs']:.1f} µs"),
        (f"{tag}: steady cycle PostgreSQL server CPU", f"{s['pg_cpu']:.2f} s"),
        (
            f"{tag}: steady cycle influxd / fake API CPU",
            f"{s['influxd_cpu']:.2f} / {s['fake_api_cpu']:.2f} s",
        ),
        (
            f"{tag}: steady cycle /write requests, points influxd took",
            f"{s['influxd_write_requests']:,}, {s['influxd_points_received']:,}",
        ),
        (
            f"{tag}: steady cycle points / observations",
            f"{s['points']:,} / {s['observations']:,} = {s['points_per_obs']:.3f}",
        ),
        (
            f"{tag}: steady cycle points by measurement",
            ", ".join(f"{k} {v:,}" for k, v in s["points_by_measurement"].items()),
        ),
        (f"{tag}: peak RSS per replica (after the cycle)", each(s["rss_mb"], "MB", ".0f")),
        (f"{tag}: peak RSS per replica (at exit)", each(r["maxrss_mb"], "MB", ".0f")),
        (
            f"{tag}: SIGKILLed replica held",
            f"{h['killed_shards']} shards, {h['killed_accounts']:,} accounts",
        ),
        (f"{tag}: kill → the first of its shards held by another", secs(h["first_shard_taken_s"])),
        (f"{tag}: kill → its shards all held by the others", secs(h["shards_taken_s"])),
        (
            f"{tag}: kill → its accounts all stored again",
            f"{secs(h['stored_again_s'])} ({h['accounts_stored_again']:,} accounts; "
            f"newest first observation at +{h['last_first_observation_s'] or 0:.0f} s)",
        ),
        (f"{tag}: shards after the handover", "/".join(map(str, h["spread_after"]))),
    ]
