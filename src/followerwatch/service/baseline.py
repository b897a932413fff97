"""The unusual rule's baseline from InfluxDB: learned from the stored counts at start-up (for the
accounts without one) and after `followerwatch import` (for the accounts imported into).

Counts are read over /query, one InfluxQL query per chunk of one platform's accounts, so memory
stays bounded by a chunk whatever the watchlist's size. Each summary is written through the
state's committer, ordered with the polls' commits: a live poll of the account in the meantime
is read back first, and `seeded` keeps its newer anchor.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import structlog

from followerwatch.clock import Clock
from followerwatch.errors import StoreError
from followerwatch.models import ByConfig, Event
from followerwatch.rules.base import Rule
from followerwatch.rules.unusual import unpack
from followerwatch.state.base import StateBackend
from followerwatch.state.db import Change
from followerwatch.store.influx_v1 import quote_literal

log = structlog.get_logger("followerwatch.baseline")

Key = tuple[str, str]
Readings = list[tuple[datetime, int]]

WINDOW = timedelta(days=21)
CHUNK = 100  # accounts per query


class Seedable(Protocol):
    """A rule whose state can be learned from stored counts (the unusual rule)."""

    @property
    def name(self) -> str: ...

    def seeded(
        self, state: str | None, readings: Sequence[tuple[datetime, int]], resolution: int = 1
    ) -> str | None: ...


class Reader(Protocol):
    """What seeding needs of InfluxDB: InfluxQL queries (InfluxV1Store has them)."""

    async def query(self, influxql: str, *, epoch: str | None = "s") -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Seeded:
    """What a seeding pass did."""

    accounts: int  # accounts it looked at
    refreshed: int  # summaries it learned (stored unless the stored one was the same)
    without_history: int  # accounts InfluxDB had no counts of (or whose name it cannot query)
    problem: str | None = None  # why it stopped early (InfluxDB or the state file), if it did


def seedable(rules: Sequence[Rule]) -> tuple[Seedable, ...]:
    """The rules of an account that learn from stored counts."""
    return tuple(cast(Seedable, r) for r in rules if callable(getattr(r, "seeded", None)))


def seedable_rules(rules: Mapping[Key, Sequence[Rule]]) -> Mapping[Key, tuple[Seedable, ...]]:
    """Each account's seedable rules, for the accounts that have any (a view when shared)."""
    if isinstance(rules, ByConfig):
        return rules.derive(seedable)
    return {key: found for key, r in rules.items() if (found := seedable(r))}


