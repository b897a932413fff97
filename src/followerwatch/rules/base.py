"""What every rule shares: the Reading it sees, the Rule protocol, event and state helpers."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from followerwatch.models import (
    Account,
    Event,
    EventKind,
    EventStatus,
    FailureKind,
    Observation,
    Severity,
    at_handle,
)
from followerwatch.units import format_duration

_EVENT_NS = uuid.UUID("5f0c6c2e-4c55-4a57-9b0a-6f6c6c6f7772")
S = TypeVar("S")


# NamedTuples, not frozen dataclasses: as immutable, and several times cheaper to build, which
# counts at one of each per observation.
class Previous(NamedTuple):
    """The last stored reading of an account."""

    followers: int
    time: datetime
    handle: str | None


class Reading(NamedTuple):
    """Everything a rule may look at for one account in one poll (rules stay pure)."""

    account: Account
    now: datetime
    obs: Observation | None
    failure: FailureKind | None
    last: Previous | None
    # Stored counts (oldest first) within the longest window any rule of the account needs.
    history: tuple[tuple[datetime, int], ...] = ()


class Rule(Protocol):
    """A pure function (state, reading) → (state, events); state is an opaque JSON string."""

    @property
    def name(self) -> str: ...

    @property
    def history_seconds(self) -> float: ...

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]: ...

    def active(self, state: str | None) -> bool:
        """Whether the state holds an open (firing) condition; repeats stop when it closes."""
        ...


@runtime_checkable
class Scored(Protocol):
    """A rule whose state scores the reading that left it (the `unusual` field of `followers`)."""

    @property
    def name(self) -> str: ...

    def score(self, state: str | None) -> float | None:
        """The score of the last reading, or None while there is none (learning)."""
        ...


def dump_state(state: Any) -> str:
    """Serialise a rule's dataclass state: the JSON of `asdict` with sorted keys, built by hand."""
    names = _FIELDS.get(type(state))
    if names is None:
        # Field names are identifiers, so they need no JSON escaping.
        names = _FIELDS[type(state)] = tuple(sorted(f.name for f in dataclasses.fields(state)))
    parts = []
    for name in names:
        value = getattr(state, name)
        kind = type(value)
        if kind is bool:
            text = "true" if value else "false"
        elif kind is int:
            text = int.__repr__(value)
        elif value is None:
            text = "null"
        elif kind is float or kind is str:
            text = json.dumps(value)
        else:
            # Containers or nested dataclasses: the general (slow) path, same output.
            return json.dumps(dataclasses.asdict(state), sort_keys=True)
        parts.append(f'"{name}": {text}')
    return "{" + ", ".join(parts) + "}"


_FIELDS: dict[type, tuple[str, ...]] = {}


def load_state(cls: type[S], text: str | None) -> S | None:
    """Parse dump_state's output; None (no state) for anything else, e.g. after a rule changed."""
    if not text:
        return None
    return _load((cls, text))  # type: ignore[return-value]  # (cast() is a call: hot path)


# Most accounts share a handful of state texts ("armed, streak 0"), and states are frozen, so
# one parsed instance per (class, text) can be handed to every rule that reads it.
@lru_cache(maxsize=4096)
def _load(key: tuple[type, str]) -> object:
    cls, text = key
    try:
        return cls(**json.loads(text))
    except (TypeError, ValueError):
        return None


def restate(text: str | None, old: object, new: object) -> str:
    """`text` again when the state did not change (no re-serialising), else the new state's."""
    if text is not None and old is not None and new == old:
        return text
    return dump_state(new)


@lru_cache(maxsize=256)
def compact_duration(seconds: float) -> str:
    """`format_duration` without spaces, as rule names use it ("1h30m"); cached: names are hot."""
    return format_duration(seconds).replace(" ", "")


def who(account: Account, handle: str | None = None) -> str:
    """How messages name an account: "@handle", or "name (@handle)" when they differ."""
    handle = handle or account.handle
    at = at_handle(handle)
    return at if account.name == handle else f"{account.name} ({at})"


def rounding_note(obs: Observation | None) -> str:
    """ " (rounded to 1,000s)" for platforms that round counts."""
    if obs is None or not obs.resolution or obs.resolution <= 1:
        return ""
    return f" (the platform rounds this count down to {obs.resolution:,}s)"


def make_event(
    rule: str,
    kind: EventKind,
    reading: Reading,
    *,
    value: int,
    threshold: int,
    message: str,
    severity: Severity,
    status: EventStatus,
) -> Event:
    """An event with a deterministic id: re-evaluating the same reading never mints another."""
    account = reading.account
    time = reading.obs.time if reading.obs is not None else reading.now
    key = f"{account.platform}|{account.name}|{rule}|{kind}|{time.isoformat()}"
    return Event(
        id=str(uuid.uuid5(_EVENT_NS, key)),
        time=time,
        platform=account.platform,
        account=account.name,
        rule=rule,
        kind=kind,
        value=value,
        threshold=threshold,
        message=message,
        severity=severity,
        status=status,
        labels=account.labels,
    )


def longest_history(rules: Sequence[Rule]) -> float:
    """How much history (seconds) an account's rules need."""
    return max((r.history_seconds for r in rules), default=0.0)
