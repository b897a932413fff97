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
The state is the summary packed into 172 bytes (rules/unusual_state.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.rules.base import Reading, make_event, who
from followerwatch.rules.unusual_state import (
    _AC,
    _AT,
    _CALM,
    _DOWN,
    _FIRING,
    _FIRST,
    _HELD,
    _INTERVAL,
    _LEVEL,
    _LIMITS,
    _N,
    _OFFSETS,
    _RUN_AT,
    _RUN_COUNT,
    _RUN_EXPECTED,
    _SCORE,
    _SPREAD,
    _UP,
    _VERSION_CHAR,
    ALPHAS,
    CLEAR_POLLS,
    CLIP,
    DAY,
    DAY_2,
    EXACT,
    FIRING_AT,
    HELD_AT,
    HOUR,
    HOUR_2,
    LAST,
    LEARNING,
    LIMITS,
    MIN_DAYS,
    MIN_READINGS,
    OFFSET,
    OFFSETS_AT,
    PACKED_SIZE,
    QUICK,
    RELEARN,
    SEASON_DAYS,
    SEASONAL,
    WRITE,
    Direction,
    Sensitivity,
    Summary,
    _floor,
    _fresh,
    alphas,
    learn,
    pack,
    pack_ready,
    score_of,
    unpack,
    unpack_values,
)

__all__ = [
    "CLEARED",
    "LIMITS",
    "PACKED_SIZE",
    "Direction",
    "Sensitivity",
    "Summary",
    "Unusual",
    "pack",
    "unpack",
]

CLEARED = 2.0  # what `step` returns when an open condition resolved


def _epoch(when: datetime) -> int:
    return int(when.timestamp())


# The last reading's time and its epoch second: a poll's readings share one time (datetime is
# immutable), so `evaluate` converts it once per poll, not once per account.
WHEN: list[tuple[datetime | None, int]] = [(None, 0)]


@dataclass(frozen=True, slots=True)
class Unusual:
    """Fires once when the change per hour leaves the account's own normal; resolves on return."""

    sensitivity: Sensitivity = "normal"
    direction: Direction = "down"
    min_change: int = 100
    # Its state is a learned summary with its own anchor: written behind (state/behind.py).
    soft_state: ClassVar[bool] = True
    # The `rule` tag; a class attribute, not a property: the pipeline reads it on every reading.
    name: ClassVar[str] = "unusual"

    @property
    def history_seconds(self) -> float:
        """The rule keeps its own summary, not history."""
        return 0.0

    def active(self, state: str | None) -> bool:
        """Whether an unusual change is open (one byte of the state: no unpacking)."""
        if state and len(state) == PACKED_SIZE and state[0] == _VERSION_CHAR:
            return state[FIRING_AT] != "\x00"
        return False

    def score(self, state: str | None) -> float | None:
        """The score of the reading that left `state` (None while learning)."""
        last = LAST[0]
        value = last[1] if state is last[0] else score_of(state)
        if value is None or value != value:  # NaN while learning
            return None
        return round(value, 2)

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
        when, last = obs.time, WHEN[0]
        if when is last[0]:
            now = last[1]
        else:
            now = int(when.timestamp())
            WHEN[0] = (when, now)
        count = obs.followers
        if not state or len(state) != PACKED_SIZE or state[0] != _VERSION_CHAR:
            return pack(_fresh(now, count)), []
        try:
            raw = state.encode("latin-1")
        except UnicodeEncodeError:
            return pack(_fresh(now, count)), []
        # The usual reading (no run, nothing open) is done here without unpacking the whole
        # summary: `step` and `learn`'s sums for it, in their order, so the state is bit for bit
        # theirs (tests/test_unusual.py replays a series through both). Anything else: `step`.
        n, first, at, ac, level, spread, interval, running, firing = QUICK.unpack_from(raw)
        # Whole seconds as an int: every sum below gives what it gives with `step`'s float(dt), as
        # the int converts exactly (EXACT), and float() is a call saved.
        dt = now - at
        if dt <= 0:
            return state, []
        delta = count - ac
        if delta == 0 and (obs.resolution or 1) > 1:
            # A rounded count that did not move says nothing yet: wait for it to move.
            return state, []
        age = now - first
        if running or firing or n < MIN_READINGS or age < LEARNING or at <= -EXACT:
            return self._stepped(state, reading, now, count)
        rate = delta * HOUR / dt
        # The hour of the interval's middle, (now - dt / 2) % DAY // HOUR, in integer half-seconds:
        # the same hour (floats hold these times exactly: EXACT), at a third of the cost.
        at_slot = OFFSETS_AT + 4 * ((now + at) % DAY_2 // HOUR_2)
        off: float = OFFSET.unpack_from(raw, at_slot)[0]
        seasonal = age >= SEASONAL
        floor = 0.02 * level if level > 0 else -0.02 * level
        if spread > floor:
            floor = spread
        expected = level + off if seasonal else level
        score = (rate - expected) / (floor if floor > 1.0 else 1.0)
        if interval and dt < interval:
            score *= math.sqrt(dt / interval)
        allowance = _LIMITS[self.sensitivity][1]
        if not -allowance < score < allowance:
            return self._stepped(state, reading, now, count)
        # learn(): this reading counted (n + 1), its offset slot the one scored against.
        n += 1
        a_level, a_spread, a_season = ALPHAS.get(dt) or alphas(dt)
        clip = CLIP * spread if n > 8 and spread > 0 else math.inf
        resid = rate - level
        resid = clip if resid > clip else -clip if resid < -clip else resid
        level += (a_level if a_level * n > 1 else 1.0 / n) * resid
        dev = rate - level - off
        dev = clip if dev > clip else -clip if dev < -clip else dev
        off += a_season * dev
        miss = rate - (level + off if seasonal else level)
        if miss < 0:
            miss = -miss
        if miss > clip:
            miss = clip
        spread += (a_spread if a_spread * n > 1 else 1.0 / n) * (miss - spread)
        interval = interval + a_level * (dt - interval) if interval else dt
        buf = bytearray(raw)
        OFFSET.pack_into(buf, at_slot, off)
        WRITE.pack_into(buf, 1, n, first, now, count, level, spread, interval, score)
        buf[HELD_AT] = 0
        text = buf.decode("latin-1")
        LAST[0] = (text, score)
        return text, []

    def _stepped(
        self, state: str, reading: Reading, now: int, count: int
    ) -> tuple[str | None, list[Event]]:
        """`evaluate` for any reading but the usual one: unpack, `step`, pack."""
        v = unpack_values(state)
        if v is None:
            return pack(_fresh(now, count)), []
        obs = reading.obs
        fired = self.step(v, now, count, (obs.resolution if obs else None) or 1)
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
