"""Observations → (store, rules → events → outbox → notifiers): the one place they meet."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from followerwatch.clock import Clock
from followerwatch.errors import DeliveryError, StoreError
from followerwatch.models import Event, Failure, FetchResult, Observation, Point
from followerwatch.notify.base import Notifier
from followerwatch.rules.threshold import Threshold, ThresholdState, evaluate
from followerwatch.schema import event_point, observation_point
from followerwatch.state import Change, LastSeen, StateDB
from followerwatch.store.base import Store

log = structlog.get_logger("followerwatch.pipeline")

# A count that falls to exactly 0 from at least this much is held until the next polls agree.
SUSPECT_FROM = 100


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a poll report."""

    platform: str
    account: str
    followers: int | None
    change: int | None
    events: tuple[Event, ...] = ()
    failure: str | None = None


class Pipeline:
    """Applies rules against stored state, writes points, and drains the alert outbox."""

    def __init__(
        self,
        *,
        state: StateDB,
        store: Store | None,
        notifiers: Sequence[Notifier],
        rules: Mapping[tuple[str, str], Sequence[Threshold]],
        clock: Clock,
        dry_run: bool = False,
        max_backlog: int = 100_000,
        suspect_zero: frozenset[str] = frozenset(),
        confirm_polls: int = 2,
    ) -> None:
        self.state = state
        self.store = store
        self.notifiers = list(notifiers)
        self.rules = rules
        self.clock = clock
        self.dry_run = dry_run
        self._backlog: deque[Point] = deque()
        self._max_backlog = max_backlog
        self.dropped_points = 0
        self.suspect_zero = suspect_zero
        self.confirm_polls = confirm_polls
        self._held: dict[tuple[str, str], list[Observation]] = {}

    async def process(self, result: FetchResult, extra_points: Sequence[Point] = ()) -> list[Row]:
        """Handle one batch's result end to end; returns a row per observation and failure."""
        observations, held = self._screen(result.observations)
        changes, rows = self._apply_rules(observations)
        rows += held + [_failure_row(f) for f in result.failures]
        if self.dry_run:
            return rows
        self.state.commit(changes, [n.name for n in self.notifiers])
        points = [observation_point(o) for o in observations]
        await self.write([*points, *extra_points])
        await self.deliver()
        return rows

    def _screen(self, observations: Sequence[Observation]) -> tuple[list[Observation], list[Row]]:
        """Hold a fall to exactly 0 on platforms where 0 can mean "not computed yet"."""
        out: list[Observation] = []
        rows: list[Row] = []
        for obs in sorted(observations, key=lambda o: o.time):
            key = obs.account.key
            held = self._held.pop(key, [])
            if obs.followers == 0 and obs.account.platform in self.suspect_zero:
                last = self.state.last_seen(*key)
                suspect = last is not None and last.followers >= SUSPECT_FROM
                if suspect and len(held) + 1 < self.confirm_polls:
                    self._held[key] = [*held, obs]
                    rows.append(Row(key[0], key[1], 0, None, failure="held: suspect drop to 0"))
                    continue
                out.extend(held)  # confirmed by the polls since: the zeros were real
            elif held:
                log.info(
                    "suspect drop to 0 not confirmed; discarded",
                    platform=key[0],
                    account=key[1],
                    held=len(held),
                )
            out.append(obs)
        return out, rows

    def _apply_rules(self, observations: Sequence[Observation]) -> tuple[list[Change], list[Row]]:
        changes: dict[tuple[str, str], Change] = {}
        rows: list[Row] = []
        for obs in sorted(observations, key=lambda o: o.time):
            key = obs.account.key
            prev = changes.get(key)
            last = prev.last if prev else self.state.last_seen(*key)
            raw = prev.rule_states if prev else self.state.rule_states(*key)
            change = obs.followers - last.followers if last else None
            if last is not None and obs.time <= last.time:
                # Already seen (a replayed or repeated reading): store it, never re-alert on it.
                rows.append(Row(key[0], key[1], obs.followers, 0))
                continue
            states = dict(raw)
            events: list[Event] = list(prev.events) if prev else []
            new_events: list[Event] = []
            for rule in self.rules.get(key, ()):
                # A rule with no stored state sees this as the account's first observation.
                old = ThresholdState.loads(raw.get(rule.name)) if last is not None else None
                new, event = evaluate(rule, old, obs)
                states[rule.name] = new.dumps()
                if event is not None:
                    new_events.append(event)
            if (
                last is not None
                and last.handle
                and obs.handle
                and (last.handle.lower() != obs.handle.lower())
            ):
                log.info(
                    "account renamed",
                    platform=key[0],
                    account=key[1],
                    old=last.handle,
                    new=obs.handle,
                )
            seen = LastSeen(obs.followers, obs.time, obs.platform_id, obs.handle)
            changes[key] = Change(key[0], key[1], seen, states, (*events, *new_events))
            rows.append(Row(key[0], key[1], obs.followers, change, tuple(new_events)))
        return list(changes.values()), rows

    async def write(self, points: Sequence[Point]) -> None:
        """Write points (after any backlog), then any events InfluxDB has not confirmed yet."""
        if self.store is None:
            return
        self._backlog.extend(points)
        overflow = len(self._backlog) - self._max_backlog
        if overflow > 0:
            for _ in range(overflow):
                self._backlog.popleft()
            self.dropped_points += overflow
            log.error(
                "backlog full, oldest points dropped",
                dropped=overflow,
                dropped_total=self.dropped_points,
            )
        try:
            if self._backlog:
                batch = list(self._backlog)
                await self.store.write(batch)
                for _ in batch:
                    self._backlog.popleft()
            events = self.state.unstored_events()
            if events:
                await self.store.write([event_point(e) for e in events])
                self.state.mark_stored(e.id for e in events)
        except StoreError as exc:
            if not exc.retryable and exc.status in (400, 422):
                # A point the server rejects will never be accepted: do not wedge the queue on it.
                log.error(
                    "influxdb rejected points; dropping them",
                    error=str(exc),
                    points=len(self._backlog),
                )
                self.dropped_points += len(self._backlog)
                self._backlog.clear()
                return
            log.warning(
                "influxdb write failed; will retry next cycle",
                error=str(exc),
                backlog=len(self._backlog),
            )

    @property
    def backlog(self) -> int:
        """Points waiting for InfluxDB."""
        return len(self._backlog)

    async def deliver(self) -> None:
        """Send every pending delivery; retry transient failures with backoff, then leave them."""
        for notifier in self.notifiers:
            for event in self.state.pending_deliveries(notifier.name):
                if not await self._deliver_one(notifier, event):
                    break  # the channel is down: keep order, try again next cycle

    async def _deliver_one(self, notifier: Notifier, event: Event) -> bool:
        retries = int(getattr(notifier, "retries", 0))
        for attempt in range(retries + 1):
            try:
                await notifier.send(event)
            except DeliveryError as exc:
                if exc.permanent:
                    log.error(
                        "alert delivery failed permanently",
                        notifier=notifier.name,
                        event_id=event.id,
                        error=str(exc),
                    )
                    self.state.mark_delivery(event.id, notifier.name, "failed", str(exc))
                    return True
                if attempt < retries:
                    await self.clock.sleep(min(30.0, 0.5 * 2**attempt))
                    continue
                log.warning(
                    "alert delivery failed; will retry",
                    notifier=notifier.name,
                    event_id=event.id,
                    error=str(exc),
                )
                self.state.mark_delivery(event.id, notifier.name, "pending", str(exc))
                return False
            self.state.mark_delivery(event.id, notifier.name, "delivered", None)
            return True
        return False


def _failure_row(failure: Failure) -> Row:
    account = failure.account
    return Row(account.platform, account.name, None, None, failure=str(failure.kind))
