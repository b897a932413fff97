"""What a batch reads of the stored state, prefetched in a few queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType

from followerwatch.state.base import StateBackend
from followerwatch.state.db import LastSeen


class Known:
    """Stored counts and rule states, prefetched for a batch's keys (else read one by one)."""

    def __init__(
        self,
        state: StateBackend,
        keys: Iterable[tuple[str, str]] | None = None,
        history_since: datetime | None = None,
    ) -> None:
        self._state = state
        self._keys: frozenset[tuple[str, str]] = frozenset(keys or ())
        # Summaries are read with the counts, from the same rows.
        summaries: dict[tuple[str, str], str] = {}
        self._last = state.accounts.last_seen_many(self._keys, summaries) if self._keys else {}
        self._states = state.rules.rule_states_many(self._keys, summaries) if self._keys else {}
        # Every stored reading from the earliest window start on (None: read per account).
        self._since = history_since
        self._history = (
            state.accounts.history_many(self._keys, history_since)
            if history_since is not None
            else {}
        )

    def history(self, key: tuple[str, str], since: datetime) -> list[tuple[datetime, int]]:
        """Stored readings of an account from `since` on, oldest first."""
        if self._since is None or key not in self._keys or since < self._since:
            return self._state.accounts.history(*key, since)
        # The same float comparison the query makes, so the window edge is identical.
        start = since.timestamp()
        return [
            (datetime.fromtimestamp(t, UTC), n) for t, n in self._history.get(key, ()) if t >= start
        ]

    def last_seen(self, key: tuple[str, str]) -> LastSeen | None:
        if key in self._keys:
            return self._last.get(key)
        return self._state.accounts.last_seen(*key)

    def rule_states(self, key: tuple[str, str]) -> Mapping[str, str]:
        # Read-only: callers build new dicts for what changes.
        if key in self._keys:
            return self._states.get(key, _NO_STATES)
        return self._state.rules.rule_states(*key)


_NO_STATES: Mapping[str, str] = MappingProxyType({})
