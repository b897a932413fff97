"""`below` / `above` thresholds: edge-triggered, with `for`, hysteresis and optional resolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
class ThresholdState:
    """`armed`: the next qualifying crossing fires; `streak`: consecutive polls past the line."""

    armed: bool
    streak: int = 0
    active: bool = False


_FIRST = {
    past: dump_state(ThresholdState(armed=not past, streak=int(past))) for past in (False, True)
}


@dataclass(frozen=True, slots=True)
class Threshold:
    """`below` fires when the count goes under `value`; `above` when it reaches `value` or more."""

    direction: Literal["below", "above"]
    value: int
    hysteresis: int = 0
    for_polls: int = 1
    resolved: bool = False

    @property
    def name(self) -> str:
        """The rule's stable name, the `rule` tag: e.g. "below:1000000"."""
        return f"{self.direction}:{self.value}"

    @property
    def history_seconds(self) -> float:
        """Thresholds need no history."""
        return 0.0

    def past(self, count: int) -> bool:
        """Whether a count is on the alerting side of the line."""
        return count < self.value if self.direction == "below" else count >= self.value

    def rearms(self, count: int) -> bool:
        """Whether a count is far enough back on the safe side to arm the rule again."""
        if self.direction == "below":
            return count >= self.value + self.hysteresis
        return count < self.value - self.hysteresis

    def step(self, state: ThresholdState | None, count: int) -> tuple[ThresholdState, str | None]:
        """The state machine alone: the new state and "fire", "resolve" or None."""
        past = self.past(count)
        if state is None:
            return ThresholdState(armed=not past, streak=int(past)), None
        streak = state.streak + 1 if past else 0
        if state.armed and past and streak >= self.for_polls:
            return ThresholdState(armed=False, streak=streak, active=True), "fire"
        if not state.armed and self.rearms(count):
            resolve = "resolve" if state.active and self.resolved else None
            return ThresholdState(armed=True, streak=streak), resolve
        if streak == state.streak:
            return state, None  # unchanged: no new object (the usual case, every poll)
        return ThresholdState(state.armed, streak, state.active), None

    def active(self, state: str | None) -> bool:
        """Whether the stored state is an open condition."""
        st = load_state(ThresholdState, state)
        return st is not None and st.active

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]:
        """(state, reading) → (state, events); readings without a count change nothing."""
        obs = reading.obs
        if obs is None:
            return state, []
        old = load_state(ThresholdState, state)
        new, action = self.step(old, obs.followers)
        events = [self._event(reading, action)] if action else []
        if old is None:
            # A first reading's state is one of two: serialised once, not once per account.
            return _FIRST[new.streak > 0], events
        return restate(state, old, new), events

    def _event(self, reading: Reading, action: str) -> Event:
        assert reading.obs is not None
        obs = reading.obs
        below = self.direction == "below"
        if action == "fire":
            kind = EventKind.DROPPED_BELOW if below else EventKind.CROSSED_ABOVE
            verb = "dropped below" if below else "crossed above"
            severity = Severity.WARNING if below else Severity.INFO
            status = EventStatus.FIRING
        else:
            kind = EventKind.BACK_ABOVE if below else EventKind.BACK_BELOW
            verb = "is back above" if below else "is back below"
            severity, status = Severity.INFO, EventStatus.RESOLVED
        message = (
            f"{who(reading.account, obs.handle)} on {reading.account.platform} {verb} "
            f"{self.value:,} followers: now {obs.followers:,}{rounding_note(obs)}"
        )
        return make_event(
            self.name,
            kind,
            reading,
            value=obs.followers,
            threshold=self.value,
            message=message,
            severity=severity,
            status=status,
        )
