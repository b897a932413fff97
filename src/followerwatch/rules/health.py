"""Stale (no successful poll for a while) and frozen (the count stands still while polled)."""

from __future__ import annotations

from dataclasses import dataclass

from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.rules.base import (
    Reading,
    compact_duration,
    dump_state,
    load_state,
    make_event,
    restate,
    who,
)
from followerwatch.units import format_duration


@dataclass(frozen=True, slots=True)
class StaleState:
    """Whether the account is currently stale."""

    stale: bool


@dataclass(frozen=True, slots=True)
class Stale:
    """Fires when no successful poll has happened for `after` seconds; resolves on the next one."""

    after: float

    @property
    def name(self) -> str:
        """The `rule` tag."""
        return f"stale:{compact_duration(self.after)}"

    @property
    def history_seconds(self) -> float:
        """No history needed."""
        return 0.0

    def active(self, state: str | None) -> bool:
        """Whether the account is stale now."""
        st = load_state(StaleState, state)
        return st is not None and st.stale

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]:
        """(state, reading) → (state, events)."""
        stored = load_state(StaleState, state)
        old = stored or StaleState(False)
        name = f"{who(reading.account)} on {reading.account.platform}"
        if reading.obs is not None:
            if not old.stale:
                return restate(state, stored, old), []
            message = f"{name} is polled again: now {reading.obs.followers:,}"
            return dump_state(StaleState(False)), [
                make_event(
                    self.name,
                    EventKind.STALE_RECOVERED,
                    reading,
                    value=reading.obs.followers,
                    threshold=int(self.after),
                    message=message,
                    severity=Severity.INFO,
                    status=EventStatus.RESOLVED,
                )
            ]
        last = reading.last
        if old.stale or last is None:
            return restate(state, stored, old), []
        age = (reading.now - last.time).total_seconds()
        if age < self.after:
            return restate(state, stored, old), []
        why = f" ({reading.failure})" if reading.failure else ""
        message = (
            f"{name} has not been polled successfully for {format_duration(age)}{why}; "
            f"last count {last.followers:,}"
        )
        return dump_state(StaleState(True)), [
            make_event(
                self.name,
                EventKind.STALE,
                reading,
                value=last.followers,
                threshold=int(self.after),
                message=message,
                severity=Severity.WARNING,
                status=EventStatus.FIRING,
            )
        ]


@dataclass(frozen=True, slots=True)
class FrozenState:
    """The count and since when (epoch seconds) it has not moved."""

    value: int
    since: float
    frozen: bool = False


@dataclass(frozen=True, slots=True)
class Frozen:
    """Fires when successful polls show the exact same count for `after` seconds."""

    after: float

    @property
    def name(self) -> str:
        """The `rule` tag."""
        return f"frozen:{compact_duration(self.after)}"

    @property
    def history_seconds(self) -> float:
        """No history needed: the state keeps since when the count has stood still."""
        return 0.0

    def active(self, state: str | None) -> bool:
        """Whether the count is frozen now."""
        st = load_state(FrozenState, state)
        return st is not None and st.frozen

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]:
        """(state, reading) → (state, events)."""
        obs = reading.obs
        if obs is None:
            return state, []
        old = load_state(FrozenState, state)
        now = obs.time.timestamp()
        name = f"{who(reading.account, obs.handle)} on {reading.account.platform}"
        if old is None or obs.followers != old.value:
            events = []
            if old is not None and old.frozen:
                events.append(
                    make_event(
                        self.name,
                        EventKind.UNFROZEN,
                        reading,
                        value=obs.followers,
                        threshold=int(self.after),
                        message=f"{name} is moving again: {old.value:,} → {obs.followers:,}",
                        severity=Severity.INFO,
                        status=EventStatus.RESOLVED,
                    )
                )
            return dump_state(FrozenState(obs.followers, now)), events
        if old.frozen or now - old.since < self.after:
            return state or dump_state(old), []
        message = (
            f"{name} has shown exactly {obs.followers:,} followers for "
            f"{format_duration(now - old.since)} while polls succeed"
        )
        return dump_state(FrozenState(old.value, old.since, True)), [
            make_event(
                self.name,
                EventKind.FROZEN,
                reading,
                value=obs.followers,
                threshold=int(self.after),
                message=message,
                severity=Severity.WARNING,
                status=EventStatus.FIRING,
            )
        ]
