"""`followerwatch demo`: an illustrative April 2009 replay through the real pipeline.

While it replays, the demo tells the story: dated narration lines merged, in replay time, with the
alerts its webhook receiver gets. The crossing times in the narration come from the replay's own
rows; the other beats are fixed dates keyed to replay time.
"""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from followerwatch.config import load_config
from followerwatch.durations import format_duration
from followerwatch.influxd import TempInfluxd, free_port
from followerwatch.models import at_handle
from followerwatch.sources.replay import read_replay
from followerwatch.store.influx_v1 import InfluxV1Store

if TYPE_CHECKING:
    from followerwatch.app import App

DATABASE = "followerwatch_demo"
REPLAY = "april2009.csv"
LINE = 1_000_000
# The replay's (illustrative) Unfollow Day, as the campaign report at the end measures it.
UNFOLLOW_START = datetime(2009, 4, 27, tzinfo=UTC)
UNFOLLOW_END = datetime(2009, 4, 28, tzinfo=UTC)
# Oprah's first tweet was on her show of 17 April 2009; only the date is told, this orders it.
OPRAH = datetime(2009, 4, 17, 16, tzinfo=UTC)


def replay_file() -> Path:
    """The packaged replay CSV."""
    return Path(str(resources.files("followerwatch") / "data" / REPLAY))


def demo_settings(
    influx_url: str, data_dir: Path, seconds: float, webhook_url: str
) -> dict[str, Any]:
    """The demo's config, exactly as a user would write it in TOML."""
    rows = read_replay(replay_file(), "x")
    times = [t for series in rows.values() for t, _ in series]
    span = (max(times) - min(times)).total_seconds()
    return {
        "service": {"data_dir": str(data_dir), "log_format": "console"},
        "influxdb": {"url": influx_url, "database": DATABASE, "create_database": True},
        "platforms": {
            "x": {
                "interval": 0.25,
                "replay": {"file": str(replay_file()), "speed": span / max(seconds, 1.0)},
            }
        },
        # The narrator prints what the webhook receiver gets, so alerts show once, in story order.
        "notifiers": [{"type": "webhook", "url": webhook_url}],
        "watch": [
            {
                "platform": "x",
                "handle": "aplusk",
                "below": 1_000_000,
                "above": 1_000_000,
                "hysteresis": 1_000,
                "approaching": "12h",
                "labels": {"story": "unfollow-day"},
                # How many unfollowed: announce losing 15,000 within a day.
                "changes": [{"drop": 15_000, "window": "24h"}],
            },
            {
                "platform": "x",
                "handle": "cnnbrk",
                "below": 1_000_000,
                "above": 1_000_000,
                "hysteresis": 1_000,
                "approaching": "12h",
            },
        ],
    }


@dataclass(frozen=True)
class Beat:
    """One line of the story, told once the replay has reached `time`."""

    time: datetime
    text: str


def crossing(
    series: Sequence[tuple[datetime, int]], line: int, *, up: bool, after: datetime | None = None
) -> datetime | None:
    """The first row after `after` across `line` from the row before it: rising if `up`."""
    for (_, before), (when, count) in pairwise(series):
        if (after is None or when > after) and (
            before < line <= count if up else count < line <= before
        ):
            return when
    return None


def story(rows: Mapping[str, Sequence[tuple[datetime, int]]]) -> list[Beat]:
    """The narration, in replay-time order; when a line is crossed comes from `rows` themselves."""
    start = min(series[0][0] for series in rows.values() if series)
    beats = [
        Beat(
            start,
            f"{start:%d %b %Y} — Ashton Kutcher (@aplusk) challenges CNN (@cnnbrk) to a race to "
            f"{LINE:,} followers on Twitter.",
        ),
        Beat(
            OPRAH,
            f"{OPRAH:%d %b %Y} — Oprah Winfrey sends her first tweet live on her show, with "
            "Kutcher as a guest.",
        ),
        Beat(
            UNFOLLOW_START,
            f"{UNFOLLOW_START:%d %b %Y} — the replay's (illustrative) Unfollow Day: @aplusk's "
            "followers are urged to unfollow him for a day.",
        ),
    ]
    ups = {a: crossing(rows.get(a, ()), LINE, up=True) for a in ("aplusk", "cnnbrk")}
    reached = sorted((t, a) for a, t in ups.items() if t is not None)
    if reached:
        (when, winner), rest = reached[0], ""
        if len(reached) == 2:
            lead = format_duration((reached[1][0] - when).total_seconds())
            rest = f", {lead} ahead of {at_handle(reached[1][1])}"
        text = f"{when:%d %b %Y %H:%M} UTC — {at_handle(winner)} passes {LINE:,} followers{rest}."
        beats.append(Beat(when, text))
    fall = crossing(rows.get("aplusk", ()), LINE, up=False, after=ups["aplusk"])
    if fall is not None:
        peak = max(rows["aplusk"], key=lambda row: row[1])
        text = (
            f"{fall:%d %b %Y %H:%M} UTC — @aplusk falls back below {LINE:,} followers "
            f"(from {peak[1]:,} on {peak[0]:%d %b})."
        )
        beats.append(Beat(fall, text))
    return sorted(beats, key=lambda beat: beat.time)


