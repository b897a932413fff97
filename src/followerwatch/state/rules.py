"""The rules' stored states, per account and rule (serialised by the rules themselves).

A summary (SUMMARY_RULE's state) lives in its account's row, written with the count; one
stored before that row had the column, or seeded before the account had a count, is in
rule_state, and is read from there while the row has none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

from followerwatch.state.behind import WriteBehind
from followerwatch.state.rows import (
    by_platform,
    columns,
    immediate,
    parts,
    placeholders,
    summary_text,
)
from followerwatch.state.values import SUMMARY_RULE
from followerwatch.state.writes import write_states


class RuleStates:
    """The rule_state table: read per account or per batch; polls write it via commits."""

    def __init__(self, db: sqlite3.Connection, behind: WriteBehind | None = None) -> None:
        """Read and write through the loop's connection; soft states still `behind` laid over."""
        self._db = db
        self._behind = WriteBehind() if behind is None else behind
        # A file only read (`check`), never migrated, may predate the column.
        self._summaries = "summary" in columns(db, "accounts")

    def rule_states(self, platform: str, account: str) -> dict[str, str]:
        """Serialised rule states of an account, by rule name."""
        return self.rule_states_many([(platform, account)]).get((platform, account), {})

    def rule_states_many(
        self,
        keys: Iterable[tuple[str, str]],
        summaries: Mapping[tuple[str, str], str] | None = None,
    ) -> dict[tuple[str, str], dict[str, str]]:
        """`rule_states` of many keys in a few queries; keys without state are left out.

        `summaries`: the keys' summaries, already read with their rows (Accounts.last_seen_many).
        """
        out: dict[tuple[str, str], dict[str, str]] = {}
        wanted = by_platform(keys)
        read_summaries = summaries is None and self._summaries
        found: list[tuple[tuple[str, str], str]] = []
        for platform, names in wanted.items():
            for part in parts(names):
                marks = placeholders(len(part))
                query = (
                    "SELECT account, rule, state FROM rule_state"
                    f" WHERE platform=? AND account IN ({marks})"
                )
                if read_summaries:
                    rows = self._db.execute(
                        f"{query} UNION ALL SELECT account, NULL, summary FROM accounts"
                        f" WHERE platform=? AND account IN ({marks}) AND summary IS NOT NULL",
                        (platform, *part, platform, *part),
                    ).fetchall()
                else:
                    rows = self._db.execute(query, (platform, *part)).fetchall()
                for account, rule, state in rows:
                    if rule is None:
                        found.append(((platform, account), summary_text(state)))
                    else:
                        out.setdefault((platform, account), {})[rule] = state
        # After every rule_state row: the account's own row holds the newer summary.
        for key, text in found if summaries is None else summaries.items():
            states = out.get(key)
            if states is None:
                out[key] = {SUMMARY_RULE: text}
            else:
                states[SUMMARY_RULE] = text
        if self._behind.states or self._behind.states_flushing:
            self._behind.overlay_states(out, ((p, a) for p, names in wanted.items() for a in names))
        return out

    def set_rule_state(self, platform: str, account: str, rule: str, state: str) -> None:
        """Store one rule state outside a poll (campaign phases)."""
        with immediate(self._db):
            write_states(self._db, [(platform, account, rule, state)])
