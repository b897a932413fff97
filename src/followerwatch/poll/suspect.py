"""Falls to exactly 0 are held as suspect until they have lasted a confirmation window."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import NamedTuple

import structlog

from followerwatch.models import Observation
from followerwatch.state.commit import HeldZero, LastSeen
from followerwatch.units import format_duration

log = structlog.get_logger("followerwatch.suspect")

# A count that falls to exactly 0 from at least this much is held until it has lasted.
SUSPECT_FROM = 100
# How long such a fall must last when a platform sets no `zero_confirm` (seconds).
DEFAULT_WINDOW = 900.0

Key = tuple[str, str]


class Screened(NamedTuple):
    """A batch after screening: what to evaluate and write, what is held, what to persist."""

    # In time order; a confirmed fall brings its held readings, with their own times.
    observations: list[Observation]
    suspect: list[Observation]
    held: list[HeldZero]
    released: list[Key]


class SuspectZeros:
    """The held readings of every suspect account, mirrored from the state database."""

    def __init__(
        self, held: dict[Key, list[HeldZero]], windows: Mapping[str, float] | None = None
    ) -> None:
        # Loaded once: a batch with no zero and no held account costs one dict look-up each.
        self._held = held
        self.windows: Mapping[str, float] = windows or {}
        # Falls that ended, by (platform, outcome): "confirmed" or "recovered".
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def by_platform(self) -> dict[str, int]:
        """How many accounts are held as suspect, per platform."""
        return dict(Counter(platform for platform, _ in self._held))

    def screen(
        self,
        observations: Sequence[Observation],
        last_seen: Callable[[Key], LastSeen | None],
        *,
        apply: bool = True,
    ) -> Screened:
        """Hold suspect zeros, release confirmed or recovered ones (`apply=False`: a dry run)."""
        ordered = sorted(observations, key=lambda o: o.time)
        if not self._held and all(o.followers for o in ordered):
            return Screened(ordered, [], [], [])  # most batches: nothing to hold or release
        out: list[Observation] = []
        suspect: list[Observation] = []
        to_hold: list[HeldZero] = []
        released: list[Key] = []
        # A dry run works on a copy (held lists are replaced, never changed in place).
        work = self._held if apply else dict(self._held)
        # What this batch has passed on so far, per account (its stored count is older).
        latest: dict[Key, int] = {}
        for obs in ordered:
            key = obs.account.key
            held = work.get(key)
            if held is not None and (fresh := _fresh(held, last_seen(key))) is not held:
                # Readings a stored count has since overtaken (a release that was never
                # committed): forgotten, on disk as in memory, so they confirm nothing.
                released.append(key)
                if fresh:
                    work[key] = held = fresh
                    to_hold += fresh
                else:
                    del work[key]
                    held = None
            if obs.followers != 0:
                if held is not None:
                    released.append(key)
                    del work[key]
                    self._ended(key, "recovered", held, obs, apply)
                latest[key] = obs.followers
                out.append(obs)
                continue
            if held is None:
                before = latest.get(key)
                if before is None:
                    last = last_seen(key)
                    before = None if last is None or obs.time <= last.time else last.followers
                if before is None or before < SUSPECT_FROM:
                    latest[key] = 0
                    out.append(obs)
                    continue
                held = []
                if apply:
                    log.warning(
                        "fall to 0 held as suspect",
                        platform=key[0],
                        account=key[1],
                        was=before,
                        confirm_after=format_duration(self.window(key[0])),
                    )
            elif obs.time <= held[-1].time:
                suspect.append(obs)  # the same reading again: nothing new to hold
                continue
            reading = HeldZero(
                key[0],
                key[1],
                obs.time,
                obs.following,
                obs.posts,
                obs.platform_id,
                obs.handle,
                obs.resolution,
            )
            held = [*held, reading]
            lasted = (obs.time - held[0].time).total_seconds()
            if len(held) >= 2 and lasted >= self.window(key[0]):
                # Real: every held reading is written and evaluated, at its own time.
                out += [_observation(obs, h) for h in held]
                released.append(key)
                del work[key]
                self._ended(key, "confirmed", held, obs, apply)
                latest[key] = 0
                continue
            work[key] = held
            to_hold.append(reading)
            suspect.append(obs)
        # Only what is still held at the end: a reading released later in the same batch must
        # not be written after its release is.
        to_hold = [h for h in to_hold if h in work.get((h.platform, h.account), ())]
        return Screened(out, suspect, to_hold, released)

    def reload(self, keys: Iterable[Key], stored: Mapping[Key, list[HeldZero]]) -> None:
        """Take these accounts' held readings from the state database again (a batch given up)."""
        for key in keys:
            if key in stored:
                self._held[key] = stored[key]
            else:
                self._held.pop(key, None)

    def forget(self, watched: Collection[Key]) -> list[Key]:
        """Drop the held readings of accounts no longer watched; those accounts."""
        gone = [key for key in self._held if key not in watched]
        for key in gone:
            del self._held[key]
        return gone

    def window(self, platform: str) -> float:
        """Seconds a fall to 0 on this platform must last before it is believed."""
        return self.windows.get(platform, DEFAULT_WINDOW)

    def _ended(
        self, key: Key, outcome: str, held: Sequence[HeldZero], obs: Observation, apply: bool
    ) -> None:
        if not apply:
            return
        self.outcomes[(key[0], outcome)] += 1
        # A confirmed fall is news (its alerts follow); a recovered one only explains a gap.
        emit = log.warning if outcome == "confirmed" else log.info
        emit(
            f"suspect fall to 0 {outcome}",
            platform=key[0],
            account=key[1],
            held=len(held),
            since=held[0].time.isoformat(),
            now=obs.followers,
        )


def _fresh(held: list[HeldZero], last: LastSeen | None) -> list[HeldZero]:
    """The held readings newer than the stored count (`held` itself when all of them are)."""
    if last is None or last.followers == 0 or held[0].time > last.time:
        return held
    return [h for h in held if h.time > last.time]


def _observation(obs: Observation, held: HeldZero) -> Observation:
    """A held reading as the observation it was (the account as configured now)."""
    return Observation(
        obs.account,
        held.time,
        0,
        held.following,
        held.posts,
        held.platform_id,
        held.handle,
        held.resolution,
    )
