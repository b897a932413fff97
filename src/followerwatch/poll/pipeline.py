"""Observations → (store, rules → events → outbox): the one place they meet."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import structlog

from followerwatch.alerts.outbox import Outbox
from followerwatch.clock import Clock
from followerwatch.disk.full import MemoryBuffer, out_of_space
from followerwatch.models import (
    Account,
    ByConfig,
    Event,
    Failure,
    FetchResult,
    Observation,
    Point,
)
from followerwatch.poll.batch import Prepared, Row, Waiting, batch_keys, failure_row
from followerwatch.poll.known import Known
from followerwatch.poll.repeats import repeats
from followerwatch.poll.rulesets import projects, reading_score, scorers
from followerwatch.poll.stats import PollStats
from followerwatch.poll.suspect import Screened, SuspectZeros
from followerwatch.poll.waiting import WaitingBatches
from followerwatch.rules.approaching import projection_points
from followerwatch.rules.base import Previous, Reading, Rule, Scored, longest_history
from followerwatch.state.base import StateBackend
from followerwatch.state.behind import news
from followerwatch.state.db import Change, LastSeen
from followerwatch.store.pollpoints import PollPoints
from followerwatch.store.thresholds import Lines, LineSchedule, ThresholdLines
from followerwatch.store.writer import Writer

log = structlog.get_logger("followerwatch.pipeline")


class Pipeline:
    """Applies rules against stored state, writes points, and hands events to the outbox."""

    def __init__(
        self,
        *,
        state: StateBackend,
        writer: Writer | None,
        outbox: Outbox | None,
        rules: Mapping[tuple[str, str], Sequence[Rule]],
        clock: Clock,
        route: Callable[[Event], Iterable[str]],
        repeat: Mapping[tuple[str, str], float] | None = None,
        dry_run: bool = False,
        zero_confirm: Mapping[str, float] | None = None,
        thresholds: ThresholdLines | Lines | None = None,
        buffer: MemoryBuffer | None = None,
        stats: PollStats | None = None,
        line_schedule: LineSchedule | None = None,
    ) -> None:
        self.state = state
        # What stored polls said, for /metrics to read when it is scraped.
        self.stats = stats or PollStats()
        # Batches the full disk kept from being committed, in order, with their retry task.
        self.waiting: WaitingBatches[Waiting] = WaitingBatches(
            buffer or MemoryBuffer(), self._ready, self._store_held, self._dropped
        )
        self.writer = writer
        self.outbox = outbox
        self.clock = clock
        self.route = route
        self.dry_run = dry_run
        # Suspect zeros held by an earlier run (a cron `poll`) are confirmed or dropped by this one.
        self.suspects = SuspectZeros(state.accounts.held_zeros(), zero_confirm)
        self._projection_points: list[Point] = []
        # The score of each observation (by its place in the batch) whose rules give one.
        self._scores: dict[int, float] = {}
        self._releasing: set[asyncio.Task[None]] = set()
        # Each account's threshold lines, for the dashboards: the distance to the nearest rides
        # on every count, the lines themselves only when `line_schedule` says. The holder is
        # shared with what draws and projects alerts, so they see reloaded lines too.
        self.line_schedule = line_schedule or LineSchedule()
        if isinstance(thresholds, ThresholdLines):
            self.thresholds = thresholds
        else:
            self.thresholds = ThresholdLines(thresholds)
        self.configure(rules, repeat or {}, self.thresholds.current())

    def configure(
        self,
        rules: Mapping[tuple[str, str], Sequence[Rule]],
        repeat: Mapping[tuple[str, str], float],
        thresholds: Lines,
        zero_confirm: Mapping[str, float] | None = None,
    ) -> None:
        """Take (new) rules, repeat intervals and threshold lines; rule state stays in SQLite."""
        if zero_confirm is not None:
            self.suspects.windows = zero_confirm
        self.rules = rules
        self.repeat = repeat
        self.line_schedule.changed(self.thresholds.current(), thresholds)
        self.thresholds.set(thresholds)
        # How much history each account's rules need, worked out once per configuration.
        # Only accounts that keep any: most keep none, and 100,000 zeros cost memory.
        # Views of the config's rule sets (one value per distinct set) when the config shares them.
        self._keep: Mapping[tuple[str, str], float]
        self._projecting: Container[tuple[str, str]]
        sets = rules.distinct() if isinstance(rules, ByConfig) else rules.values()
        # Rules whose state is a learned summary, written behind with the count (state/behind.py).
        self._soft = frozenset(r.name for rs in sets for r in rs if getattr(r, "soft_state", False))
        self._scored: Mapping[tuple[str, str], tuple[Scored, ...]]
        if isinstance(rules, ByConfig):
            self._keep = rules.derive(longest_history)
            self._projecting = rules.derive(projects)
            self._scored = rules.derive(scorers)
        else:
            self._keep = {key: keep for key, r in rules.items() if (keep := longest_history(r))}
            self._projecting = frozenset(key for key, r in rules.items() if projects(r))
            self._scored = {key: s for key, r in rules.items() if (s := scorers(r))}

    async def process(
        self,
        result: FetchResult,
        extra_points: Sequence[Point] = (),
        polled: Sequence[Account] = (),
    ) -> list[Row]:
        """Handle one batch end to end; `polled` lets rules see accounts that got no count."""
        keys = batch_keys(result, polled)
        # An earlier batch's commit of these accounts, if one is queued, lands first.
        await self.state.committer.settled(keys)
        if self.waiting.batches and not self.dry_run:
            # Batches wait for the disk: this one goes behind them, evaluated when its turn comes.
            return self._hold(Waiting(result, extra_points, polled, self.clock.now()))
        batch = self._prepare(result, extra_points, polled, keys)
        if self.dry_run:
            return batch.rows
        try:
            await self._store(batch)
        except (sqlite3.Error, OSError) as exc:
            if not out_of_space(exc):
                self._unscreen(batch)
                raise
            # Nothing of it is committed: kept, evaluated, for the retry to commit as it is.
            self.waiting.failed(exc)
            return self._hold(Waiting(result, extra_points, polled, self.clock.now(), batch))
        except Exception:
            self._unscreen(batch)
            raise
        self.waiting.recovered()  # a store went through: the disk takes writes again
        return batch.rows

    def _prepare(
        self,
        result: FetchResult,
        extra_points: Sequence[Point],
        polled: Sequence[Account],
        keys: Sequence[tuple[str, str]],
        polled_at: datetime | None = None,
    ) -> Prepared:
        """Screen and evaluate a batch against stored state (no await: nothing changes under it)."""
        # Every stored count, rule state and the history window rules need (for the accounts
        # that have any), read in a few queries up front.
        since = [
            o.time - timedelta(seconds=k)
            for o in result.observations
            if (k := self._keep.get(o.account.key))
        ]
        known = Known(self.state, keys, min(since) if since else None)
        self._projection_points = []
        self._scores = {}
        screened = self._screen(result.observations, known)
        observations = screened.observations
        held = [Row(*o.account.key, 0, None, suspect=True) for o in screened.suspect]
        changes, rows = self._evaluate(observations, known)
        changes += self._absent(polled, observations, result.failures, held, known, polled_at)
        rows += held + [failure_row(f) for f in result.failures]
        lines = self.thresholds.current()
        points = PollPoints(
            observations,
            lines,
            [*self._projection_points, *extra_points],
            self.line_schedule.due(lines, observations),
            self._scores,
        )
        return Prepared(changes, rows, points, screened)

    async def _store(self, batch: Prepared) -> None:
        """Commit a prepared batch, then spool its points and deliver; disk-full errors raise."""
        # Fsynced in the state's committer thread (grouped with other batches' commits); delivery
        # and the spool wait for it as before.
        await self.state.committer.commit_async(
            batch.changes,
            self.route,
            self._keep,
            held=batch.screened.held,
            released=batch.screened.released,
        )
        try:
            again = repeats(self.state.events, self.repeat, self.clock.now())
            self.state.events.add_events(again, self.route)
        except sqlite3.Error as exc:
            if not out_of_space(exc):
                raise
            # Not announced, so not marked as announced: the next poll repeats it.
            log.warning("disk full: a repeated alert waits for the next poll", error=str(exc))
        if self.writer is not None:
            self.stats.stored(batch.points)
            await self.writer.write(batch.points)  # holds its lines in memory on a full disk
        if self.outbox is not None:
            # Delivery has its own task (the outbox loop; a one-shot poll's last step): a receiver
            # that never answers must not hold up the next poll.
            self.outbox.kick()

    async def _ready(self, waiting: Waiting) -> Waiting:
        """A held batch, evaluated now if it was held unevaluated (its turn has come)."""
        if waiting.prepared is not None:
            return waiting
        result, polled = waiting.result, waiting.polled
        keys = batch_keys(result, polled)
        await self.state.committer.settled(keys)
        batch = self._prepare(result, waiting.extra_points, polled, keys, waiting.polled_at)
        return waiting._replace(prepared=batch)

    async def _store_held(self, waiting: Waiting) -> None:
        assert waiting.prepared is not None
        await self._store(waiting.prepared)

    def _hold(self, waiting: Waiting) -> list[Row]:
        """Keep a batch in memory for the disk, or past the bound drop it (counted); its rows."""
        obs = waiting.result.observations
        if self.waiting.hold(waiting, len(obs)):
            if waiting.prepared is not None:
                return waiting.prepared.rows
            note = "held in memory: disk full"
        else:
            if waiting.prepared is not None:
                self._unscreen(waiting.prepared)
            # Its points count as dropped in the spool's ledger.
            if self.writer is not None:
                self.writer.drop(PollPoints(obs, self.thresholds.current(), waiting.extra_points))
            note = "dropped: disk and memory buffer full"
        rows = [Row(*o.account.key, o.followers, None, failure=note) for o in obs]
        return rows + [failure_row(f) for f in waiting.result.failures]

    def _unscreen(self, batch: Prepared) -> None:
        """A batch is given up: its accounts' suspect zeros as the state DB has them, and its
        threshold lines due again."""
        self.line_schedule.forget(batch.points.due)
        screened = batch.screened
        keys = {(h.platform, h.account) for h in screened.held} | set(screened.released)
        if keys and not self.dry_run:
            self.suspects.reload(keys, self.state.accounts.held_zeros())

    def forget(self, watched: Collection[tuple[str, str]]) -> None:
        """Drop the suspect zeros of accounts no longer watched, in memory and on disk."""
        gone = self.suspects.forget(watched)
        if gone and not self.dry_run:
            task = asyncio.get_running_loop().create_task(self._release(gone))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release(self, keys: list[tuple[str, str]]) -> None:
        try:
            await self.state.committer.commit_async([], self.route, released=keys)
        except (sqlite3.Error, OSError) as exc:
            # Only their rows stay; memory no longer counts them, and a restart's reload drops them.
            log.warning("suspect zeros of removed accounts stay on disk", error=str(exc))

    def _dropped(self, waiting: Waiting) -> None:
        if waiting.prepared is not None:
            self._unscreen(waiting.prepared)

    def _screen(self, observations: Sequence[Observation], known: Known) -> Screened:
        """Hold falls to exactly 0 until they have lasted; a dry run holds nothing for good."""
        return self.suspects.screen(observations, known.last_seen, apply=not self.dry_run)

    def _evaluate(
        self, observations: Sequence[Observation], known: Known | None = None
    ) -> tuple[list[Change], list[Row]]:
        known = known or Known(self.state)
        changes: dict[tuple[str, str], Change] = {}
        # Each account's rule states as this batch has left them so far (Change holds only
        # the states that differ from the stored ones: unchanged states are not rewritten).
        current: dict[tuple[str, str], Mapping[str, str]] = {}
        rows: list[Row] = []
        scored = self._scored.get
        for i, obs in enumerate(observations):
            account = obs.account
            key = account.key
            prev = changes.get(key)
            last = prev.last if prev else known.last_seen(key)
            if last is not None and obs.time <= last.time:
                # Already seen (a replayed or repeated reading): store it, never re-alert on it.
                rows.append(Row(key[0], key[1], obs.followers, 0))
                continue
            states = current[key] if prev else known.rule_states(key)
            batch = prev.history if prev else ()
            history = self._history(key, obs, batch, known) if self._keep.get(key) else ()
            reading = Reading(account, obs.time, obs, None, _previous(last), history)
            changed, events, closed = self._run_rules(key, reading, states, first=last is None)
            if key in self._projecting:
                self._projection_points += projection_points(self.rules.get(key, ()), reading)
            if changed:
                states = {**states, **changed}
            current[key] = states
            if (rules := scored(key)) and (score := reading_score(rules, states)) is not None:
                self._scores[i] = score
            seen = LastSeen(obs.followers, obs.time, obs.platform_id, obs.handle)
            journal = news(seen, last)  # committed with the poll, never written behind
            soft = not events and not closed and changed.keys() <= self._soft
            if prev:
                changes[key] = Change(
                    key[0],
                    key[1],
                    seen,
                    {**prev.rule_states, **changed},
                    (*prev.events, *events),
                    (*prev.closed, *closed),
                    (*batch, (obs.time, obs.followers)),
                    prev.journal or journal,
                    prev.soft and soft,
                )
            else:
                changes[key] = Change(
                    key[0],
                    key[1],
                    seen,
                    changed,
                    tuple(events),
                    closed,
                    ((obs.time, obs.followers),),
                    journal,
                    soft,
                )
            change = obs.followers - last.followers if last else None
            rows.append(Row(key[0], key[1], obs.followers, change, tuple(events)))
        return list(changes.values()), rows

    def _history(
        self,
        key: tuple[str, str],
        obs: Observation,
        batch: Sequence[tuple[datetime, int]],
        known: Known,
    ) -> tuple[tuple[datetime, int], ...]:
        """Stored readings within the rules' longest window, plus this batch's uncommitted ones."""
        keep = self._keep.get(key, 0.0)
        if not keep:
            return ()
        since = obs.time - timedelta(seconds=keep)
        return (*known.history(key, since), *[r for r in batch if r[0] >= since])

    def _absent(
        self,
        polled: Sequence[Account],
        observations: Sequence[Observation],
        failures: Sequence[Failure],
        held: Sequence[Row],
        known: Known | None = None,
        now: datetime | None = None,
    ) -> list[Change]:
        """Rules for accounts this poll gave no count for (stale, lifecycle)."""
        known = known or Known(self.state)
        seen = {o.account.key for o in observations} | {(r.platform, r.account) for r in held}
        failed = {f.account.key: f for f in failures}
        accounts = {a.key: a for a in polled} | {f.account.key: f.account for f in failures}
        now = now or self.clock.now()  # a batch held for the disk: when it was polled
        changes = []
        for key, account in accounts.items():
            if key in seen:
                continue
            failure = failed.get(key)
            last = known.last_seen(key)
            reading = Reading(
                account, now, None, failure.kind if failure else None, _previous(last)
            )
            states, events, closed = self._run_rules(
                key, reading, known.rule_states(key), first=False
            )
            changes.append(Change(key[0], key[1], None, states, tuple(events), closed))
        return changes

    def _run_rules(
        self, key: tuple[str, str], reading: Reading, states: Mapping[str, str], *, first: bool
    ) -> tuple[dict[str, str], list[Event], tuple[str, ...]]:
        """The states that changed, events, and the rules whose open condition just closed."""
        changed: dict[str, str] = {}
        events: list[Event] = []
        closed: list[str] = []
        for rule in self.rules.get(key, ()):
            name = rule.name
            stored = states.get(name)
            # A rule with no stored state treats this as the account's first reading.
            old = None if first else stored
            state, fired = rule.evaluate(old, reading)
            if state is not None and state != stored:
                changed[name] = state
                if rule.active(old) and not rule.active(state):
                    closed.append(name)
            if fired:
                events += fired
        return changed, events, tuple(closed)


def _previous(last: LastSeen | None) -> Previous | None:
    return None if last is None else Previous(last.followers, last.time, last.handle)
