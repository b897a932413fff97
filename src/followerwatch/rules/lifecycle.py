"""Account lifecycle from the sources' typed results: not found, suspended, hidden, renamed."""

from __future__ import annotations

from dataclasses import dataclass

from followerwatch.models import (
    Event,
    EventKind,
    EventStatus,
    FailureKind,
    Severity,
    at_handle,
)
from followerwatch.rules.base import Reading, dump_state, load_state, make_event, restate, who

_KINDS = {
    FailureKind.NOT_FOUND: (EventKind.NOT_FOUND, Severity.CRITICAL, "cannot be found"),
    FailureKind.SUSPENDED: (EventKind.SUSPENDED, Severity.CRITICAL, "is suspended"),
    FailureKind.DEACTIVATED: (EventKind.DEACTIVATED, Severity.CRITICAL, "is deactivated"),
    FailureKind.HIDDEN: (EventKind.COUNT_HIDDEN, Severity.WARNING, "hides its count"),
}


@dataclass(frozen=True, slots=True)
class LifecycleState:
    """The account's last known status: "ok" or a FailureKind value."""

    status: str


_OK = LifecycleState("ok")
_OK_TEXT = dump_state(_OK)  # every account's usual state, serialised once


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Status changes become events; a rename is a one-off event."""

    @property
    def name(self) -> str:
        """The `rule` tag."""
        return "lifecycle"

    @property
    def history_seconds(self) -> float:
        """No history needed."""
        return 0.0

    def active(self, state: str | None) -> bool:
        """Whether the stored state is an open condition."""
        st = load_state(LifecycleState, state)
        return st is not None and st.status != "ok"

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]:
        """(state, reading) → (state, events)."""
        stored = load_state(LifecycleState, state)
        old = stored or LifecycleState("ok")
        account, obs = reading.account, reading.obs
        events: list[Event] = []
        if obs is not None:
            last = reading.last
            if (
                last is not None
                and last.handle
                and obs.handle
                and (last.handle.lower() != obs.handle.lower())
            ):
                message = (
                    f"{account.name} on {account.platform} was renamed: {at_handle(last.handle)} → "
                    f"{at_handle(obs.handle)}"
                )
                events.append(
                    make_event(
                        self.name,
                        EventKind.RENAMED,
                        reading,
                        value=obs.followers,
                        threshold=0,
                        message=message,
                        severity=Severity.INFO,
                        status=EventStatus.ONCE,
                    )
                )
            if old.status != "ok":
                message = (
                    f"{who(account, obs.handle)} on {account.platform} is back "
                    f"(was {old.status}): {obs.followers:,} followers"
                )
                events.append(
                    make_event(
                        self.name,
                        EventKind.REAPPEARED,
                        reading,
                        value=obs.followers,
                        threshold=0,
                        message=message,
                        severity=Severity.INFO,
                        status=EventStatus.RESOLVED,
                    )
                )
            return (state if stored == _OK else _OK_TEXT), events
        if reading.failure not in _KINDS or old.status == str(reading.failure):
            return restate(state, stored, old), []
        assert reading.failure is not None
        kind, severity, verb = _KINDS[reading.failure]
        last_count = reading.last.followers if reading.last else 0
        message = f"{who(account)} on {account.platform} {verb}"
        events.append(
            make_event(
                self.name,
                kind,
                reading,
                value=last_count,
                threshold=0,
                message=message,
                severity=severity,
                status=EventStatus.FIRING,
            )
        )
        return dump_state(LifecycleState(str(reading.failure))), events
