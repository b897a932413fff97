"""The demo's story: dated narration lines, merged in replay time with the alerts received.

The crossing times in the narration come from the replay's own rows; the unusual drop's line comes
from the alert the receiver got (its time, rate and score are the rule's own); the other beats
are fixed dates keyed to replay time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from followerwatch.models import at_handle
from followerwatch.units import format_duration

if TYPE_CHECKING:
    from followerwatch.service.app import App

LINE = 1_000_000
# The replay's (illustrative) Unfollow Day, as the campaign report at the end measures it.
UNFOLLOW_START = datetime(2009, 4, 27, tzinfo=UTC)
UNFOLLOW_END = datetime(2009, 4, 28, tzinfo=UTC)
# Oprah's first tweet was on her show of 17 April 2009; only the date is told, this orders it.
OPRAH = datetime(2009, 4, 17, 16, tzinfo=UTC)


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


def falls(rows: Mapping[str, Sequence[tuple[datetime, int]]]) -> dict[str, datetime]:
    """Each account's first fall back below the line after it first reached it."""
    out = {}
    for account, series in rows.items():
        fall = crossing(series, LINE, up=False, after=crossing(series, LINE, up=True))
        if fall is not None:
            out[account] = fall
    return out


def flagged(event: Mapping[str, Any], falls: Mapping[str, datetime]) -> Beat | None:
    """The story's line for an unusual drop the receiver got, or None for any other alert."""
    if event.get("kind") != "unusual_drop":
        return None
    when = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
    handle = at_handle(str(event["account"]))
    rate, typical = int(event["value"]), int(event["threshold"])
    score = f" (score {event['score']:+.0f})" if event.get("score") is not None else ""
    text = (
        f"{when:%d %b %Y %H:%M} UTC — followerwatch flags an unusual drop: {handle} is "
        f"{'losing' if rate < 0 else 'gaining'} {abs(rate):,}/h against a typical "
        f"{typical:+,}/h{score}"
    )
    fall = falls.get(str(event["account"]))
    if fall is not None and fall > when:
        # The point of the rule: it speaks while the count is still far above any line.
        lead = format_duration((fall - when).total_seconds())
        text += f", {lead} before {handle} falls below {LINE:,}"
    return Beat(when, text + ".")


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
    fall = falls(rows).get("aplusk")
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

    def __init__(
        self,
        console: Console,
        beats: Sequence[Beat],
        received: list[dict[str, Any]],
        falls: Mapping[str, datetime] | None = None,
    ):
        self.console = console
        self.received = received
        self.falls = dict(falls or {})  # account → when it falls below the line (see `flagged`)
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
                beat = flagged(event, self.falls)
                if beat is not None:
                    self._queue.append((beat.time, 0, f"▶ {beat.text}"))
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
    seen = [app.state.accounts.last_seen("x", account) for account in accounts]
    if any(s is None for s in seen):
        return None
    safe = min(s.time for s in seen if s is not None)
    waiting = [
        e.time for e, _ in app.state.events.recent(1000) if e.id not in received and e.time <= safe
    ]
    return (min(waiting), True) if waiting else (safe, False)


async def narrate(app: App, narrator: Narrator, accounts: Sequence[str]) -> None:
    """Tell the story as far as it is safe to, ten times a second, until cancelled."""
    while True:
        received = {str(p["event"]["id"]) for p in narrator.received}
        bound = told_up_to(app, accounts, received)
        if bound is not None:
            narrator.tell(bound[0], strict=bound[1])
        await asyncio.sleep(0.1)