def _stamp(when: datetime) -> str:
    return quote_literal(when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def counts_query(platform: str, accounts: Sequence[str], since: datetime) -> str:
    """ONE InfluxQL query: the hourly counts (and rounding steps) of one platform's accounts.

    Hourly, whatever the polling interval: 504 points an account, and the summary's typical
    interval starts at an hour, so live readings closer together count less until it is relearned.
    """
    names = " OR ".join(f'"account" = {quote_literal(a)}' for a in accounts)
    return (
        'SELECT last("followers") AS "followers", max("resolution") AS "resolution"'
        f' FROM "followers" WHERE "platform" = {quote_literal(platform)} AND ({names})'
        f" AND time >= {_stamp(since)} AND time <= now()"
        ' GROUP BY time(1h), "account" fill(none)'
    )


def _quotable(name: str) -> bool:
    try:
        quote_literal(name)
    except ValueError:
        return False
    return True


def parse_counts(series: Iterable[Mapping[str, Any]]) -> dict[str, tuple[Readings, int]]:
    """Account → (its counts oldest first, its largest rounding step or 1)."""
    out: dict[str, tuple[Readings, int]] = {}
    for item in series:
        account = item["tags"].get("account")
        if account is None:
            continue
        columns = item["columns"]
        if "followers" not in columns:
            continue
        at_f = columns.index("followers")
        # No stored point of the query's accounts has a rounding step: no such column.
        at_r = columns.index("resolution") if "resolution" in columns else None
        rows = [
            (int(row[0]), int(row[at_f]), None if at_r is None else row[at_r])
            for row in item["values"]
            if row[at_f] is not None
        ]
        readings, step = out.get(account, ([], 1))
        readings += [(datetime.fromtimestamp(t, UTC), n) for t, n, _ in rows]
        step = max([step, *(int(r) for _, _, r in rows if r is not None)])
        out[account] = (readings, step)
    for account, (readings, step) in out.items():
        readings.sort()  # one series per label set: merged, in time order
        out[account] = (readings, step)
    return out


def _chunks(keys: Iterable[Key], n: int) -> Iterator[tuple[str, list[str]]]:
    """Each platform's accounts in chunks of `n` (at most 504 hourly points each)."""
    by_platform: dict[str, list[str]] = {}
    for platform, account in dict.fromkeys(keys):
        by_platform.setdefault(platform, []).append(account)
    for platform, accounts in by_platform.items():
        for i in range(0, len(accounts), n):
            yield platform, accounts[i : i + n]


def _learning(state: str | None) -> bool:
    summary = unpack(state)
    return summary is None or not summary.ready()


def _no_route(event: Event) -> tuple[str, ...]:
    return ()  # seeding raises no event


class Seeder:
    """Learns the baselines of accounts from InfluxDB and writes them to the state database."""

    def __init__(
        self,
        state: StateBackend,
        reader: Reader,
        rules: Mapping[Key, Sequence[Seedable]],
        clock: Clock,
        chunk: int = CHUNK,
    ) -> None:
        self._state = state
        self._reader = reader
        self._rules = rules
        self._clock = clock
        self._chunk = chunk

    async def seed(self, keys: Iterable[Key], *, only_missing: bool) -> Seeded:
        """Seed `keys` (those with a seedable rule); with `only_missing`, only unusable states.

        A failing InfluxDB or state file stops the pass (its `problem`); nothing raises.
        """
        since = self._clock.now() - WINDOW
        looked = refreshed = empty = 0
        wanted = (k for k in keys if self._rules.get(k))
        try:
            for platform, accounts in _chunks(wanted, self._chunk):
                asked = [(platform, a) for a in accounts]
                before = self._state.rules.rule_states_many(asked)
                if only_missing:
                    asked = [k for k in asked if self._missing(k, before.get(k, {}))]
                looked += len(asked)
                # A name with a control character cannot be written in InfluxQL: it is left to
                # learn from polls.
                keys_now = [k for k in asked if _quotable(k[1])]
                empty += len(asked) - len(keys_now)
                if not keys_now:
                    continue
                series = await self._reader.query(
                    counts_query(platform, [a for _, a in keys_now], since), epoch="s"
                )
                found = parse_counts(series)
                empty += sum(1 for _, a in keys_now if not found.get(a, ([], 1))[0])
                refreshed += await self._write(platform, found, before)
        except StoreError as exc:
            return Seeded(looked, refreshed, empty, f"InfluxDB: {exc}")
        except (sqlite3.Error, OSError) as exc:
            return Seeded(looked, refreshed, empty, f"state file: {exc}")
        return Seeded(looked, refreshed, empty)

    def _learn(
        self, key: Key, states: Mapping[str, str], readings: Readings, step: int
    ) -> dict[str, str | None]:
        return {r.name: r.seeded(states.get(r.name), readings, step) for r in self._rules[key]}

    def _missing(self, key: Key, states: Mapping[str, str]) -> bool:
        # Still learning counts as missing: a poll may have started a summary before this pass
        # reached the account, and `seeded` keeps that summary's newer anchor.
        return any(_learning(states.get(r.name)) for r in self._rules.get(key, ()))

    async def _write(
        self,
        platform: str,
        found: Mapping[str, tuple[Readings, int]],
        before: Mapping[Key, Mapping[str, str]],
    ) -> int:
        """Learn each account's summaries and store those that changed; how many were learned."""
        learned: dict[Key, dict[str, str | None]] = {}
        for account, (readings, step) in found.items():
            if not readings:
                continue
            key = (platform, account)
            # Pure CPU (about 1 ms for 21 days of hourly counts):
            # in a worker thread, one account at a time, so polls never wait behind it.
            learned[key] = await asyncio.to_thread(
                self._learn, key, before.get(key, {}), readings, step
            )
        if not learned:
            return 0
        # A poll of these accounts may have committed since: wait for it, read again, and from
        # here to the enqueue nothing awaits, so no poll reads the state in between.
        await self._state.committer.settled(learned)
        current = self._state.rules.rule_states_many(learned)
        changes, refreshed = [], 0
        for key, seeded in learned.items():
            old, now = before.get(key, {}), current.get(key, {})
            states: dict[str, str] = {}
            for rule in self._rules[key]:
                new = seeded[rule.name]
                if now.get(rule.name) != old.get(rule.name):
                    readings, step = found[key[1]]
                    new = rule.seeded(now.get(rule.name), readings, step)
                if new is not None and new != now.get(rule.name):
                    states[rule.name] = new
                refreshed += new is not None
            if states:
                changes.append(Change(key[0], key[1], None, states, ()))
        if changes:
            await self._state.committer.commit_async(changes, _no_route)
        return refreshed


async def seed_at_start(seeder: Seeder, keys: Sequence[Key]) -> Seeded:
    """The start-up pass: accounts whose summary is missing or unreadable; logged, never raises."""
    start = time.monotonic()
    log.info("learning unusual baselines from InfluxDB", accounts=len(keys))
    try:
        done = await seeder.seed(keys, only_missing=True)
    except Exception:
        # Best effort: the rule learns from polls all the same.
        log.exception("learning unusual baselines failed")
        return Seeded(len(keys), 0, 0, "failed")
    fields = {
        "missing": done.accounts,
        "refreshed": done.refreshed,
        "without_history": done.without_history,
        "seconds": round(time.monotonic() - start, 1),
    }
    if done.problem is not None:
        log.warning(
            "stopped learning unusual baselines; the rule learns from polls instead",
            error=done.problem,
            **fields,
        )
    else:
        log.info("learned unusual baselines", **fields)
    return done


async def refresh_imported(
    state: StateBackend,
    reader: Reader,
    rules: Mapping[Key, Sequence[Rule]],
    keys: Iterable[Key],
    clock: Clock,
    chunk: int = CHUNK,
) -> Seeded:
    """After an import: relearn the baseline of every imported account with a seedable rule."""
    seedables = seedable_rules(rules)
    wanted = [k for k in keys if k in seedables]
    return await Seeder(state, reader, seedables, clock, chunk).seed(wanted, only_missing=False)
