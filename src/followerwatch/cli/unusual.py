"""The unusual rule's status in `check` (every account with it on) and `history` (one account)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from followerwatch.analysis.unusual import (
    Key,
    Status,
    StatusRule,
    rule_of,
    statuses,
    stored_states,
    unusual_rule,
)
from followerwatch.config.settings import Config
from followerwatch.errors import StateFileError
from followerwatch.rules import build_rule_sets

# As poll's table: past this many accounts, a summary and only what needs a look.
MAX_ROWS = 200


def rules_on(cfg: Config) -> dict[Key, StatusRule]:
    """The unusual rule of every watched account that has it on, in watchlist order."""
    sets = build_rule_sets(cfg.rules)
    found: dict[int, StatusRule | None] = {}  # accounts with the same rule keys share one tuple
    out: dict[Key, StatusRule] = {}
    for account in cfg.accounts:
        rules = sets.get(account.key)
        if rules is None:
            continue
        if id(rules) not in found:
            found[id(rules)] = unusual_rule(rules)
        rule = found[id(rules)]
        if rule is not None:
            out[account.key] = rule
    return out


def state_file(cfg: Config) -> Path:
    """The service's state file, where the rule states are."""
    return cfg.settings.service.data_dir / "state.sqlite3"


def check_statuses(cfg: Config, out: Console) -> bool:
    """`check`: the unusual rule's status per account that has it on (nothing if none has)."""
    return show_statuses(rules_on(cfg), state_file(cfg), out)


def show_statuses(rules: Mapping[Key, StatusRule], path: Path, out: Console) -> bool:
    """Print the statuses of `rules` from the state file; False when it cannot be read."""
    if not rules:
        return True
    try:
        states = stored_states(path, list(rules))
    except StateFileError as exc:
        out.print(Text.assemble(("✗", "red"), f" unusual rule: no status: {exc}"))
        return False
    print_statuses(statuses(rules, states), out)
    return True


def print_statuses(found: Sequence[Status], out: Console) -> None:
    """One row per account; past MAX_ROWS, a count per status and only the firing accounts."""
    title = "Unusual rule"
    rows = list(found)
    if len(rows) > MAX_ROWS:
        learning = sum(s.learning for s in rows)
        firing = [s for s in rows if s.firing]
        out.print(
            Text(
                f"Unusual rule on {len(rows):,} accounts: {learning:,} with too little history, "
                f"{len(rows) - learning - len(firing):,} watching, "
                f"{len(firing):,} with an unusual change under way"
            )
        )
        rows = firing[:MAX_ROWS]
        title = f"Accounts with an unusual change under way (first {MAX_ROWS})"
        if not rows:
            return
    table = Table(title=title)
    for col in ("platform", "account", "status"):
        table.add_column(col)
    for s in rows:
        # Text, so brackets in a name are not markup.
        style = "red" if s.firing else ""
        table.add_row(s.key[0], Text(s.key[1]), Text(s.line, style=style))
    out.print(table)


def account_status(cfg: Config, key: Key) -> str | None:
    """`history`'s line for one account; None when the rule is off."""
    return status_line(rule_of(cfg.rules.get(key)), state_file(cfg), key)


def status_line(rule: StatusRule | None, path: Path, key: Key) -> str | None:
    """ "unusual rule: <its status>" of one account from the state file; None without the rule.

    A state file that cannot be read gives a line saying so instead.
    """
    if rule is None:
        return None
    try:
        states = stored_states(path, [key])
    except StateFileError as exc:
        return f"unusual rule: no status: {exc}"
    [status] = statuses({key: rule}, states)
    return f"unusual rule: {status.line}"


# The line under history's table when it has a score column.
SCORE_LEGEND = "score: the day's most unusual score from the unusual rule (blank: none)"