class Narrator:
    """Prints the story and the alerts the receiver got, merged in replay-time order."""

    def __init__(self, console: Console, beats: Sequence[Beat], received: list[dict[str, Any]]):
        self.console = console
        self.received = received
        # (replay time, 0 for the story so it comes before an alert of the same moment, line)
        self._queue = [(b.time, 0, f"▶ {b.text}") for b in beats]
        self._queued: set[str] = set()  # event ids: a retried delivery can arrive twice

    def tell(self, bound: datetime | None = None, *, strict: bool = False) -> None:
        """Print what happened up to `bound` (before it, if `strict`; everything if None)."""
        for payload in self.received:
            event = payload["event"]
            if event["id"] not in self._queued:
                self._queued.add(event["id"])
                when = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
                self._queue.append((when, 1, f"  alert [{when:%d %b %H:%M}] {event['message']}"))
        self._queue.sort()
        while self._queue and (
            bound is None
            or self._queue[0][0] < bound
            or (not strict and self._queue[0][0] == bound)
        ):
            _, kind, line = self._queue.pop(0)
            self.console.print(Text(line, style="bold cyan" if kind == 0 else ""))


def told_up_to(
    app: App, accounts: Sequence[str], received: set[str]
) -> tuple[datetime, bool] | None:
    """How far in replay time the story can be told: (bound, strict), or None for not yet.

    The state commits counts and their events together, so once every account's last count is
    past a moment, every event before it is stored; those the receiver has not got yet hold the
    story back (strictly before the earliest of them), so nothing is told out of order.
    """
    seen = [app.state.last_seen("x", account) for account in accounts]
    if any(s is None for s in seen):
        return None
    safe = min(s.time for s in seen if s is not None)
    waiting = [e.time for e, _ in app.state.events(1000) if e.id not in received and e.time <= safe]
    return (min(waiting), True) if waiting else (safe, False)


class Receiver:
    """A minimal local webhook receiver so the demo shows real HTTP delivery."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.port = free_port()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = await reader.readexactly(length)
        self.received.append(json.loads(body))
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def start(self) -> asyncio.Server:
        """Listen on 127.0.0.1:port."""
        return await asyncio.start_server(self._handle, "127.0.0.1", self.port)


async def _narrate(app: App, narrator: Narrator, accounts: Sequence[str]) -> None:
    """Tell the story as far as it is safe to, ten times a second, until cancelled."""
    while True:
        received = {str(p["event"]["id"]) for p in narrator.received}
        bound = told_up_to(app, accounts, received)
        if bound is not None:
            narrator.tell(bound[0], strict=bound[1])
        await asyncio.sleep(0.1)


async def _run(settings: dict[str, Any], receiver: Receiver, narrator: Narrator) -> None:
    from followerwatch.app import App
    from followerwatch.service import serve
    from followerwatch.sources.replay import ReplaySource

    config = load_config(None, settings)
    server = await receiver.start()
    try:
        async with App(config) as app:
            source = app.sources["x"]
            assert isinstance(source, ReplaySource)
            accounts = [w["handle"] for w in settings["watch"]]
            teller = asyncio.create_task(_narrate(app, narrator, accounts))
            try:
                await serve(app, until=lambda: source.exhausted, check_every=0.1)
                await app.outbox.drain(timeout=10)
            finally:
                teller.cancel()
                with suppress(asyncio.CancelledError):
                    await teller
            narrator.tell()  # the replay is over: whatever is left, in order
    finally:
        server.close()


async def _reachable(url: str) -> str | None:
    import httpx

    from followerwatch.errors import StoreError

    async with httpx.AsyncClient(timeout=10) as client:
        try:
            await InfluxV1Store(client, url=url, database=DATABASE).create_database()
        except StoreError as exc:
            return str(exc)
    return None


async def _summary(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        store = InfluxV1Store(client, url=url, database=DATABASE)
        points = await store.query(
            "SELECT first(followers), max(followers), last(followers), count(followers)"
            " FROM followers GROUP BY account"
        )
        events = await store.query(
            "SELECT kind, value, threshold FROM followerwatch_events GROUP BY account"
        )
    return points, events


async def _unfollow_day(url: str, chart: Path | None) -> list[str]:
    """The campaign impact report of the replay's (illustrative) Unfollow Day, and its chart."""
    import httpx

    from followerwatch.campaign_config import CampaignConfig
    from followerwatch.campaigns import impact_report
    from followerwatch.impact import load_series

    campaign = CampaignConfig.model_validate(
        {
            "name": "unfollow-day",
            "accounts": ["x/aplusk"],
            "controls": ["x/cnnbrk"],
            "start": UNFOLLOW_START,
            "end": UNFOLLOW_END,
            "goal": {"below": 1_000_000},
            "baseline": "7d",
        }
    )
    async with httpx.AsyncClient(timeout=10) as client:
        store = InfluxV1Store(client, url=url, database=DATABASE)
        reports = await impact_report(store, campaign)
        series = await load_series(
            store,
            "x",
            "aplusk",
            campaign.start - timedelta(days=7),
            campaign.end + timedelta(days=1),
        )
    lines = [line for report in reports for line in report.lines()] or ["no report: no data"]
    if reports and chart is not None:
        from followerwatch.charts import impact_chart

        lines.append(f"chart: {impact_chart(chart, reports[0], series)}")
    return lines


