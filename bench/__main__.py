"""`python -m bench`: followerwatch against a real influxd and a fake multi-platform API.

Every scenario runs followerwatch as its own process (`followerwatch poll` or `run`) and measures
it from outside: wall time, the child's rusage (CPU, peak RSS), what the fake API served, and
what InfluxDB holds afterwards. `peer` runs a one-request-per-account baseline beside it,
`million` one process over a million accounts, `replicas` (bench/replicas.py) three `run`
processes sharing one PostgreSQL, and `startup` (bench/startup.py) that process's
start-up phase by phase, in-process. The run ends with the issue's targets, measured.
See README "Benchmark".
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench import replicas, startup, unusual
from bench.harness import Fake
from bench.report import print_report, summary
from bench.scenarios import cycle, latency, million, peer, quota, scale
from followerwatch.demo.influxd import TempInfluxd


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the chosen scenarios against one influxd and one fake API; print every figure."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--memory-small", type=int, default=10_000)
    parser.add_argument(
        "--scenarios",
        default="scale,cycle,memory,quota,latency,peer",
        help="also: million (one process over --million-accounts), startup (its start-up "
        "phase by phase, in-process, at --million-accounts), unusual (the steady cycle with the "
        "unusual rule on every account beside it off), replicas (--replicas `run` processes on "
        "one PostgreSQL: shard spread, steady cycle, handover after SIGKILL)",
    )
    parser.add_argument(
        "--cycle-interval", type=int, default=90, help="`run` interval for the cycle scenario"
    )
    parser.add_argument("--replicas", type=int, default=3, help="replicas scenario: processes")
    parser.add_argument(
        "--replica-ttl", type=float, default=15.0, help="replicas scenario: lease TTL (s)"
    )
    parser.add_argument("--million-accounts", type=int, default=1_000_000)
    parser.add_argument(
        "--million-interval", type=int, default=300, help="its `run` interval (the default 5 min)"
    )
    parser.add_argument("--peer-accounts", type=int, default=10_000)
    parser.add_argument(
        "--peer-interval", type=int, default=30, help="followerwatch's `run` interval beside it"
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
                if "replicas" in chosen:
                    out["replicas"] = [
                        replicas.replicas(
                            influxd,
                            fake,
                            work,
                            args.accounts,
                            args.cycle_interval,
                            count=args.replicas,
                            ttl=args.replica_ttl,
                        )
                    ]
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
                if "unusual" in chosen:
                    off = cycle(influxd, fake, work, args.accounts, args.cycle_interval)
                    on = cycle(
                        influxd,
                        fake,
                        work,
                        args.accounts,
                        args.cycle_interval,
                        tag="unusual",
                        rule="below = 100\nunusual = true",
                        prepare=unusual.prepare,
                    )
                    kept = work / f"unusual-{args.accounts}" / "followerwatch.toml"
                    out["unusual"] = unusual.compare(off, on, unusual.judged(kept))
                if "peer" in chosen:
                    out["peer"] = peer(influxd, fake, work, args.peer_accounts, args.peer_interval)
                if "startup" in chosen:
                    out["startup"] = startup.run(args.million_accounts, False, work)
                if "million" in chosen:
                    out["million"] = [
                        million(influxd, fake, work, args.million_accounts, args.million_interval)
                    ]
        finally:
            fake.stop()
    out["summary"] = summary(out, args.accounts)
    print_report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
