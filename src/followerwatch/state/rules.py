"""The rules' stored states, per account and rule (serialised by the rules themselves)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from followerwatch.state.behind import WriteBehind
from followerwatch.state.rows import by_platform, immediate, parts, placeholders


class RuleStates:
    """The rule_state table: read per account or per batch; polls write it via commits."""

    def __init__(self, db: sqlite3.Connection, behind: WriteBehind | None = None) -> None:
        """Read and write through the loop's connection; soft states still `behind` laid over."""
        self._db = db
        self._behind = WriteBehind() if behind is None else behind

    def rule_states(self, platform: str, account: str) -> dict[str, str]:
        """Serialised rule states of an account, by rule name."""
        rows = self._db.execute(
            "SELECT rule, state FROM rule_state WHERE platform=? AND account=?", (platform, account)
        )
        return self._behind.states_over((platform, account), dict(rows.fetchall()))

    def rule_states_many(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, str]]:
        """`rule_states` of many keys in a few queries; keys without state are left out."""
        out: dict[tuple[str, str], dict[str, str]] = {}
        wanted = by_platform(keys)
        for platform, names in wanted.items():
            for part in parts(names):
                rows = self._db.execute(
                    "SELECT account, rule, state FROM rule_state"
                    f" WHERE platform=? AND account IN ({placeholders(len(part))})",
                    (platform, *part),
                )
                for account, rule, state in rows.fetchall():
                    out.setdefault((platform, account), {})[rule] = state
        if self._behind.states or self._behind.states_flushing:
            self._behind.overlay_states(out, ((p, a) for p, names in wanted.items() for a in names))
        return out

    def set_rule_state(self, platform: str, account: str, rule: str, state: str) -> None:
        """Store one rule state outside a poll (campaign phases)."""
        with immediate(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO rule_state VALUES (?,?,?,?)",
                (platform, account, rule, state),
            )
