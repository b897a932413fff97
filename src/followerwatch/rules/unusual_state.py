"""The unusual rule's per-account summary: its packed layout, and how a reading is learned.

One account's summary is 172 bytes (`HEAD` and 24 hourly offsets), kept as a latin-1 string: the
rule's state text, 245 bytes as a Python string. See rules/unusual.py for what it is used for.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

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
LEARNING = MIN_DAYS * DAY  # the products, computed once: the usual reading compares against them
SEASONAL = SEASON_DAYS * DAY
# A day and an hour in half-seconds: the middle of an interval is a whole number of them.
DAY_2 = 2 * 86_400
HOUR_2 = 2 * 3_600
# Times (epoch seconds) within this of 1970: a float holds them, and half-seconds, exactly.
EXACT = 2**50
# Memories of the level and the spread, and of each hour-of-day offset (in that hour's time).
LEVEL_TAU = 2 * DAY
SPREAD_TAU = 4 * DAY
SEASON_TAU = 7 * HOUR
CLIP = 3.0  # a residual counts for at most this many spreads when learning
CLEAR_POLLS = 2  # polls back within the allowance (a quarter of the limit) that resolve it
# A reading firing has gone on this long is learned from again: a lasting change is the new normal.
RELEARN = DAY
VERSION = 3  # 1 was base64, 2 had 32-bit times
_VERSION_CHAR = chr(VERSION)

# version, readings, first, anchor time and count, level, spread, typical interval, score, the
# down and up CUSUMs, the run's start, count at its start and expected change, firing, calm polls,
# the sign of the last reading if it was an outlier (0: it was not); then 24 hourly offsets.
HEAD = struct.Struct("<BIqqdffffffqdfbBb")
OFFSET = struct.Struct("<f")
OFFSETS = struct.Struct("<24f")
PACKED_SIZE = HEAD.size + OFFSETS.size
FIRING_AT = struct.calcsize("<BIqqdffffffqdf")  # the byte of `firing`, read without unpacking
HELD_AT = HEAD.size - 1
OFFSETS_AT = HEAD.size
# What the usual reading reads and writes (rules/unusual.py `evaluate`), so it need not unpack and
# repack every field: readings, first, anchor time and count, level, spread, interval, then the
# down and up CUSUMs as one 64-bit integer (0 only when both are +0.0) and `firing`.
QUICK = struct.Struct("<xIqqdfff4xQ20xb")
# Written at byte 1: readings, first, anchor time and count, level, spread, interval, score.
WRITE = struct.Struct("<Iqqdffff")
SCORE = struct.Struct("<f")
SCORE_AT = struct.calcsize("<BIqqdfff")
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


# The last state packed and its score (unrounded): `score` reads the state a reading just left (the
# pipeline asks right after `evaluate`) without decoding it. One tuple, swapped whole.
LAST: list[tuple[object, float]] = [(object(), math.nan)]


def pack(v: Sequence[Any]) -> str:
    """The state text of a summary (or its values): the packed bytes as a latin-1 string.

    172 bytes, and 245 as a Python string: no base64 to encode or decode on every reading.
    """
    if isinstance(v, Summary):
        s = v
        v = [VERSION, s.readings, s.first, s.anchor_time, s.anchor_count, s.level, s.spread]
        v += [s.interval, s.score, 0.0, 0.0, 0, 0.0, 0.0, s.firing, 0, 0]
        v.append(bytearray(OFFSETS.pack(*s.offsets)))
    if len(v) < _OFFSETS:
        v = pack_ready(list(v))
    text: str = (HEAD.pack(*v[:_OFFSETS]) + v[_OFFSETS]).decode("latin-1")
    LAST[0] = (text, float(v[_SCORE]))
    return text


def _raw(text: str | None) -> bytes | None:
    """A state text's packed bytes; None for none, or for anything that is not a summary."""
    if not text or len(text) != PACKED_SIZE or text[0] != _VERSION_CHAR:
        return None
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return None


def unpack_values(text: str | None) -> list[Any] | None:
    """A state text's values (see HEAD; the offsets as one bytearray); None for anything else."""
    raw = _raw(text)
    if raw is None:
        return None
    values: list[Any] = list(HEAD.unpack_from(raw))
    values.append(bytearray(raw[HEAD.size :]))
    return values


def score_of(text: str | None) -> float | None:
    """The score stored in a state text, unrounded (NaN while learning); None for anything else."""
    raw = _raw(text)
    if raw is None:
        return None
    value: float = SCORE.unpack_from(raw, SCORE_AT)[0]
    return value


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


# The weights by interval: polls are regular, so few intervals recur (a dict: cheaper than a cache).
ALPHAS: dict[float, tuple[float, float, float]] = {}


def alphas(dt: float) -> tuple[float, float, float]:
    """The weights of a new reading `dt` seconds after the last: level, spread, hourly offset."""
    if len(ALPHAS) >= 1024:
        ALPHAS.clear()  # irregular intervals: keep the memory bounded
    weights = ALPHAS[dt] = (
        1.0 - math.exp(-dt / LEVEL_TAU),
        1.0 - math.exp(-dt / SPREAD_TAU),
        1.0 - math.exp(-dt / SEASON_TAU),
    )
    return weights


def learn(v: list[Any], epoch: float, rate: float, dt: float) -> None:
    """Update the summary values `v` in place with a reading's rate (per hour) over `dt` s."""
    n = v[_N]  # readings so far, this one included (step counts it)
    if n <= 1:
        v[_LEVEL], v[_SPREAD], v[_INTERVAL] = rate, 0.0, dt
        return
    a_level, a_spread, a_season = ALPHAS.get(dt) or alphas(dt)
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


def pack_ready(values: list[Any]) -> list[Any]:
    """Fresh values padded to the full layout (CUSUMs, flags and offsets at zero)."""
    return [*values, 0, 0, 0, bytearray(OFFSETS.size)]
