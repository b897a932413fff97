"""`unusual`: fires when an account's change per hour falls far outside its own recent behaviour.

Nothing to tune per account. The rule keeps a compact summary of the account's own change per
hour, updated as readings arrive (no history is kept for it):

- a level (an exponentially weighted mean, each residual clipped to 3 spreads, so a spike moves
  it little), a spread (the same kind of mean of absolute residuals) and, once there are 14 days
  of readings, an offset per hour of the day (UTC) for daily cycles;
- the score of a reading: (observed rate − typical rate) / spread, in rates per hour, so
  irregular polling and gaps change nothing; a reading closer in time than usual counts less;
- a CUSUM over the scores, each clipped to the sensitivity's limit, so the rule needs two polls
  beyond it (or more polls not quite as far): one glitch, which the next poll undoes, never fires;
- rounded counts (YouTube's 3 significant figures) are read only when the shown count changes,
  over the whole time since it last changed, so a rounding step is a rate, not a drop.

Until there are 3 days and 24 readings the rule only learns, and says so (`status`).
The state is the summary packed into base64 (about 220 bytes per account, see `PACKED`).
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, NamedTuple

from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.rules.base import Reading, make_event, who
from followerwatch.units import format_duration

HOUR = 3600.0
DAY = 86_400.0
# How far outside (in spreads, per poll) a reading must be, by sensitivity.
LIMITS = {"high": 9.0, "normal": 15.0, "low": 24.0}
MIN_DAYS = 3.0
MIN_READINGS = 24
SEASON_DAYS = 14.0
# Memories of the level and the spread, and of each hour-of-day offset (in that hour's time).
LEVEL_TAU = 2 * DAY
SPREAD_TAU = 4 * DAY
SEASON_TAU = 7 * HOUR
CLIP = 3.0  # a residual counts for at most this many spreads when learning
CLEAR_POLLS = 2  # polls back within a third of the limit that resolve a firing condition
# A reading firing has gone on this long is learned from again: a lasting change is the new normal.
RELEARN = DAY
VERSION = 1

# version, readings, first, anchor time, anchor count, level, spread, typical interval, score,
# down and up CUSUMs, the run's start, change and expected change, firing, calm polls, 24 offsets
PACKED = struct.Struct("<BIIIdffffffIffbB24f")

Direction = Literal["down", "up", "both"]
Sensitivity = Literal["low", "normal", "high"]


@dataclass(frozen=True, slots=True)
class Summary:
    """One account's learned behaviour and the rule's condition (see the module docstring)."""

    readings: int = 0
    first: int = 0  # epoch seconds of the first reading
    anchor_time: int = 0  # the last reading learned from (rounded counts: the last change)
    anchor_count: float = 0.0
    level: float = 0.0  # followers per hour
    spread: float = 0.0
    interval: float = 0.0  # typical seconds between readings
    score: float = math.nan  # of the last reading; NaN while learning
    down: float = 0.0  # CUSUM statistics, in spreads
    up: float = 0.0
    run_start: int = 0  # the run of unusual readings under way: its start,
    run_change: float = 0.0  # its observed change,
    run_expected: float = 0.0  # and what was expected over it
    firing: int = 0  # -1 a drop, +1 a rise, 0 nothing open
    calm: int = 0
    offsets: tuple[float, ...] = (0.0,) * 24

    def days(self) -> float:
        """Days between the first reading and the anchor."""
        return (self.anchor_time - self.first) / DAY if self.readings else 0.0

    def ready(self) -> bool:
        """Enough history to judge: 3 days and 24 readings."""
        return self.readings >= MIN_READINGS and self.days() >= MIN_DAYS

    def seasonal(self) -> bool:
        """Hour-of-day offsets are in use (14 days of readings)."""
        return self.days() >= SEASON_DAYS

    def typical(self, epoch: float) -> float:
        """The typical change per hour at a moment."""
        if not self.seasonal():
            return self.level
        return self.level + self.offsets[int(epoch % DAY // HOUR)]

    def floor_spread(self) -> float:
        """The spread used for scores: at least 1/h and 2 % of the level."""
        return max(self.spread, 1.0, 0.02 * abs(self.level))


def pack(s: Summary) -> str:
    """The state text of a summary (a JSON string of base64)."""
    raw = PACKED.pack(
        VERSION,
        s.readings,
        s.first,
        s.anchor_time,
        s.anchor_count,
        s.level,
        s.spread,
        s.interval,
        s.score,
        s.down,
        s.up,
        s.run_start,
        s.run_change,
        s.run_expected,
        s.firing,
        s.calm,
        *s.offsets,
    )
    return '"' + base64.b64encode(raw).decode("ascii") + '"'


def unpack(text: str | None) -> Summary | None:
    """The summary in a state text; None for none, or for anything else (a rule changed)."""
    if not text or len(text) < 3 or text[0] != '"':
        return None
    try:
        raw = base64.b64decode(text[1:-1], validate=True)
        f = PACKED.unpack(raw)
    except (ValueError, struct.error):
        return None
    if f[0] != VERSION:
        return None
    return Summary(
        readings=f[1],
        first=f[2],
        anchor_time=f[3],
        anchor_count=f[4],
        level=f[5],
        spread=f[6],
        interval=f[7],
        score=f[8],
        down=f[9],
        up=f[10],
        run_start=f[11],
        run_change=f[12],
        run_expected=f[13],
        firing=f[14],
        calm=f[15],
        offsets=tuple(f[16:]),
    )


class Step(NamedTuple):
    """What one reading did to a summary."""

    summary: Summary
    fired: int  # -1 / +1 a condition opened, 0 none
    cleared: bool


def _ewma(old: float, new: float, dt: float, tau: float) -> float:
    return old + (1.0 - math.exp(-dt / tau)) * (new - old)


def _clip(x: float, limit: float) -> float:
    return limit if x > limit else -limit if x < -limit else x


def learn(s: Summary, epoch: float, rate: float, dt: float) -> Summary:
    """The summary after one more rate (per hour) over `dt` seconds ending at `epoch`."""
    n = s.readings + 1
    hour = int((epoch - dt / 2) % DAY // HOUR)
    offsets = s.offsets
    if n == 1:
        return replace(s, readings=1, level=rate, spread=0.0, interval=dt)
    spread = s.spread
    resid = rate - s.level
    if n > 8 and spread > 0:
        resid = _clip(resid, CLIP * spread)
    # The first readings are averaged plainly; the weighted memory takes over once it is longer.
    level = s.level + max(1.0 - math.exp(-dt / LEVEL_TAU), 1.0 / n) * resid
    off = offsets[hour]
    dev = rate - level - off
    if spread > 0:
        dev = _clip(dev, CLIP * spread)
    offsets = (
        *offsets[:hour],
        off + (1.0 - math.exp(-dt / SEASON_TAU)) * dev,
        *offsets[hour + 1 :],
    )
    seasonal = (epoch - s.first) / DAY >= SEASON_DAYS
    expected = level + (offsets[hour] if seasonal else 0.0)
    miss = abs(rate - expected)
    if n > 8 and spread > 0:
        miss = min(miss, CLIP * spread)
    spread += max(1.0 - math.exp(-dt / SPREAD_TAU), 1.0 / n) * (miss - spread)
    interval = _ewma(s.interval, dt, dt, LEVEL_TAU) if s.interval else dt
    return replace(s, readings=n, level=level, spread=spread, interval=interval, offsets=offsets)


def _epoch(when: datetime) -> int:
    return int(when.timestamp())


@dataclass(frozen=True, slots=True)
class Unusual:
    """Fires once when the change per hour leaves the account's own normal; resolves on return."""

    sensitivity: Sensitivity = "normal"
    direction: Direction = "down"
    min_change: int = 100

    @property
    def name(self) -> str:
        """The `rule` tag: "unusual"."""
        return "unusual"

    @property
    def history_seconds(self) -> float:
        """The rule keeps its own summary, not history."""
        return 0.0

    def active(self, state: str | None) -> bool:
        """Whether an unusual change is open."""
        s = unpack(state)
        return s is not None and s.firing != 0

    def score(self, state: str | None) -> float | None:
        """The score of the reading that left `state` (None while learning)."""
        s = unpack(state)
        if s is None or math.isnan(s.score):
            return None
        return round(s.score, 2)

    def status(self, state: str | None) -> str:
        """One line for `check` and `history`: learning, the typical rate, or what is open."""
        s = unpack(state)
        if s is None or not s.ready():
            readings, days = (s.readings, s.days()) if s else (0, 0.0)
            return (
                f"too little history: {readings} readings over {days:.1f} days "
                f"(needs {MIN_READINGS} over {MIN_DAYS:g} days)"
            )
        typical = s.typical(s.anchor_time)
        season = "for this hour" if s.seasonal() else "(no daily cycle yet)"
        text = f"typical {typical:+,.0f} ± {s.floor_spread():,.0f}/h {season}"
        if s.firing:
            verb = "drop" if s.firing < 0 else "rise"
            text = f"unusual {verb} under way; " + text
        return text

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]:
        """(state, reading) → (state, events)."""
        obs = reading.obs
        if obs is None:
            return state, []
        old = unpack(state)
        now = _epoch(obs.time)
        if old is None:
            return pack(Summary(first=now, anchor_time=now, anchor_count=obs.followers)), []
        step = self.step(old, now, obs.followers, obs.resolution or 1)
        if step.summary is old:
            return state, []
        events: list[Event] = []
        if step.fired:
            events.append(self._fired(reading, step.summary, step.fired))
        elif step.cleared:
            events.append(self._cleared(reading, step.summary, old.firing))
        return pack(step.summary), events

    def step(self, s: Summary, now: int, count: int, resolution: int = 1) -> Step:
        """One reading (epoch seconds, count) applied to a summary: learn, score, detect."""
        dt = float(now - s.anchor_time)
        if dt <= 0:
            return Step(s, 0, False)
        delta = count - s.anchor_count
        if resolution > 1 and delta == 0:
            # A rounded count that did not move says nothing yet: wait for it to move.
            return Step(s, 0, False)
        rate = delta * HOUR / dt
        if not s.ready():
            learned = learn(s, now, rate, dt)
            return Step(replace(learned, anchor_time=now, anchor_count=count), 0, False)
        expected = s.typical(now - dt / 2)
        spread = s.floor_spread()
        score = (rate - expected) / spread
        if s.interval and dt < s.interval:
            # A reading sooner than usual measures over less time, so it is noisier.
            score *= math.sqrt(dt / s.interval)
        limit = LIMITS[self.sensitivity]
        allowance = limit / 4
        clipped = _clip(score, limit)
        down = max(0.0, s.down - clipped - allowance)
        up = max(0.0, s.up + clipped - allowance)
        running = down > 0 or up > 0
        run_start, run_change, run_expected = s.run_start, s.run_change, s.run_expected
        if not (s.down > 0 or s.up > 0) and running:
            run_start, run_change, run_expected = s.anchor_time, 0.0, 0.0
        if running or s.firing:
            run_change += delta
            run_expected += expected * dt / HOUR
        fired, cleared, firing, calm = 0, False, s.firing, s.calm
        if firing:
            calm = calm + 1 if abs(score) < limit / 3 else 0
            if calm >= CLEAR_POLLS:
                firing, calm, cleared = 0, 0, True
        else:
            excess = run_change - run_expected
            for sign, stat in ((-1, down), (1, up)):
                if not self._watches(sign) or stat < 2 * (limit - allowance):
                    continue
                # A rounded count's true change may be up to one step away from the shown one.
                size = sign * excess - (resolution if resolution > 1 else 0)
                if size >= self.min_change:
                    fired = firing = sign
                    break
        learned = s
        if abs(score) < limit or (firing and now - run_start > RELEARN):
            learned = learn(s, now, rate, dt)
        if not running and not firing:
            run_start, run_change, run_expected = 0, 0.0, 0.0
        out = replace(
            learned,
            anchor_time=now,
            anchor_count=count,
            score=score,
            down=down,
            up=up,
            run_start=run_start,
            run_change=run_change,
            run_expected=run_expected,
            firing=firing,
            calm=calm,
        )
        return Step(out, fired, cleared)

    def seeded(
        self, state: str | None, readings: Sequence[tuple[datetime, int]], resolution: int = 1
    ) -> str | None:
        """A summary learned from stored counts (oldest first), keeping `state`'s open condition.

        Used when the service starts without a summary and after `import`: the learning starts
        afresh from the counts, and the newer of the two anchors is kept.
        """
        s: Summary | None = None
        for when, count in readings:
            now = _epoch(when)
            if s is None:
                s = Summary(first=now, anchor_time=now, anchor_count=count)
                continue
            dt = float(now - s.anchor_time)
            delta = count - s.anchor_count
            if dt <= 0 or (resolution > 1 and delta == 0):
                continue
            s = replace(learn(s, now, delta * HOUR / dt, dt), anchor_time=now, anchor_count=count)
        old = unpack(state)
        if s is None:
            return state
        if old is not None:
            s = replace(s, firing=old.firing, calm=old.calm, down=old.down, up=old.up)
            s = replace(s, run_start=old.run_start, run_change=old.run_change)
            s = replace(s, run_expected=old.run_expected)
            if old.anchor_time > s.anchor_time:
                s = replace(s, anchor_time=old.anchor_time, anchor_count=old.anchor_count)
        return pack(s)

    def _watches(self, sign: int) -> bool:
        return self.direction == "both" or (self.direction == "down") == (sign < 0)

    def _rates(self, s: Summary) -> tuple[float, float]:
        hours = max((s.anchor_time - s.run_start) / HOUR, 1e-9)
        return s.run_change / hours, s.run_expected / hours

    def _fired(self, reading: Reading, s: Summary, sign: int) -> Event:
        observed, typical = self._rates(s)
        spread = s.floor_spread()
        score = (observed - typical) / spread
        name = who(reading.account, reading.obs.handle if reading.obs else None)
        verb = "losing" if observed < 0 else "gaining"
        season = "for this hour" if s.seasonal() else "lately"
        message = (
            f"{name} on {reading.account.platform} is {verb} {abs(observed):,.0f}/h; "
            f"typical {season} is {typical:+,.0f} ± {spread:,.0f}/h (score {score:+.0f})"
        )
        event = make_event(
            self.name,
            EventKind.UNUSUAL_DROP if sign < 0 else EventKind.UNUSUAL_RISE,
            reading,
            value=round(observed),
            threshold=round(typical),
            message=message,
            severity=Severity.WARNING if sign < 0 else Severity.INFO,
            status=EventStatus.FIRING,
        )
        return replace(event, score=round(score, 2))

    def _cleared(self, reading: Reading, s: Summary, sign: int) -> Event:
        spread = s.floor_spread()
        typical = s.typical(s.anchor_time)
        observed = typical + s.score * spread
        kind = "drop" if sign < 0 else "rise"
        lasted = format_duration(max(0, s.anchor_time - s.run_start))
        name = who(reading.account, reading.obs.handle if reading.obs else None)
        message = (
            f"{name} on {reading.account.platform}: the unusual {kind} is over after {lasted}; "
            f"now {observed:+,.0f}/h, typical {typical:+,.0f} ± {spread:,.0f}/h"
        )
        event = make_event(
            self.name,
            EventKind.UNUSUAL_CLEARED,
            reading,
            value=round(observed),
            threshold=round(typical),
            message=message,
            severity=Severity.INFO,
            status=EventStatus.RESOLVED,
        )
        return replace(event, score=round(s.score, 2))
