"""Start-up in-process, phase by phase: imports, the config load, the App build, one poll.

    python -m bench.startup --accounts 1000000 [--poll]

Writes the bench's config and watchlist (bench/harness.py) for N mixed accounts, then measures
in a child process, for each phase, its wall time and the process's RSS after it (VmRSS) and
at its peak so far (VmHWM): importing followerwatch, `load_config` (parse, validation, the
accounts and their rules), building the `App` (state and spool opened, rules, threshold lines,
batch groups, sources) and, with --poll, one `poll_once` against the fake API (InfluxDB
unreachable: the points are spooled). A second child then builds the App again on the state
the poll left (a restart's state load). Bytes per account: RSS growth over the imports ÷ N.
The bench's `startup` scenario runs this at --million-accounts without --poll.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from bench.fakes.shapes import split
from bench.harness import ROOT, Fake, write_config

UNREACHABLE = "http://127.0.0.1:1"


def _memory() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process, in MB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            found[line[:5]] = int(line.split()[1]) / 1024
    return found["VmRSS"], found["VmHWM"]


def child(config: Path, poll: bool) -> dict[str, Any]:
    """The phases, measured in this process (run as `python -m bench.startup --child`)."""
    phases: list[dict[str, Any]] = []

    def mark(name: str, started: float, cpu: float) -> None:
        rss, peak = _memory()
        wall, used = time.perf_counter() - started, time.process_time() - cpu
        phases.append({"phase": name, "s": wall, "cpu_s": used, "rss_mb": rss, "peak_mb": peak})

    started, cpu = time.perf_counter(), time.process_time()
    import followerwatch.cli.main  # noqa: F401 - what `followerwatch run` imports
    from followerwatch.config.settings import load_config
    from followerwatch.service.app import App

    mark("import", started, cpu)
    started, cpu = time.perf_counter(), time.process_time()
    cfg = load_config(config)
    mark("load_config", started, cpu)
    started, cpu = time.perf_counter(), time.process_time()
    app = App(cfg)
    mark("App build", started, cpu)

    async def one_poll() -> None:
        async with app:
            started, cpu = time.perf_counter(), time.process_time()
            await app.poll_once()
            mark("first poll", started, cpu)

    if poll:
        asyncio.run(one_poll())
    return {"n": len(cfg.accounts), "phases": phases}


def measure(config: Path, poll: bool) -> dict[str, Any]:
    """One child's phases, with the bytes per account each phase left in RSS."""
    args = [sys.executable, "-m", "bench.startup", "--child", str(config)]
    printed = subprocess.run(
        [*args, *(["--poll"] if poll else [])],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    out: dict[str, Any] = json.loads(printed.splitlines()[-1])
    base = out["phases"][0]["rss_mb"]
    for phase in out["phases"][1:]:
        phase["bytes_per_account"] = (phase["rss_mb"] - base) * 2**20 / max(out["n"], 1)
    return out


def run(n: int, poll: bool, work: Path) -> dict[str, Any]:
    """Fresh start-up (and with `poll`, a restart on the state one poll left) over n accounts."""
    fake = Fake() if poll else None
    try:
        url = fake.url if fake is not None else UNREACHABLE
        api = cast(Fake, SimpleNamespace(url=url))  # write_config reads only its url
        config = write_config(work / f"startup-{n}", api, UNREACHABLE, split(n))
        result = {"n": n, "fresh": measure(config, poll)}
        if poll:
            result["restart"] = measure(config, poll=False)
        return result
    finally:
        if fake is not None:
            fake.stop()


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Each phase as (name, value) rows for the bench's table."""
    out = []
    for run_name in ("fresh", "restart"):
        if run_name not in result:
            continue
        for p in result[run_name]["phases"]:
            per = p.get("bytes_per_account")
            out.append(
                (
                    f"start-up {result['n']:,} ({run_name}): {p['phase']}",
                    f"{p['s']:.2f} s, RSS {p['rss_mb']:.0f} MB (peak {p['peak_mb']:.0f} MB)"
                    + (f", {per:,.0f} B/account" if per is not None else ""),
                )
            )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments; print the phases as a table (and as JSON with --json)."""
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--poll", action="store_true", help="also one poll, then a restart")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        result = child(args.child, args.poll)
        print(json.dumps(result))
        return result
    with tempfile.TemporaryDirectory(prefix="fw-bench-startup-") as tmp:
        result = run(args.accounts, args.poll, Path(tmp))
    from bench.report import print_rows

    print_rows("figure", rows(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
