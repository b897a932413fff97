"""What the stages above need of a state backend (SQLite's StateDB, or PostgreSQL's), as protocols.

The SQLite objects (state/accounts.py, rules.py, events.py, deliveries.py, commit.py) are the
reference: a backend answers every call the same way, and tests/test_state_backends*.py run the
same tests on both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from followerwatch.models import Event, Projection
from followerwatch.state.deliveries import Delivery, DeliveryRef, Mark
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.values import Change, HeldZero, LastSeen

Key = tuple[str, str]


class AccountReads(Protocol):
    """Last counts, recent history and held zeros of the watched accounts."""

    def last_seen(self, platform: str, account: str) -> LastSeen | None:
        """One account's last stored count."""
        ...

    def platform_ids_of(self, platform: str, accounts: Iterable[str]) -> dict[str, str]:
        """The platform ids known for these accounts of one platform."""
        ...

    def last_seen_many(
        self, keys: Iterable[Key], summaries: dict[Key, str] | None = None
    ) -> dict[Key, LastSeen]:
        """Last counts of many accounts (and their summaries into `summaries`, if given)."""
        ...

    def history(self, platform: str, account: str, since: datetime) -> list[tuple[datetime, int]]:
        """One account's stored (time, count) since `since`."""
        ...

    def history_many(
        self, keys: Iterable[Key], since: datetime
    ) -> dict[Key, list[tuple[float, int]]]:
        """Many accounts' stored (epoch seconds, count) since `since`."""
        ...

    def held_zeros(self) -> dict[Key, list[HeldZero]]:
        """Every reading of 0 held as suspect, by account."""
        ...


class RuleReads(Protocol):
    """Rule states by account and rule name."""

    def rule_states(self, platform: str, account: str) -> dict[str, str]:
        """One account's rule states."""
        ...

    def rule_states_many(
        self, keys: Iterable[Key], summaries: Mapping[Key, str] | None = None
    ) -> dict[Key, dict[str, str]]:
        """Many accounts' rule states."""
        ...

    def set_rule_state(self, platform: str, account: str, rule: str, state: str) -> None:
        """Write one rule state now (campaigns)."""
        ...


class EventStore(Protocol):
    """Events to deliver and to store in InfluxDB, and the open conditions that repeat."""

    def add_events(self, events: Sequence[Event], route: Callable[[Event], Iterable[str]]) -> None:
        """Store events with a delivery per notifier `route` names."""
        ...

    def active(self) -> list[tuple[Event, float]]:
        """Open conditions and when each was last sent."""
        ...

    def touch_active(self, event: Event, sent: float) -> None:
        """Record that an open condition was sent again."""
        ...

    def unstored_events(self, limit: int = 1000) -> list[Event]:
        """Events not yet written to InfluxDB, oldest first."""
        ...

    def mark_stored(self, event_ids: Iterable[str]) -> None:
        """Record that these events are in InfluxDB."""
        ...

    def recent(self, limit: int = 100) -> list[tuple[Event, dict[str, str]]]:
        """The newest events with each notifier's delivery status."""
        ...


class DeliveryStore(Protocol):
    """The outbox's deliveries: one per event and notifier."""

    def pending(self, notifier: str, limit: int = 500) -> list[Delivery]:
        """Deliveries of one notifier that are due, oldest first."""
        ...

    def pending_refs(self, notifier: str, limit: int = 5000) -> list[DeliveryRef]:
        """What is pending for one notifier, without the events' text."""
        ...

    def events_by_id(self, ids: Sequence[str]) -> dict[str, Event]:
        """Stored events by id."""
        ...

    def pending_heads(self) -> list[tuple[str, str, str, float]]:
        """Each lane's oldest pending delivery."""
        ...

    def mark_deliveries(self, marks: Sequence[Mark]) -> None:
        """Record attempts."""
        ...

    def unenriched(self, limit: int = 5000) -> list[Event]:
        """Pending events whose projection is not yet worked out."""
        ...

    def set_enrichment(self, projections: Mapping[str, Projection | None]) -> None:
        """Store worked-out projections."""
        ...

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries by status."""
        ...


class StateCommitter(Protocol):
    """Where a poll's changes go, in order, atomically per poll."""

    async def commit_async(
        self,
        changes: Sequence[Change],
        route: Callable[[Event], Iterable[str]],
        keep_history: Mapping[Key, float] | None = None,
        *,
        held: Sequence[HeldZero] = (),
        released: Sequence[Key] = (),
    ) -> None:
        """Commit a poll's changes."""
        ...

    async def settled(self, keys: Iterable[Key]) -> None:
        """Wait for queued commits of these accounts, so reads include them."""
        ...


class StateBackend(Protocol):
    """A state backend: one object per concern, and the doorbell storing an event rings."""

    @property
    def accounts(self) -> AccountReads:
        """Last counts, history, held zeros."""
        ...

    @property
    def rules(self) -> RuleReads:
        """Rule states."""
        ...

    @property
    def events(self) -> EventStore:
        """Events and open conditions."""
        ...

    @property
    def deliveries(self) -> DeliveryStore:
        """The outbox's deliveries."""
        ...

    @property
    def committer(self) -> StateCommitter:
        """Where polls commit."""
        ...

    @property
    def doorbell(self) -> Doorbell:
        """Rung when an event to deliver is stored."""
        ...

    def close(self) -> None:
        """Write what is queued and close."""
        ...
