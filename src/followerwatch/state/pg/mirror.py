"""The rule state and last counts of the shards a replica holds, in memory (PostgreSQL's copy).

Polls read only this mirror, so a PostgreSQL outage does not stop them: a commit is applied here
at once and written to PostgreSQL behind (state/pg/committer.py). A replica loads a shard when it
takes the shard's lease and drops it when the lease goes. Reads answer exactly as SQLite's
Accounts and RuleStates do (state/accounts.py, rules.py); `Rows` is what a Commit writes,
worked out once for both the mirror and PostgreSQL, in SQLite's order (state/writes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from followerwatch.models import EventStatus
from followerwatch.state.rows import by_platform
from followerwatch.state.values import SUMMARY_RULE, HeldZero, LastSeen
from followerwatch.state.writes import Commit

Key = tuple[str, str]


class Active(NamedTuple):
    """An open condition: the event that opened it and when it was last sent (epoch seconds)."""

    platform: str
    account: str
    rule: str
    event_id: str
    last_sent: float


class Rows(NamedTuple):
    """What one commit writes, table by table, in the order SQLite's commit writes it."""

    # Last counts with the summary that rides in the same row (None: keep the stored one).
    counts: list[tuple[Key, LastSeen, str | None]]
    # Rule-state rows; a SUMMARY_RULE one also sets the summary of an existing account row.
    states: list[tuple[Key, str, str]]
    # History points to keep, and per account the time before which its points go.
    history: list[tuple[Key, float, int]]
    cutoffs: list[tuple[Key, float]]
    closed: list[tuple[Key, str]]
    released: list[Key]
    held: list[HeldZero]
    # Events' effect on open conditions, in event order: opened (an Active) or resolved (None).
    conditions: list[tuple[Key, str, Active | None]]
    # Open conditions announced again: (key, rule, when), after everything else.
    touched: list[tuple[Key, str, float]]

    def keys(self) -> set[Key]:
        """Every account the commit touches."""
        out = {k for k, _, _ in self.counts} | {k for k, _, _ in self.states}
        out |= {k for k, _ in self.closed} | set(self.released)
        out |= {(h.platform, h.account) for h in self.held}
        out |= {k for k, _, _ in self.conditions} | {k for k, _, _ in self.touched}
        return out


def rows_of(commit: Commit) -> Rows:
    """The rows a commit writes (state/writes.py write_commit, table by table)."""
    rows = Rows([], [], [], [], [], list(commit.released), list(commit.held), [], [])
    keep = commit.keep or {}
    # Counts written behind first, then the poll's own: per key the newer one lands last.
    batches: list[tuple[list[tuple[Key, LastSeen]], list[tuple[Key, str, str]]]] = [
        (
            list(commit.counts),
            [(k, r, t) for k, rules in (commit.states or {}).items() for r, t in rules.items()],
        ),
        (
            [((ch.platform, ch.account), ch.last) for ch in commit.changes if ch.last],
            [
                ((ch.platform, ch.account), r, t)
                for ch in commit.changes
                for r, t in ch.rule_states.items()
            ],
        ),
    ]
    for counts, states in batches:
        counted = {key for key, _ in counts}
        summaries = {}
        for key, rule, text in states:
            if rule == SUMMARY_RULE and key in counted:
                summaries[key] = text
            else:
                rows.states.append((key, rule, text))
        rows.counts.extend((key, seen, summaries.get(key)) for key, seen in counts)
    for ch in commit.changes:
        key = (ch.platform, ch.account)
        seconds = keep.get(key, 0.0)
        if seconds > 0:
            rows.history.extend((key, when.timestamp(), n) for when, n in ch.history)
            if ch.last:
                rows.cutoffs.append((key, ch.last.time.timestamp() - seconds))
        rows.closed.extend((key, rule) for rule in ch.closed)
    for ev, _ in commit.routes:
        key = (ev.platform, ev.account)
        if ev.status == EventStatus.FIRING:
            opened = Active(*key, ev.rule, ev.id, ev.time.timestamp())
            rows.conditions.append((key, ev.rule, opened))
        elif ev.status == EventStatus.RESOLVED:
            rows.conditions.append((key, ev.rule, None))
    return rows


