"""Last counts written behind: kept in memory, flushed in one transaction every few seconds.

Most polls change nothing but an account's last count (a steady count under its threshold).
Upserting that row in every poll's own transaction rewrote the same b-tree pages many times per
cycle; here such counts wait in a bounded map (flushed at FLUSH_ROWS entries, FLUSH_SECONDS
after the first one, and at close), so many polls' upserts share one transaction.

Why a SIGKILL that loses unflushed counts repeats no alert and misses none:

- Only a Change with nothing else in it is written behind. Everything a restart needs is in
  the poll's own, fsynced commit, awaited before that account's next reading is evaluated: rule
  states that changed (re-arms, `for` streaks), events with the state that produced them,
  closed conditions, held or released suspect zeros, history rows of accounts whose rules keep
  history, and an account's first count and any new handle or platform id (`Change.journal`).
  Such a commit carries the account's newest count too (its own, or the one waiting here), so
  rule state is never on disk without a count at least as new as the state's.
- So a lost count belongs to a poll whose evaluation changed nothing durable: same rule states
  before and after, no event, same identity. On disk, after the kill, the account looks exactly
  as if those polls had returned no count at all (a missed poll, which the rules already
  handle). Rule state is the state those polls left, since they left it as it was.
- No repeat: an alert fires from a state change, and every state change is durable before the
  next reading is evaluated; a reading evaluated again (its count was lost) starts from the same
  state and, with event ids derived from the reading, mints no new alert.
- Rule states written behind are learned summaries (`Change.soft`: the unusual rule's), never a
  condition: a state that opens or closes one comes with its event or closed condition and is
  journaled. Such a rule measures each reading from the anchor in its own state, so a lost
  summary update is, to it, a poll that did not happen: the next reading is measured from the
  older anchor over the longer time, as after a gap.
- No miss: the next reading after the restart is evaluated against the last durable state,
  which is the state at the kill; a crossing it makes fires then. What rules read of the last
  count is its handle (a rename: a new handle is journaled, never written behind), its time
  (`stale` measures age from an older poll, as after a missed poll) and its count (messages,
  and the suspect-zero screen, which then screens against an older count, as after a missed
  poll).
"""

from __future__ import annotations

from collections.abc import Iterable

from followerwatch.state.values import LastSeen

# Flush when this many accounts wait (about 100 bytes each) ...
FLUSH_ROWS = 20_000
# ... and at the latest this long after the first one started waiting (seconds).
FLUSH_SECONDS = 2.0

Key = tuple[str, str]


