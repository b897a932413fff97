"""Change over a window: a drop or rise by an amount or a percentage, from local history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.rules.base import (
    Reading,
    compact_duration,
    load_state,
    make_event,
    restate,
    who,
)
from followerwatch.units import format_duration


@dataclass(frozen=True, slots=True)
class WindowState:
    """Whether the condition is currently active."""

    active: bool


@dataclass(frozen=True, slots=True)
class WindowChange:
    """E.g. a drop of 10,000 in 1 h or a rise of 5 % in 24 h (peak-to-now / trough-to-now)."""

    direction: Literal["drop", "rise"]
    window: float
    amount: int | None = None
    percent: float | None = None

    @property
    def name(self) -> str:
        """The `rule` tag, e.g. "drop:10000/1h" or "drop:5%/24h"."""
        size = f"{self.percent:g}%" if self.percent is not None else str(self.amount)
        return f"{self.direction}:{size}/{compact_duration(self.window)}"

    @property
    def history_seconds(self) -> float:
        """The window itself."""
        return self.window

    def change(self, reading: Reading) -> tuple[int, int] | None:
        """(reference count, change) over the window, or None without earlier data in it."""
        assert reading.obs is not None
        start = reading.obs.time - timedelta(seconds=self.window)
        earlier = [c for t, c in reading.history if start <= t < reading.obs.time]
        if not earlier:
            return None
        ref = max(earlier) if self.direction == "drop" else min(earlier)
        return ref, reading.obs.followers - ref

    def met(self, ref: int, change: int) -> bool:
        """Whether a change from `ref` satisfies the rule."""
        size = -change if self.direction == "drop" else change
        if size <= 0:
            return False
        if self.percent is not None:
            return ref > 0 and size * 100 >= self.percent * ref
        return self.amount is not None and size >= self.amount

    def active(self, state: str | None) -> bool:
        """Whether the stored state is an open condition."""
        st = load_state(WindowState, state)
        return st is not None and st.active

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]:
        """(state, reading) → (state, events)."""
        obs = reading.obs
        if obs is None:
            return state, []
        stored = load_state(WindowState, state)
        old = stored or WindowState(False)
        measured = self.change(reading)
        active = measured is not None and self.met(*measured)
        events: list[Event] = []
        if active != old.active:
            events.append(self._event(reading, active, measured))
        return restate(state, stored, WindowState(active)), events

    def _event(self, reading: Reading, active: bool, measured: tuple[int, int] | None) -> Event:
        assert reading.obs is not None
        count = reading.obs.followers
        span = format_duration(self.window)
        name = f"{who(reading.account, reading.obs.handle)} on {reading.account.platform}"
        limit = self.amount if self.percent is None else 0
        if active and measured is not None:
            ref, change = measured
            pct = f" ({change / ref:+.1%})" if ref else ""
            verb = "lost" if self.direction == "drop" else "gained"
            message = f"{name} {verb} {abs(change):,} followers{pct} within {span}: now {count:,}"
            kind = EventKind.WINDOW_DROP if self.direction == "drop" else EventKind.WINDOW_RISE
            severity = Severity.WARNING if self.direction == "drop" else Severity.INFO
            return make_event(
                self.name,
                kind,
                reading,
                value=count,
                threshold=limit or 0,
                message=message,
                severity=severity,
                status=EventStatus.FIRING,
            )
        message = f"{name}: the {self.direction} within {span} has cleared: now {count:,}"
        return make_event(
            self.name,
            EventKind.WINDOW_CLEARED,
            reading,
            value=count,
            threshold=limit or 0,
            message=message,
            severity=Severity.INFO,
            status=EventStatus.RESOLVED,
        )
