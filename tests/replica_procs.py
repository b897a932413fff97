"""Replicas of the real `followerwatch run` on one PostgreSQL state, polling one fake X."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fakes.fake_x import TOKEN, FakeX, Seen, make_user
from followerwatch.poll.shard import owner


def write_config(
    path: Path,
    fake: FakeX,
    influx: tuple[str, str],
    dsn: str,
    users: int,
    *,
    ttl: str = "3s",
    extra: str = "",
) -> list[str]:
    """A replica config: `users` X accounts polled every second; their usernames."""
    names = [make_user(i)["username"] for i in range(users)]
    fake.add(*(make_user(i) for i in range(users)))
    path.write_text(
        f"""
[service]
log_format = "json"
ops_address = ""
shutdown_timeout = "5s"
[state]
backend = "postgresql"
dsn = "{dsn}"
lease_ttl = "{ttl}"
[influxdb]
url = "{influx[0]}"
database = "{influx[1]}"
[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "1s"
batch_size = 100
{extra}
"""
        + "".join(f'[[watch]]\nplatform = "x"\nhandle = "{n}"\n' for n in names)
    )
    return [n.lower() for n in names]


def start_replica(config: Path, data: Path) -> subprocess.Popen[str]:
    """One `followerwatch run`, with its own data folder (a pod's emptyDir)."""
    return subprocess.Popen(
        [sys.executable, "-m", "followerwatch", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "FOLLOWERWATCH_SERVICE__DATA_DIR": str(data),
        },
    )


def stop_all(procs: Iterable[subprocess.Popen[str]], timeout: float = 30.0) -> list[str]:
    """SIGTERM every running replica; their outputs (a killed one's too)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused one must be able to act on SIGTERM
            proc.send_signal(signal.SIGTERM)
    outs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Never left running: it would keep connections to the test's servers open.
            proc.kill()
            out, _ = proc.communicate()
            out += "\n[killed: no exit within the timeout after SIGTERM]"
        outs.append(out)
    return outs


def requested(fake: FakeX, seen: Seen) -> list[str]:
    """The usernames one request asked for."""
    args = seen.args
    if "usernames" in args:
        return [name.lower() for name in args["usernames"].split(",")]
    by_id = {u["id"]: u["username"].lower() for u in fake.users.values()}
    return [by_id[i] for i in args["ids"].split(",")]


def polls(fake: FakeX) -> dict[str, list[datetime]]:
    """When each account was polled, in order."""
    out: dict[str, list[datetime]] = defaultdict(list)
    for seen in list(fake.seen):
        for name in requested(fake, seen):
            out[name].append(seen.time)
    return out


def polls_between(fake: FakeX, start: datetime, end: datetime) -> Counter[str]:
    """How many times each account was polled in [start, end)."""
    return Counter(
        name
        for seen in list(fake.seen)
        if start <= seen.time < end
        for name in requested(fake, seen)
    )


def holders(dsn: str) -> dict[int, str]:
    """Each leased shard's holder, as PostgreSQL sees it now."""
    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute(
                "SELECT shard, holder FROM leases WHERE holder IS NOT NULL AND expires > now()"
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return {}  # no replica has migrated the database yet
    return {int(shard): str(holder) for shard, holder in rows}


def wait_until(condition: object, what: str, timeout: float) -> float:
    """Poll `condition()` every 0.1 s; the seconds it took, or fail."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def shards_of(dsn: str, pid: int) -> set[int]:
    """The shards the replica with this process id holds now."""
    return {s for s, holder in holders(dsn).items() if f":{pid}:" in holder}


def accounts_in(names: Iterable[str], shards: set[int]) -> list[str]:
    """The usernames whose virtual shard (of 64) is one of `shards`."""
    return [n for n in names if owner(f"x\x00{n}", 64) in shards]


class Receiver:
    """A webhook receiver that records every event delivered, and can fail on purpose."""

    def __init__(self) -> None:
        self.server = HTTPServer(host="127.0.0.1", port=0)
        self.server.expect_request("/hook").respond_with_handler(self._handle)
        self.status = 200
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self._lock = threading.Lock()
        self.server.start()

    @property
    def url(self) -> str:
        """Where the webhook posts."""
        return self.server.url_for("/hook")

    def _handle(self, request: Request) -> Response:
        with self._lock:
            if self.status != 200:
                self.refused += 1
                return Response("down", status=self.status)
            self.received.append(json.loads(request.get_data())["event"])
        return Response("ok", status=200)

    def events(self, kind: str) -> Counter[str]:
        """How many times each account's event of `kind` was delivered."""
        with self._lock:
            return Counter(e["account"] for e in self.received if e["kind"] == kind)

    def stop(self) -> None:
        """Stop the server."""
        self.server.clear()
        if self.server.is_running():
            self.server.stop()


def set_followers(fake: FakeX, names: Iterable[str], count: int) -> None:
    """What the fake X answers for these accounts from now on."""
    for name in names:
        fake.users[name]["public_metrics"]["followers_count"] = count


def spread(dsn: str) -> list[int]:
    """How many shards each replica holds, smallest first."""
    return sorted(Counter(holders(dsn).values()).values())


def live_replicas(dsn: str) -> list[str]:
    """The replicas whose row has not expired."""
    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute("SELECT id FROM replicas WHERE expires > now()").fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [str(r[0]) for r in rows]


def longest_gaps(fake: FakeX, start: datetime, end: datetime) -> dict[str, float]:
    """Each account's longest wait between polls in [start, end] (the window's ends count)."""
    out = {}
    for name, times in polls(fake).items():
        inside = [start, *(t for t in times if start < t < end), end]
        out[name] = max((b - a).total_seconds() for a, b in itertools.pairwise(inside))
    return out


def settle(dsn: str, fake: FakeX, names: Iterable[str], spread_: list[int]) -> None:
    """Wait until the shards are spread as given and every account was polled since."""
    wait_until(lambda: spread(dsn) == spread_, f"the shards to spread as {spread_}", timeout=30)
    since = datetime.now(UTC)
    names = list(names)
    wait_until(
        lambda: all(t and t[-1] > since for t in (polls(fake).get(n) for n in names)),
        "every account to be polled by its holder",
        timeout=15,
    )
