"""`below` / `above` thresholds: pure, edge-triggered, with optional hysteresis."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Literal

from followerwatch.models import Event, EventKind, Observation

_EVENT_NS = uuid.UUID("5f0c6c2e-4c55-4a57-9b0a-6f6c6c6f7772")


@dataclass(frozen=True, slots=True)
class Threshold:
    """`below` fires when the count goes under `value`; `above` when it reaches `value` or more."""

    direction: Literal["below", "above"]
    value: int
    hysteresis: int = 0

    @property
    def name(self) -> str:
        """The rule's stable name, the `rule` tag: e.g. "below:1000000"."""
        return f"{self.direction}:{self.value}"

    def past(self, count: int) -> bool:
        """Whether a count is on the alerting side of the line."""
        return count < self.value if self.direction == "below" else count >= self.value

    def rearms(self, count: int) -> bool:
        """Whether a count is far enough back on the safe side to arm the rule again."""
        if self.direction == "below":
            return count >= self.value + self.hysteresis
        return count < self.value - self.hysteresis


@dataclass(frozen=True, slots=True)
class ThresholdState:
    """`armed` means the next crossing fires."""

    armed: bool

    def dumps(self) -> str:
        """Serialise for the state database."""
        return json.dumps({"armed": self.armed})

    @classmethod
    def loads(cls, text: str | None) -> ThresholdState | None:
        """Parse what dumps wrote; None (unknown) for anything else."""
        try:
            data = json.loads(text) if text else None
        except ValueError:
            return None
        return cls(armed=data["armed"]) if isinstance(data, dict) and "armed" in data else None


def evaluate(
    rule: Threshold, state: ThresholdState | None, obs: Observation
) -> tuple[ThresholdState, Event | None]:
    """(previous state, observation) → (new state, event or None); a first observation only arms."""
    count = obs.followers
    if state is None:
        return ThresholdState(armed=not rule.past(count)), None
    if state.armed and rule.past(count):
        return ThresholdState(armed=False), _event(rule, obs)
    if not state.armed and rule.rearms(count):
        return ThresholdState(armed=True), None
    return state, None


def _event(rule: Threshold, obs: Observation) -> Event:
    account = obs.account
    kind = EventKind.DROPPED_BELOW if rule.direction == "below" else EventKind.CROSSED_ABOVE
    verb = "dropped below" if rule.direction == "below" else "crossed above"
    handle = obs.handle or account.handle
    who = f"@{handle}" if account.name == handle else f"{account.name} (@{handle})"
    message = f"{who} on {account.platform} {verb} {rule.value:,} followers: now {obs.followers:,}"
    # Deterministic id: re-evaluating the same observation can never mint a second event.
    event_id = str(
        uuid.uuid5(
            _EVENT_NS, f"{account.platform}|{account.name}|{rule.name}|{obs.time.isoformat()}"
        )
    )
    return Event(
        id=event_id,
        time=obs.time,
        platform=account.platform,
        account=account.name,
        rule=rule.name,
        kind=kind,
        value=obs.followers,
        threshold=rule.value,
        message=message,
    )


def thresholds(
    below: list[int] | None, above: list[int] | None, hysteresis: int | None
) -> list[Threshold]:
    """The rules of one account from its resolved config."""
    hyst = hysteresis or 0
    rules = [Threshold("below", v, hyst) for v in below or []]
    rules += [Threshold("above", v, hyst) for v in above or []]
    return rules
