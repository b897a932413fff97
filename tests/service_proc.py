"""The real `followerwatch` as a child process: start the service, wait on it, stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float = 20.0, every: float = 0.05
) -> float:
    """Poll condition every `every` s until true; the seconds it took, or fail after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def replay_positions(data_dir: Path, platform: str = "x") -> dict[str, int]:
    """How far a replay source has read, per account ({} before its first save)."""
    try:
        path = data_dir / "sources" / platform / "replay-position.json"
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def start_service(config: Path) -> subprocess.Popen[str]:
    """`followerwatch run --config CONFIG`, stdout and stderr in one text pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "followerwatch", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Unbuffered, so a process that is killed still leaves what it logged.
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop_service(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    """SIGTERM, wait for the exit and return the output; the caller checks the exit code."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    return out


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """One `followerwatch ARGS…` command to completion, output captured, 200 columns wide."""
    return subprocess.run(
        [sys.executable, "-m", "followerwatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        # Wide, so rich tables never wrap a value the test looks for.
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
