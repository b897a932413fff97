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

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar, Literal, NamedTuple

from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.rules.base import Reading, make_event, who

HOUR = 3600.0
DAY = 86_400.0
# How far outside (in spreads, per poll) a reading must be, by sensitivity.
LIMITS = {"high": 9.0, "normal": 15.0, "low": 24.0}
# Each limit, its allowance (a quarter: what a CUSUM forgives a reading) and the CUSUM level that
# fires (two readings at the limit).
_LIMITS = {name: (limit, limit / 4, 1.5 * limit) for name, limit in LIMITS.items()}
MIN_DAYS = 3.0
MIN_READINGS = 24
SEASON_DAYS = 14.0
# Memories of the level and the spread, and of each hour-of-day offset (in that hour's time).
LEVEL_TAU = 2 * DAY
SPREAD_TAU = 4 * DAY
SEASON_TAU = 7 * HOUR
CLIP = 3.0  # a residual counts for at most this many spreads when learning
CLEAR_POLLS = 2  # polls back within the allowance (a quarter of the limit) that resolve it
# A reading firing has gone on this long is learned from again: a lasting change is the new normal.
RELEARN = DAY
VERSION = 2  # 1 was base64
_VERSION_CHAR = chr(VERSION)

# version, readings, first, anchor time and count, level, spread, typical interval, score, the
# down and up CUSUMs, the run's start, count at its start and expected change, firing, calm polls,
# the sign of the last reading if it was an outlier (0: it was not); then 24 hourly offsets.
HEAD = struct.Struct("<BIIIdffffffIdfbBb")
OFFSET = struct.Struct("<f")
OFFSETS = struct.Struct("<24f")
PACKED_SIZE = HEAD.size + OFFSETS.size
FIRING_AT = struct.calcsize("<BIIIdffffffIdf")  # the byte of `firing`, read without unpacking
(
    _VER,
    _N,
    _FIRST,
    _AT,
    _AC,
    _LEVEL,
    _SPREAD,
    _INTERVAL,
    _SCORE,
    _DOWN,
    _UP,
    _RUN_AT,
    _RUN_COUNT,
    _RUN_EXPECTED,
    _FIRING,
    _CALM,
    _HELD,
    _OFFSETS,
) = range(18)

Direction = Literal["down", "up", "both"]
Sensitivity = Literal["low", "normal", "high"]