class WriteBehind:
    """Counts not yet in the file (`dirty`), and those in the flush under way (`flushing`).

    Only the event loop's thread touches it: reads of last counts lay it over SQLite's rows.
    """

    def __init__(self, rows: int = FLUSH_ROWS, seconds: float = FLUSH_SECONDS) -> None:
        """Flush at `rows` waiting counts, or `seconds` after the first one came."""
        self.rows = rows
        self.seconds = seconds
        self.dirty: dict[Key, LastSeen] = {}
        self.flushing: dict[Key, LastSeen] = {}
        # Soft rule states (learned summaries) of some of those accounts, by rule name.
        self.states: dict[Key, dict[str, str]] = {}
        self.states_flushing: dict[Key, dict[str, str]] = {}
        self.flushes = 0  # flushes that landed

    def __len__(self) -> int:
        return len(self.dirty) + len(self.flushing)

    def put(self, key: Key, seen: LastSeen, states: dict[str, str] | None = None) -> None:
        """An account's newest count, and any soft rule states, to be written later."""
        if states:
            old_states = self.states.get(key)
            self.states[key] = {**old_states, **states} if old_states else states
        if seen.platform_id is None or seen.handle is None:
            # The upsert keeps a known id or handle when a reading has none: so does memory.
            old = self.dirty.get(key) or self.flushing.get(key)
            if old is not None:
                seen = _merged(seen, old)
        self.dirty[key] = seen

    def pop_states(self, key: Key) -> dict[str, str] | None:
        """Take an account's waiting soft rule states (a journaled commit now carries them)."""
        if not self.states and not self.states_flushing:
            return None
        newer = self.states.pop(key, None)
        older = self.states_flushing.pop(key, None)
        if newer is None:
            return older
        return newer if older is None else {**older, **newer}

    def states_over(self, key: Key, stored: dict[str, str]) -> dict[str, str]:
        """An account's stored rule states with its waiting soft ones laid over them."""
        older = self.states_flushing.get(key)
        newer = self.states.get(key)
        if older is None and newer is None:
            return stored
        return {**stored, **(older or {}), **(newer or {})}

    def overlay_states(self, out: dict[Key, dict[str, str]], keys: Iterable[Key]) -> None:
        """Lay the waiting soft rule states over `out` (SQLite's rows of `keys`), in place."""
        if not self.states and not self.states_flushing:
            return
        for key in keys:
            merged = self.states_over(key, out.get(key, {}))
            if merged:
                out[key] = merged

    def pop(self, key: Key) -> LastSeen | None:
        """Take an account's waiting count (a journaled commit now carries it), if any."""
        seen = self.dirty.pop(key, None)
        older = self.flushing.pop(key, None)
        if seen is None:
            return older
        return seen if older is None else _merged(seen, older)

    def get(self, key: Key) -> LastSeen | None:
        """The waiting count of an account, if any."""
        return self.dirty.get(key) or self.flushing.get(key)

    def over(self, key: Key, stored: LastSeen | None) -> LastSeen | None:
        """What SQLite says of an account (`stored`), with its waiting count laid over it."""
        seen = self.dirty.get(key) or self.flushing.get(key)
        if seen is None:
            return stored
        return seen if stored is None else _merged(seen, stored)

    def overlay(self, out: dict[Key, LastSeen], keys: Iterable[Key]) -> None:
        """Lay the waiting counts over `out` (SQLite's rows of `keys`), in place."""
        if not self.dirty and not self.flushing:
            return
        for key in keys:
            seen = self.dirty.get(key) or self.flushing.get(key)
            if seen is not None:
                stored = out.get(key)
                out[key] = seen if stored is None else _merged(seen, stored)

    def due(self) -> bool:
        """Whether enough counts wait to flush now (none is being flushed)."""
        return not self.flushing and len(self.dirty) >= self.rows

    def take(self) -> list[tuple[Key, LastSeen]]:
        """Start a flush: what waits moves to `flushing` (still read) and is returned."""
        assert not self.flushing, "one flush at a time"
        self.flushing, self.dirty = self.dirty, {}
        self.states_flushing, self.states = self.states, {}
        return list(self.flushing.items())

    def drain(self) -> list[tuple[Key, LastSeen]]:
        """Everything not yet in a flush, taken out (the last flush, at close)."""
        out, self.dirty = list(self.dirty.items()), {}
        self.states_flushing, self.states = {**self.states_flushing, **self.states}, {}
        return out

    def landed(self, ok: bool) -> None:
        """The flush is committed (`ok`), or failed: its counts wait again unless newer ones do."""
        if ok:
            self.flushes += 1
        else:
            for key, seen in self.flushing.items():
                if key not in self.dirty:
                    self.dirty[key] = seen
            for key, states in self.states_flushing.items():
                self.states[key] = {**states, **self.states.get(key, {})}
        self.flushing = {}
        self.states_flushing = {}


def news(seen: LastSeen, last: LastSeen | None) -> bool:
    """Whether a count is an account's first, or brings a new handle or platform id.

    Such a count is journaled with its poll: rename alerts and first-reading logic read them.
    """
    return (
        last is None
        or (seen.handle is not None and seen.handle != last.handle)
        or (seen.platform_id is not None and seen.platform_id != last.platform_id)
    )


def _merged(seen: LastSeen, older: LastSeen) -> LastSeen:
    """`seen`, with `older`'s id and handle where it has none (as the upsert's COALESCE)."""
    if seen.platform_id is not None and seen.handle is not None:
        return seen
    return LastSeen(
        seen.followers,
        seen.time,
        older.platform_id if seen.platform_id is None else seen.platform_id,
        older.handle if seen.handle is None else seen.handle,
    )
