"""What the replicas scenario reads: leases in PostgreSQL, its server's CPU, stamps in InfluxDB."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psycopg

from bench.fakes.shapes import LIMITS
from bench.harness import DB, proc_cpu
from followerwatch.config.settings import load_config
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.poll.shard import virtual_shards

SHARDS = 64


def holders(dsn: str) -> dict[int, str]:
    """Each shard under a live lease, and its holder, as PostgreSQL sees it now."""
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT shard, holder FROM leases WHERE holder IS NOT NULL AND expires > now()"
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return {}  # no replica has migrated the database yet
    return {int(shard): str(holder) for shard, holder in rows}


def spread(dsn: str) -> list[int]:
    """How many shards each holder has, smallest first."""
    return sorted(Counter(holders(dsn).values()).values())


def fair(count: int) -> list[int]:
    """The even spread of the shards over `count` replicas, smallest first."""
    base, extra = divmod(SHARDS, count)
    return sorted([base + 1] * extra + [base] * (count - extra))


def shards_of(held: dict[int, str], pid: int) -> set[int]:
    """The shards held by the replica of this process id (its id contains `:<pid>:`)."""
    return {s for s, holder in held.items() if f":{pid}:" in holder}


def server_cpu(postmaster: int) -> dict[int, float]:
    """CPU seconds of PostgreSQL's postmaster and of every process it started, by pid."""
    out = {postmaster: proc_cpu(postmaster)}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                out[int(entry.name)] = proc_cpu(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return out


def server_cpu_since(postmaster: int, before: dict[int, float]) -> float:
    """The server's CPU since `before` (a backend that exited meanwhile is not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in server_cpu(postmaster).items())


def influx_epoch(influxd: TempInfluxd, influxql: str) -> Any:
    """One InfluxQL statement's decoded answer, its times in epoch seconds."""
    params = urllib.parse.urlencode({"db": DB, "epoch": "s"})
    form = urllib.parse.urlencode({"q": influxql}).encode()
    request = urllib.request.Request(f"{influxd.url}/query?{params}", data=form)
    with urllib.request.urlopen(request, timeout=300) as resp:
        return json.loads(resp.read())


def stored_since(influxd: TempInfluxd, since: int) -> dict[tuple[str, str], int]:
    """Each account's first `followers` timestamp (epoch s) at `since` or later."""
    out = influx_epoch(
        influxd,
        f'SELECT first("followers") FROM "followers" WHERE time >= {since}s '
        "GROUP BY platform, account",
    )
    first: dict[tuple[str, str], int] = {}
    for series in out["results"][0].get("series") or []:
        tags = series.get("tags") or {}
        key = (str(tags.get("platform")), str(tags.get("account")))
        first[key] = int(series["values"][0][0])
    return first


def layout(config: Path) -> tuple[dict[int, list[tuple[str, str]]], int]:
    """The watchlist's (platform, account) keys by virtual shard, and the requests of a cycle.

    Each virtual shard is polled in its own batches, so a cycle asks for
    Σ over shards and platforms of ⌈accounts / batch limit⌉.
    """
    accounts = load_config(config).accounts
    by_shard = virtual_shards(accounts, SHARDS)
    keys = {s: [a.key for a in members] for s, members in by_shard.items()}
    requests = 0
    for members in by_shard.values():
        per = Counter(a.platform for a in members)
        requests += sum(math.ceil(k / LIMITS[p]) for p, k in per.items())
    return keys, requests


def vm_hwm_mb(pid: int) -> float:
    """A running process's peak resident set so far, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stamps_since(influxd: TempInfluxd, since: int) -> dict[tuple[str, str], list[int]]:
    """Every `followers` timestamp (epoch s) of each account at `since` or later."""
    out = influx_epoch(
        influxd,
        f'SELECT "followers", "platform", "account" FROM "followers" WHERE time >= {since}s',
    )
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for series in out["results"][0].get("series") or []:
        for t, _, platform, account in series["values"]:
            found[(str(platform), str(account))].append(int(t))
    return found


def spans(
    stamps: dict[tuple[str, str], list[int]],
    keys: dict[int, list[tuple[str, str]]],
    held: dict[int, str],
    pids: list[int],
) -> list[tuple[int, int] | None]:
    """Each replica's first and last observation stamp (epoch s) among the shards it holds."""
    out: list[tuple[int, int] | None] = []
    for pid in pids:
        times = [
            t for s in shards_of(held, pid) for key in keys.get(s, []) for t in stamps.get(key, [])
        ]
        out.append((min(times), max(times)) if times else None)
    return out