class ShardMirror:
    """Rule states, last counts, history, open conditions and held zeros of the held shards.

    Touched only by the caller's thread (the event loop): the committer's thread reads none of it.
    """

    def __init__(self) -> None:
        """An empty mirror: no shard loaded."""
        self._last: dict[Key, LastSeen] = {}
        self._summary: dict[Key, str] = {}  # accounts.summary
        self._states: dict[Key, dict[str, str]] = {}  # rule_state rows
        self._history: dict[Key, list[tuple[float, int]]] = {}  # oldest first
        self._active: dict[Key, dict[str, Active]] = {}
        self._held: dict[Key, dict[datetime, HeldZero]] = {}
        self._shard_keys: dict[int, set[Key]] = {}

    @property
    def shards(self) -> frozenset[int]:
        """The shards loaded."""
        return frozenset(self._shard_keys)

    def load(self, conn: Any, shard: int) -> None:
        """Read one shard's rows from PostgreSQL, replacing memory's (`conn`: psycopg, idle)."""
        q = "WHERE shard = %s"
        with conn.transaction():
            # One snapshot for the five reads: a commit landing between them is seen whole.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            accounts = conn.execute(
                f"SELECT platform, account, followers, time, platform_id, handle, summary"
                f" FROM accounts {q}",
                (shard,),
            ).fetchall()
            states = conn.execute(
                f"SELECT platform, account, rule, state FROM rule_state {q}", (shard,)
            ).fetchall()
            history = conn.execute(
                f"SELECT platform, account, time, followers FROM history {q}"
                " ORDER BY platform, account, time",
                (shard,),
            ).fetchall()
            active = conn.execute(
                f"SELECT platform, account, rule, event_id, last_sent FROM active {q}", (shard,)
            ).fetchall()
            held = conn.execute(
                "SELECT platform, account, time, following, posts, platform_id, handle,"
                f" resolution FROM suspect_zeros {q}",
                (shard,),
            ).fetchall()
        self.drop(shard)
        keys = self._shard_keys[shard] = set()
        for platform, account, followers, time, pid, handle, summary in accounts:
            key = (platform, account)
            keys.add(key)
            self._last[key] = LastSeen(followers, time.astimezone(UTC), pid, handle)
            if summary is not None:
                self._summary[key] = bytes(summary).decode()
        for platform, account, rule, state in states:
            keys.add((platform, account))
            self._states.setdefault((platform, account), {})[rule] = bytes(state).decode()
        for platform, account, t, n in history:
            keys.add((platform, account))
            self._history.setdefault((platform, account), []).append((t, n))
        for row in active:
            keys.add((row[0], row[1]))
            self._active.setdefault((row[0], row[1]), {})[row[2]] = Active(*row)
        for row in held:
            h = HeldZero(row[0], row[1], row[2].astimezone(UTC), *row[3:])
            keys.add((h.platform, h.account))
            self._held.setdefault((h.platform, h.account), {})[h.time] = h

    def drop(self, shard: int) -> None:
        """Forget a shard (its lease is gone)."""
        for key in self._shard_keys.pop(shard, ()):
            for table in (self._last, self._summary, self._states, self._history):
                table.pop(key, None)
            self._active.pop(key, None)
            self._held.pop(key, None)

    def apply(self, shard: int, rows: Rows) -> None:
        """A commit's rows, as SQLite's statements would leave its tables."""
        self._shard_keys.setdefault(shard, set()).update(rows.keys())
        for key, seen, summary in rows.counts:
            old = self._last.get(key)
            if old is not None and (seen.platform_id is None or seen.handle is None):
                # The upsert's COALESCE: what a reading lacks keeps the stored one.
                seen = LastSeen(
                    seen.followers,
                    seen.time,
                    old.platform_id if seen.platform_id is None else seen.platform_id,
                    old.handle if seen.handle is None else seen.handle,
                )
            self._last[key] = seen
            if summary is not None:
                self._summary[key] = summary
        for key, rule, text in rows.states:
            self._states.setdefault(key, {})[rule] = text
            if rule == SUMMARY_RULE and key in self._last:
                self._summary[key] = text
        for key, t, n in rows.history:
            points = [p for p in self._history.get(key, ()) if p[0] != t]
            points.append((t, n))
            points.sort()
            self._history[key] = points
        for key, before in rows.cutoffs:
            if key in self._history:
                self._history[key] = [p for p in self._history[key] if p[0] >= before]
        for key, rule in rows.closed:
            self._active.get(key, {}).pop(rule, None)
        for key in rows.released:
            self._held.pop(key, None)
        for h in rows.held:
            self._held.setdefault((h.platform, h.account), {})[h.time] = h
        for key, rule, act in rows.conditions:
            if act is None:
                self._active.get(key, {}).pop(rule, None)
                continue
            rules = self._active.setdefault(key, {})
            old_act = rules.get(rule)
            # An event stored before does not reopen its condition (SQLite's INSERT OR IGNORE).
            if old_act is None or old_act.event_id != act.event_id:
                rules[rule] = act
        for key, rule, sent in rows.touched:
            self.touch_active(key, rule, sent)

    def last_seen(self, platform: str, account: str) -> LastSeen | None:
        """The last stored count of an account, if any."""
        return self._last.get((platform, account))

    def platform_ids_of(self, platform: str, accounts: Iterable[str]) -> dict[str, str]:
        """The stable platform ids learnt for these accounts of a platform, by account name."""
        out = {}
        for name in accounts:
            seen = self._last.get((platform, name))
            if seen is not None and seen.platform_id is not None:
                out[name] = seen.platform_id
        return out

    def last_seen_many(
        self, keys: Iterable[Key], summaries: dict[Key, str] | None = None
    ) -> dict[Key, LastSeen]:
        """`last_seen` of many keys (absent ones left out); their summaries into `summaries`."""
        out: dict[Key, LastSeen] = {}
        last, summary = self._last, self._summary
        for key in keys:
            seen = last.get(key)
            if seen is not None:
                out[key] = seen
                if summaries is not None and key in summary:
                    summaries[key] = summary[key]
        return out

    def history(self, platform: str, account: str, since: datetime) -> list[tuple[datetime, int]]:
        """Stored counts of an account from `since` on, oldest first."""
        start = since.timestamp()
        return [
            (datetime.fromtimestamp(t, UTC), n)
            for t, n in self._history.get((platform, account), ())
            if t >= start
        ]

    def history_many(
        self, keys: Iterable[Key], since: datetime
    ) -> dict[Key, list[tuple[float, int]]]:
        """Stored (epoch seconds, count) of many accounts from `since` on, oldest first."""
        start = since.timestamp()
        out: dict[Key, list[tuple[float, int]]] = {}
        for platform, names in by_platform(keys).items():
            for name in names:
                points = [p for p in self._history.get((platform, name), ()) if p[0] >= start]
                if points:
                    out[(platform, name)] = points
        return out

    def held_zeros(self) -> dict[Key, list[HeldZero]]:
        """Every reading of 0 held as suspect, by account, oldest first."""
        return {
            key: sorted(readings.values(), key=lambda h: h.time)
            for key, readings in self._held.items()
            if readings
        }

    def rule_states(self, platform: str, account: str) -> dict[str, str]:
        """Serialised rule states of an account, by rule name."""
        return self.rule_states_many([(platform, account)]).get((platform, account), {})

    def rule_states_many(
        self, keys: Iterable[Key], summaries: Mapping[Key, str] | None = None
    ) -> dict[Key, dict[str, str]]:
        """`rule_states` of many keys; the account row's summary wins over a rule_state one.

        `summaries`: the keys' summaries, already read with their rows (`last_seen_many`).
        """
        out: dict[Key, dict[str, str]] = {}
        wanted = list(dict.fromkeys(keys))
        for key in wanted:
            states = self._states.get(key)
            if states:
                out[key] = dict(states)
        found: Iterable[tuple[Key, str]]
        if summaries is None:
            found = [(key, self._summary[key]) for key in wanted if key in self._summary]
        else:
            found = summaries.items()
        for key, text in found:
            out.setdefault(key, {})[SUMMARY_RULE] = text
        return out

    def active(self) -> list[Active]:
        """Open conditions of the held shards."""
        return [act for rules in self._active.values() for act in rules.values()]

    def touch_active(self, key: Key, rule: str, sent: float) -> Active | None:
        """Record in memory that an open condition was sent again; the row, if open."""
        act = self._active.get(key, {}).get(rule)
        if act is None:
            return None
        act = self._active[key][rule] = act._replace(last_sent=sent)
        return act


def split_commit(commit: Commit, shard_of: Callable[[Key], int]) -> dict[int, Commit]:
    """A commit cut into one per shard (`shard_of(key) -> int`), each keeping its order."""
    parts: dict[int, dict[str, Any]] = {}

    def part(key: Key) -> dict[str, Any]:
        shard = shard_of(key)
        got = parts.get(shard)
        if got is None:
            got = parts[shard] = {
                "changes": [],
                "routes": [],
                "held": [],
                "released": [],
                "counts": [],
                "states": {},
            }
        return got

    for ch in commit.changes:
        part((ch.platform, ch.account))["changes"].append(ch)
    for ev, names in commit.routes:
        part((ev.platform, ev.account))["routes"].append((ev, names))
    for h in commit.held:
        part((h.platform, h.account))["held"].append(h)
    for key in commit.released:
        part(key)["released"].append(key)
    for key, seen in commit.counts:
        part(key)["counts"].append((key, seen))
    for key, rules in (commit.states or {}).items():
        part(key)["states"][key] = rules
    return {
        shard: Commit(
            p["changes"],
            p["routes"],
            commit.keep,
            p["held"],
            p["released"],
            p["counts"],
            p["states"] or None,
        )
        for shard, p in parts.items()
    }