def run_demo(
    console: Console,
    *,
    influx_url: str | None,
    spawn_dir: Path | None,
    seconds: float,
    keep_running: bool,
) -> int:
    """Run the demo end to end; returns the exit code."""
    console.rule("followerwatch demo: April 2009")
    console.print(
        "[bold]The replay numbers are illustrative, not historical records.[/] The shape "
        "follows the story: @aplusk beats @cnnbrk to 1,000,000 followers, then an "
        '"Unfollow Day" drags him back under.'
    )
    with ExitStack() as stack:
        if spawn_dir is not None:
            spawn_dir.mkdir(parents=True, exist_ok=True)
            influxd = stack.enter_context(TempInfluxd(directory=spawn_dir))
            influx_url = influxd.url
            console.print(f"Started a throwaway influxd at {influx_url} (data in {spawn_dir})")
        assert influx_url is not None
        problem = asyncio.run(_reachable(influx_url))
        if problem is not None:
            console.print(f"[red]InfluxDB is not usable:[/] {problem}")
            return 1
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fw-demo-")))
        receiver = Receiver()
        webhook = f"http://127.0.0.1:{receiver.port}/alerts"
        settings = demo_settings(influx_url, data_dir, seconds, webhook)
        narrator = Narrator(console, story(read_replay(replay_file(), "x")), receiver.received)
        console.rule("The replay (story and alerts, in replay time)")
        asyncio.run(_run(settings, receiver, narrator))
        points, events = asyncio.run(_summary(influx_url))
        _print_summary(console, points, events, receiver)
        console.rule("Unfollow Day: what did it cost?")
        chart = (spawn_dir.parent if spawn_dir is not None else Path.cwd()) / "unfollow-day.png"
        for line in asyncio.run(_unfollow_day(influx_url, chart)):
            console.print(line)
        console.print(
            f"See it in Grafana: add an InfluxDB data source (query language InfluxQL) with URL "
            f"{influx_url} and database {DATABASE}, then set the time range to 2009-04-14 → "
            f"2009-04-29 and query: SELECT last(followers) FROM followers WHERE $timeFilter "
            f"GROUP BY time($__interval), account"
        )
        if keep_running and spawn_dir is not None:
            console.print("influxd stays up; press Ctrl-C to stop it.")
            with suppress(KeyboardInterrupt):
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
    ok = len(events) > 0 and all(s["values"] for s in points) and receiver.received
    return 0 if ok else 1


def _print_summary(
    console: Console, points: list[dict[str, Any]], events: list[dict[str, Any]], receiver: Receiver
) -> None:
    table = Table(title="Summary (read back from InfluxDB)")
    for col in ("account", "first", "peak", "last", "points", "alerts"):
        table.add_column(col, justify="left" if col == "account" else "right")
    alerts: dict[str, int] = {}
    for series in events:
        alerts[series["tags"]["account"]] = len(series["values"])
    for series in points:
        _, first, peak, last, count = series["values"][0]
        account = series["tags"]["account"]
        table.add_row(
            at_handle(account),
            f"{first:,}",
            f"{peak:,}",
            f"{last:,}",
            f"{count:,}",
            str(alerts.get(account, 0)),
        )
    console.print(table)
    for series in events:
        for _, kind, value, threshold in series["values"]:
            console.print(
                f"  event  {at_handle(series['tags']['account'])}  {kind}  {threshold:,}"
                f"  (at {value:,})"
            )
    console.print(
        f"Webhook receiver got {len(receiver.received)} alert(s): "
        + ", ".join(f"{p['event']['account']} {p['event']['kind']}" for p in receiver.received)
    )
