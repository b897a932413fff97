"""The peer baseline: one HTTP request per account, the way Telegraf's `http` input or a typical
exporter polls, written to InfluxDB through v1 `/write` in batches of 5,000 points.

    python -m bench.peer --api URL --influx URL --database peer --accounts 10000

Bench code, not followerwatch: it knows only the fake API's single-account lookups (YouTube's
is `channels?id=` with one id) and line protocol. Requests run concurrently over keep-alive
connections, as Telegraf gathers its URLs in parallel; batched writes are generous to the peer.
It prints a JSON list, one object per pass: requests, observations, points written, writes,
failures, wall, CPU; the first pass pays the start-up, the second is the steady one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp

from bench.fakes.shapes import MASTODON_ID0, channel_id, plc, split


def urls(api: str, counts: dict[str, int]) -> Iterator[tuple[str, str, str]]:
    """(platform, account, URL) of every account's single lookup."""
    for i in range(counts["x"]):
        yield "x", f"u{i}", f"{api}/2/users/by/username/u{i}?user.fields=public_metrics"
    for i in range(counts["bluesky"]):
        yield "bluesky", plc(i), f"{api}/xrpc/app.bsky.actor.getProfile?actor={plc(i)}"
    for i in range(counts["youtube"]):
        cid = channel_id(i)
        yield "youtube", cid, f"{api}/youtube/v3/channels?part=statistics&id={cid}&key=bench-key"
    for i in range(counts["mastodon"]):
        yield "mastodon", f"u{i}", f"{api}/mastodon/api/v1/accounts/{MASTODON_ID0 + i}"


def followers(platform: str, body: Any) -> int | None:
    """The follower count in one lookup's answer, or None when it holds none."""
    if platform == "x":
        return int(body["data"]["public_metrics"]["followers_count"])
    if platform == "bluesky":
        return int(body["followersCount"])
    if platform == "youtube":
        items = body.get("items") or []
        return int(items[0]["statistics"]["subscriberCount"]) if items else None
    return int(body["followers_count"])


class Peer:
    """Polls every account once, buffering lines and writing each full batch."""

    def __init__(self, session: aiohttp.ClientSession, influx: str, database: str, batch: int):
        self.session = session
        self.write_url = f"{influx}/write"
        self.params = {"db": database, "precision": "s"}
        self.batch = batch
        self.lines: list[str] = []
        self.writing: list[asyncio.Task[None]] = []
        self.stats = dict.fromkeys(("requests", "observations", "failures", "points", "writes"), 0)

    async def poll(self, platform: str, account: str, url: str) -> None:
        """One account's request; its count becomes one line."""
        headers = {"Authorization": "Bearer bench-x-token"} if platform == "x" else {}
        self.stats["requests"] += 1
        try:
            async with self.session.get(url, headers=headers) as resp:
                body = await resp.json() if resp.status == 200 else None
        except (aiohttp.ClientError, ValueError):
            body = None
        count = followers(platform, body) if body is not None else None
        if count is None:
            self.stats["failures"] += 1
            return
        self.stats["observations"] += 1
        self.lines.append(
            f"followers,platform={platform},account={account} value={count}i {int(time.time())}"
        )
        if len(self.lines) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Send the buffered lines as one write, in the background."""
        if self.lines:
            body, self.lines = "\n".join(self.lines).encode(), []
            self.writing.append(asyncio.ensure_future(self._write(body, body.count(b"\n") + 1)))

    async def _write(self, body: bytes, points: int) -> None:
        async with self.session.post(self.write_url, params=self.params, data=body) as resp:
            if resp.status == 204:
                self.stats["points"] += points
                self.stats["writes"] += 1
            else:
                self.stats["failures"] += 1


async def one_pass(session: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, Any]:
    """Poll every account once with `concurrency` requests in flight and write every count."""
    cpu, started = time.process_time(), time.monotonic()
    todo = iter(urls(args.api, split(args.accounts)))
    peer = Peer(session, args.influx, args.database, args.batch)

    async def worker() -> None:
        for item in todo:
            await peer.poll(*item)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    peer.flush()
    await asyncio.gather(*peer.writing)
    return {
        **peer.stats,
        "wall": time.monotonic() - started,
        "cpu": time.process_time() - cpu,
        # CPU since the process began (imports included) and when the pass ended (epoch).
        "cpu_total": time.process_time(),
        "end": time.time(),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """`passes` passes over every account, each starting on a new second (its own points)."""
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    passes = []
    async with aiohttp.ClientSession(connector=connector) as session:
        for k in range(args.passes):
            if k:
                await asyncio.sleep(1.02 - time.time() % 1)
            passes.append(await one_pass(session, args))
    return passes


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, poll once, print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__)
    parser.add_argument("--api", required=True, help="the fake API's base URL")
    parser.add_argument("--influx", required=True, help="influxd's base URL")
    parser.add_argument("--database", default="peer")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=5_000, help="points per /write")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--passes", type=int, default=2, help="the second is the steady one")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