class Summary(NamedTuple):
    """One account's learned behaviour and the rule's condition, as read back from its state."""

    readings: int = 0
    first: int = 0  # epoch seconds of the first reading
    anchor_time: int = 0  # the last reading learned from (rounded counts: the last change)
    anchor_count: float = 0.0
    level: float = 0.0  # followers per hour
    spread: float = 0.0
    interval: float = 0.0  # typical seconds between readings
    score: float = math.nan  # of the last reading; NaN while learning
    firing: int = 0  # -1 a drop, +1 a rise, 0 nothing open
    offsets: tuple[float, ...] = (0.0,) * 24

    def days(self) -> float:
        """Days between the first reading and the last."""
        return (self.anchor_time - self.first) / DAY if self.readings else 0.0

    def ready(self) -> bool:
        """Enough history to judge: 3 days and 24 readings."""
        return _ready(self.readings, self.anchor_time - self.first)

    def seasonal(self) -> bool:
        """Hour-of-day offsets are in use (14 days of readings)."""
        return self.anchor_time - self.first >= SEASON_DAYS * DAY

    def typical(self, epoch: float) -> float:
        """The typical change per hour at a moment."""
        if not self.seasonal():
            return self.level
        return self.level + self.offsets[int(epoch % DAY // HOUR)]

    def spread_used(self) -> float:
        """The spread scores are measured in (see `_floor`)."""
        return _floor(self.spread, self.level)


def _ready(readings: int, seconds: float) -> bool:
    return readings >= MIN_READINGS and seconds >= MIN_DAYS * DAY


def _floor(spread: float, level: float) -> float:
    # At least 1/h and 2 % of the level: a flat account's every change is not infinitely unusual.
    return max(spread, 1.0, 0.02 * abs(level))


def _fresh(now: int, count: int) -> list[Any]:
    return [VERSION, 0, now, now, float(count), 0.0, 0.0, 0.0, math.nan, 0.0, 0.0, 0, 0.0, 0.0]


# The last state packed and its values: `active` and `score` read the state a reading just left
# (the pipeline asks right after `evaluate`) without unpacking it again.
_memo: tuple[str, list[Any]] = ("", [])


def pack(v: Sequence[Any]) -> str:
    """The state text of a summary (or its values): the packed bytes as a latin-1 string.

    160 bytes, and 233 as a Python string: no base64 to encode or decode on every reading.
    """
    global _memo
    if isinstance(v, Summary):
        s = v
        v = [VERSION, s.readings, s.first, s.anchor_time, s.anchor_count, s.level, s.spread]
        v += [s.interval, s.score, 0.0, 0.0, 0, 0.0, 0.0, s.firing, 0, 0]
        v.append(bytearray(OFFSETS.pack(*s.offsets)))
    if len(v) < _OFFSETS:
        v = pack_ready(list(v))
    text: str = (HEAD.pack(*v[:_OFFSETS]) + v[_OFFSETS]).decode("latin-1")
    _memo = (text, list(v))
    return text


def unpack_values(text: str | None) -> list[Any] | None:
    """A state text's values (see HEAD; the offsets as one bytearray); None for anything else."""
    if not text or len(text) != PACKED_SIZE or text[0] != _VERSION_CHAR:
        return None
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return None
    values: list[Any] = list(HEAD.unpack_from(raw))
    values.append(bytearray(raw[HEAD.size :]))
    return values


def _read(text: str | None) -> list[Any] | None:
    """`unpack_values` for reading only (the values may be shared: never change them)."""
    memo = _memo
    return memo[1] if text is memo[0] else unpack_values(text)


def offset(v: Sequence[Any], hour: int) -> float:
    """The learned offset of an hour of the day (UTC)."""
    return float(OFFSET.unpack_from(v[_OFFSETS], 4 * hour)[0])


def unpack(text: str | None) -> Summary | None:
    """The summary in a state text; None for none, or for anything else (a rule changed)."""
    v = unpack_values(text)
    if v is None:
        return None
    return Summary(
        v[_N],
        v[_FIRST],
        v[_AT],
        v[_AC],
        v[_LEVEL],
        v[_SPREAD],
        v[_INTERVAL],
        v[_SCORE],
        v[_FIRING],
        OFFSETS.unpack(v[_OFFSETS]),
    )


@lru_cache(maxsize=1024)
def _alphas(dt: float) -> tuple[float, float, float]:
    """The weights of a new reading `dt` seconds after the last: level, spread, hourly offset."""
    return (
        1.0 - math.exp(-dt / LEVEL_TAU),
        1.0 - math.exp(-dt / SPREAD_TAU),
        1.0 - math.exp(-dt / SEASON_TAU),
    )


def learn(v: list[Any], epoch: float, rate: float, dt: float) -> None:
    """Update the summary values `v` in place with a reading's rate (per hour) over `dt` s."""
    n = v[_N]  # readings so far, this one included (step counts it)
    if n <= 1:
        v[_LEVEL], v[_SPREAD], v[_INTERVAL] = rate, 0.0, dt
        return
    a_level, a_spread, a_season = _alphas(dt)
    level, spread, interval = v[_LEVEL], v[_SPREAD], v[_INTERVAL]
    clip = CLIP * spread if n > 8 and spread > 0 else math.inf
    resid = rate - level
    resid = clip if resid > clip else -clip if resid < -clip else resid
    # The first readings are averaged plainly; the weighted memory takes over once it is longer.
    level += (a_level if a_level * n > 1 else 1.0 / n) * resid
    slot = 4 * int((epoch - dt / 2) % DAY // HOUR)
    offsets = v[_OFFSETS]
    off = OFFSET.unpack_from(offsets, slot)[0]
    dev = rate - level - off
    dev = clip if dev > clip else -clip if dev < -clip else dev
    off += a_season * dev
    OFFSET.pack_into(offsets, slot, off)
    miss = rate - (level + off if epoch - v[_FIRST] >= SEASON_DAYS * DAY else level)
    if miss < 0:
        miss = -miss
    if miss > clip:
        miss = clip
    spread += (a_spread if a_spread * n > 1 else 1.0 / n) * (miss - spread)
    v[_LEVEL], v[_SPREAD] = level, spread
    v[_INTERVAL] = interval + a_level * (dt - interval) if interval else dt


def _epoch(when: datetime) -> int:
    return int(when.timestamp())


@dataclass(frozen=True, slots=True)
class Unusual:
    """Fires once when the change per hour leaves the account's own normal; resolves on return."""

    sensitivity: Sensitivity = "normal"
    direction: Direction = "down"
    min_change: int = 100
    # Its state is a learned summary with its own anchor: written behind (state/behind.py).
    soft_state: ClassVar[bool] = True

    @property
    def name(self) -> str:
        """The `rule` tag: "unusual"."""
        return "unusual"

    @property
    def history_seconds(self) -> float:
        """The rule keeps its own summary, not history."""
        return 0.0

    def active(self, state: str | None) -> bool:
        """Whether an unusual change is open (one byte of the state: no unpacking)."""
        if not state or len(state) != PACKED_SIZE or state[0] != _VERSION_CHAR:
            return False
        return state[FIRING_AT] != "\x00"

    def score(self, state: str | None) -> float | None:
        """The score of the reading that left `state` (None while learning)."""
        v = _read(state)
        if v is None or math.isnan(v[_SCORE]):
            return None
        return round(float(v[_SCORE]), 2)

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
        text = f"typical {typical:+,.0f} ± {s.spread_used():,.0f}/h {season}"
        if s.firing:
            text = f"unusual {'drop' if s.firing < 0 else 'rise'} under way; " + text
        return text

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]:
        """(state, reading) → (state, events)."""
        obs = reading.obs
        if obs is None:
            return state, []
        v = unpack_values(state)
        now = int(obs.time.timestamp())
        if v is None:
            return pack(_fresh(now, obs.followers)), []
        fired = self.step(v, now, obs.followers, obs.resolution or 1)
        if fired is None:
            return state, []
        text = pack(v)
        if fired == CLEARED:
            return text, [self._cleared(reading, v)]
        if fired:
            return text, [self._fired(reading, v, fired)]
        return text, []

    def step(self, v: list[Any], now: int, count: int, resolution: int = 1) -> float | None:
        """Apply one reading to the summary values `v` in place: learn, score, detect.

        Returns None when the reading changed nothing, else -1 / +1 (a drop or rise fired),
        CLEARED (the open condition resolved) or 0.
        """
        dt = float(now - v[_AT])
        if dt <= 0:
            return None
        delta = count - v[_AC]
        if resolution > 1 and delta == 0:
            # A rounded count that did not move says nothing yet: wait for it to move.
            return None
        rate = delta * HOUR / dt
        n = v[_N]
        v[_N] = n + 1
        age = now - v[_FIRST]
        if n < MIN_READINGS or age < MIN_DAYS * DAY:
            learn(v, now, rate, dt)
            v[_AT], v[_AC] = now, count
            return 0
        level = v[_LEVEL]
        if age >= SEASON_DAYS * DAY:
            hour = 4 * int((now - dt / 2) % DAY // HOUR)
            expected = level + OFFSET.unpack_from(v[_OFFSETS], hour)[0]
        else:
            expected = level
        spread = v[_SPREAD]
        floor = 0.02 * level if level > 0 else -0.02 * level
        if spread > floor:
            floor = spread
        score = (rate - expected) / (floor if floor > 1.0 else 1.0)  # as _floor()
        interval = v[_INTERVAL]
        if interval and dt < interval:
            # A reading sooner than usual measures over less time, so it is noisier.
            score *= math.sqrt(dt / interval)
        limit, allowance, top = _LIMITS[self.sensitivity]
        if -allowance < score < allowance and not (v[_DOWN] or v[_UP] or v[_FIRING]):
            # The usual reading: no run, nothing open.
            learn(v, now, rate, dt)
            v[_SCORE], v[_HELD], v[_AT], v[_AC] = score, 0, now, count
            return 0
        clipped = limit if score > limit else -limit if score < -limit else score
        outlier = abs(score) >= limit
        sign = (score > 0) - (score < 0)
        if outlier and v[_HELD] == -sign:
            # The last reading was as far out the other way: a glitch this one undoes, not a run.
            clipped = 0.0
        was_running = v[_DOWN] > 0 or v[_UP] > 0
        # Capped at the firing level: a long wave must not keep a run open long after it.
        down = min(top, max(0.0, v[_DOWN] - clipped - allowance))
        up = min(top, max(0.0, v[_UP] + clipped - allowance))
        firing = v[_FIRING]
        if not was_running and (down > 0 or up > 0) and not firing:
            v[_RUN_AT], v[_RUN_COUNT], v[_RUN_EXPECTED] = v[_AT], v[_AC], 0.0
        result: float = 0
        if firing:
            # Back to normal: within the allowance, as readings are when no run is building.
            v[_CALM] = v[_CALM] + 1 if abs(score) < allowance else 0
            if v[_CALM] >= CLEAR_POLLS:
                firing, down, up, result = 0, 0.0, 0.0, CLEARED
                v[_CALM] = 0
        elif down >= top or up >= top:
            excess = count - v[_RUN_COUNT] - v[_RUN_EXPECTED] - expected * dt / HOUR
            # A rounded count's true change may be up to one step away from the shown one.
            step = resolution if resolution > 1 else 0
            for way, stat in ((-1, down), (1, up)):
                if stat >= top and self._watches(way) and way * excess - step >= self.min_change:
                    firing = result = way
                    break
        # Not from an outlier, a run that goes on, or an open condition, unless it has lasted
        # (a new normal): a campaign must not become the baseline it is measured against.
        building = was_running and (down > 0 or up > 0)
        quiet = not outlier and not firing and not building
        if quiet or ((firing or building) and now - v[_RUN_AT] > RELEARN):
            learn(v, now, rate, dt)
        v[_SCORE], v[_DOWN], v[_UP], v[_FIRING] = score, down, up, firing
        v[_HELD] = sign if outlier and clipped else 0
        if down > 0 or up > 0 or firing:
            v[_RUN_EXPECTED] += expected * dt / HOUR
        v[_AT], v[_AC] = now, count
        if result == CLEARED or not (down > 0 or up > 0 or firing):
            v[_RUN_AT], v[_RUN_COUNT], v[_RUN_EXPECTED] = 0, 0.0, 0.0
        return result

    def seeded(
        self, state: str | None, readings: Sequence[tuple[datetime, int]], resolution: int = 1
    ) -> str | None:
        """A summary learned from stored counts (oldest first), keeping `state`'s open condition.

        Used when the service starts without a summary and after `import`: the learning starts
        afresh from the counts, and the newer of the two anchors is kept.
        """
        v: list[Any] | None = None
        for when, count in readings:
            now = _epoch(when)
            if v is None:
                v = pack_ready(_fresh(now, count))
            else:
                # The same steps as live readings, so the summary is what polls would have left.
                self.step(v, now, count, resolution)
        if v is None:
            return state
        old = unpack_values(state)
        if old is not None:
            for i in (_SCORE, _DOWN, _UP, _RUN_AT, _RUN_COUNT, _RUN_EXPECTED, _FIRING, _CALM):
                v[i] = old[i]
            if old[_AT] > v[_AT]:
                v[_AT], v[_AC] = old[_AT], old[_AC]
        return pack(v)

    def _watches(self, sign: int) -> bool:
        return self.direction == "both" or (self.direction == "down") == (sign < 0)

    def _run(self, v: list[Any]) -> tuple[float, float, float]:
        """The run's observed and typical change per hour, and the spread."""
        hours = max((v[_AT] - v[_RUN_AT]) / HOUR, 1e-9)
        observed = (v[_AC] - v[_RUN_COUNT]) / hours
        return observed, v[_RUN_EXPECTED] / hours, _floor(v[_SPREAD], v[_LEVEL])

    def _fired(self, reading: Reading, v: list[Any], sign: float) -> Event:
        observed, typical, spread = self._run(v)
        score = (observed - typical) / spread
        name = who(reading.account, reading.obs.handle if reading.obs else None)
        verb = "losing" if observed < 0 else "gaining"
        season = "for this hour" if v[_AT] - v[_FIRST] >= SEASON_DAYS * DAY else "lately"
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

    def _cleared(self, reading: Reading, v: list[Any]) -> Event:
        s = unpack(pack(v))
        assert s is not None
        spread = s.spread_used()
        typical = s.typical(s.anchor_time)
        observed = typical + s.score * spread
        name = who(reading.account, reading.obs.handle if reading.obs else None)
        message = (
            f"{name} on {reading.account.platform}: the unusual change is over; "
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


CLEARED = 2.0


def pack_ready(values: list[Any]) -> list[Any]:
    """Fresh values padded to the full layout (CUSUMs, flags and offsets at zero)."""
    return [*values, 0, 0, 0, bytearray(OFFSETS.size)]
