"""Milestones: one event per upward crossing (optionally downward), naming the highest passed."""

from __future__ import annotations

from dataclasses import dataclass

from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.rules.base import (
    Reading,
    dump_state,
    load_state,
    make_event,
    restate,
    rounding_note,
    who,
)


@dataclass(frozen=True, slots=True)
class MilestoneState:
    """The highest milestone reached (and announced) that the count has not fallen back from."""

    level: int | None


@dataclass(frozen=True, slots=True)
class Milestones:
    """A ladder (`every`) or an explicit list of `levels`."""

    every: int | None = None
    levels: tuple[int, ...] = ()
    down: bool = False
    hysteresis: int = 0

    @property
    def name(self) -> str:
        """The `rule` tag."""
        return f"milestones:every:{self.every}" if self.every else "milestones"

    @property
    def history_seconds(self) -> float:
        """Milestones need no history."""
        return 0.0

    def highest_at_or_below(self, count: int) -> int | None:
        """The highest milestone the count has reached, if any."""
        if self.every:
            level = count // self.every * self.every
            return level if level > 0 else None
        reached = [m for m in self.levels if m <= count]
        return max(reached) if reached else None

    def active(self, state: str | None) -> bool:
        """Milestones are one-off events, never open conditions."""
        return False

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]:
        """(state, reading) → (state, events)."""
        obs = reading.obs
        if obs is None:
            return state, []
        count = obs.followers
        top = self.highest_at_or_below(count)
        old = load_state(MilestoneState, state)
        if old is None:
            return dump_state(MilestoneState(top)), []
        events: list[Event] = []
        level = old.level
        if top is not None and (level is None or top > level):
            passed = self._count_between(level, top)
            extra = f" ({passed} milestones in one poll)" if passed > 1 else ""
            message = (
                f"{who(reading.account, obs.handle)} on {reading.account.platform} reached "
                f"{top:,} followers{extra}: now {count:,}{rounding_note(obs)}"
            )
            events.append(
                make_event(
                    self.name,
                    EventKind.MILESTONE,
                    reading,
                    value=count,
                    threshold=top,
                    message=message,
                    severity=Severity.INFO,
                    status=EventStatus.ONCE,
                )
            )
            level = top
        elif level is not None and count < level - self.hysteresis:
            if self.down:
                message = (
                    f"{who(reading.account, obs.handle)} on {reading.account.platform} fell "
                    f"back below {level:,} followers: now {count:,}{rounding_note(obs)}"
                )
                events.append(
                    make_event(
                        self.name,
                        EventKind.MILESTONE_DOWN,
                        reading,
                        value=count,
                        threshold=level,
                        message=message,
                        severity=Severity.INFO,
                        status=EventStatus.ONCE,
                    )
                )
            level = top  # re-armed: the next rise past `level` is announced again
        return restate(state, old, MilestoneState(level)), events

    def _count_between(self, low: int | None, high: int) -> int:
        if self.every:
            return (high - (low or 0)) // self.every
        return sum(1 for m in self.levels if (low is None or m > low) and m <= high)
