"""The unusual rule in `check` and `history`: status lines read from the real state file, with
rules built by followerwatch.rules.unusual itself (no config key needed), and many accounts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from followerwatch.analysis.unusual import (
    Status,
    format_score,
    most_unusual,
    per_day,
    statuses,
    stored_states,
    unusual_rule,
)
from followerwatch.cli.unusual import (
    MAX_ROWS,
    check_statuses,
    print_statuses,
    rules_on,
    show_statuses,
    status_line,
)
from followerwatch.config.settings import load_config
from followerwatch.models import Account, Observation
from followerwatch.rules.base import Reading
from followerwatch.rules.threshold import Threshold
from followerwatch.rules.unusual import Summary, Unusual, pack
from followerwatch.state.db import StateDB

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LEARNING = "too little history: {} readings over {} days (needs 24 over 3 days)"


def feed(rule: Unusual, hours: int, drop_hours: int = 0, seed: int = 7) -> str | None:
    """The state after `hours` hourly readings growing ~100/h (seed fixed), then losing
    5,000/h for `drop_hours`: far outside the account's own behaviour."""
    account = Account("x", "a", "a")
    rng = random.Random(seed)
    state, count = None, 100_000
    for h in range(hours + drop_hours):
        count += 100 + rng.randint(-20, 20) if h < hours else -5_000
        when = T0 + timedelta(hours=h)
        reading = Reading(account, when, Observation(account, when, count), None, None)
        state, _ = rule.evaluate(state, reading)
    return state


def test_the_rule_is_found_only_when_on() -> None:
    rule = Unusual()
    assert unusual_rule([Threshold("below", 10, 0, 1, False), rule]) is rule
    assert unusual_rule([Threshold("below", 10, 0, 1, False)]) is None
    assert unusual_rule([]) is None


def test_statuses_come_from_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "state.sqlite3"
    rule = Unusual()
    young = pack(Summary(readings=5, first=0, anchor_time=3 * 3600, anchor_count=10.0))
    watching = feed(rule, 24 * 5)
    firing = feed(rule, 24 * 5, drop_hours=2)
    assert watching is not None and firing is not None
    state = StateDB(path)
    try:
        for name, text in (("young", young), ("watching", watching), ("firing", firing)):
            state.rules.set_rule_state("x", name, "unusual", text)
        # Another rule's state of the same account is not the unusual rule's.
        state.rules.set_rule_state("x", "fresh", "below:10", '{"firing": true}')
    finally:
        state.close()
    keys = [("x", "young"), ("x", "watching"), ("x", "firing"), ("x", "fresh")]
    found = {s.key[1]: s for s in statuses(dict.fromkeys(keys, rule), stored_states(path, keys))}
    assert list(found) == ["young", "watching", "firing", "fresh"]
    assert found["young"].line == LEARNING.format(5, "0.1") and found["young"].learning
    assert found["fresh"].line == LEARNING.format(0, "0.0") and found["fresh"].learning
    assert found["watching"].line == rule.status(watching)
    assert found["watching"].line.startswith("typical +")
    assert not (found["watching"].learning or found["watching"].firing)
    assert found["firing"].firing and found["firing"].line.startswith("unusual drop under way")


def test_reading_states_creates_and_changes_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "state.sqlite3"
    assert stored_states(missing, [("x", "a")]) == {}
    assert not missing.parent.exists()  # `check` creates no data folder
    state = StateDB(missing)
    state.rules.set_rule_state("x", "a", "unusual", "text")
    state.close()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in missing.parent.iterdir()}
    assert stored_states(missing, [("x", "a"), ("x", "b")]) == {("x", "a"): {"unusual": "text"}}
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in missing.parent.iterdir()}
    assert after == before  # no WAL files left behind, the file untouched


def _printed(found: list[Status], width: int = 120) -> str:
    console = Console(record=True, width=width)
    print_statuses(found, console)
    return console.export_text()


def test_a_few_accounts_get_a_row_each() -> None:
    found = [
        Status(("x", "young"), LEARNING.format(5, "0.1"), False),
        Status(("mastodon", "[bold]odd"), "unusual drop under way; typical +3 ± 1/h", True),
    ]
    text = _printed(found)
    assert "Unusual rule" in text
    rows = [line for line in text.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in row.strip("│").split("│")] for row in rows]
    assert cells == [
        ["x", "young", LEARNING.format(5, "0.1")],
        ["mastodon", "[bold]odd", "unusual drop under way; typical +3 ± 1/h"],
    ]


def test_many_accounts_are_summed_up_and_only_the_firing_listed() -> None:
    found = [Status(("x", f"user_{i}"), LEARNING.format(i % 24, "1.0"), False) for i in range(240)]
    found += [
        Status(("x", f"calm_{i}"), "typical +10 ± 2/h (no daily cycle yet)", False)
        for i in range(7)
    ]
    found += [
        Status(("x", f"hot_{i}"), "unusual drop under way; typical +9 ± 3/h", True)
        for i in range(3)
    ]
    assert len(found) > MAX_ROWS
    text = _printed(found)
    assert (
        "Unusual rule on 250 accounts: 240 with too little history, 7 watching, "
        "3 with an unusual change under way"
    ) in text
    assert all(f"hot_{i} " in text for i in range(3))
    assert "user_17 " not in text and "calm_1 " not in text
    quiet = _printed([s for s in found if not s.firing])
    assert "0 with an unusual change under way" in quiet and "│" not in quiet


def test_scores_per_day_are_the_most_unusual_and_blank_without_one() -> None:
    day = datetime(2026, 1, 2, tzinfo=UTC)
    scores = {day: 2.5, day + timedelta(hours=1): -7.25, day + timedelta(days=1): 0.0}
    assert per_day(scores) == {day.date(): -7.25, (day + timedelta(days=1)).date(): 0.0}
    assert most_unusual([]) is None
    assert most_unusual([3.0, -3.0]) == most_unusual([-3.0, 3.0]) == -3.0  # a tie shows the drop
    assert [format_score(s) for s in (-7.25, 3.04, 0.0, None)] == ["-7.2", "+3.0", "0.0", ""]


def test_check_and_history_read_the_state_file_for_their_rules(tmp_path: Path) -> None:
    path = tmp_path / "data" / "state.sqlite3"
    rule = Unusual()
    firing = feed(rule, 24 * 5, drop_hours=2)
    assert firing is not None
    state = StateDB(path)
    state.rules.set_rule_state("x", "hot", "unusual", firing)
    state.close()
    console = Console(record=True, width=160)
    assert show_statuses({("x", "hot"): rule, ("x", "new"): rule}, path, console)
    text = console.export_text()
    assert "unusual drop under way; typical +" in text
    assert LEARNING.format(0, "0.0") in text
    assert status_line(rule, path, ("x", "hot")) == f"unusual rule: {rule.status(firing)}"
    assert status_line(rule, path, ("x", "new")) == f"unusual rule: {LEARNING.format(0, '0.0')}"
    assert status_line(None, path, ("x", "hot")) is None  # the rule off: no line at all


def test_a_damaged_state_file_is_a_line_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"not a database, not at all" * 100)
    console = Console(record=True, width=200)
    assert not show_statuses({("x", "a"): Unusual()}, path, console)
    assert "✗ unusual rule: no status:" in console.export_text()
    line = status_line(Unusual(), path, ("x", "a"))
    assert line is not None and line.startswith(f"unusual rule: no status: {path}")


def test_without_the_rule_check_shows_nothing(tmp_path: Path) -> None:
    config = load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path)},
            "influxdb": {"url": "http://127.0.0.1:8086", "database": "fw"},
            "platforms": {"x": {"bearer_token": "t"}},
            "watch": [{"platform": "x", "handle": "a", "below": 10}],
        },
    )
    assert rules_on(config) == {}
    console = Console(record=True)
    assert check_statuses(config, console) and console.export_text() == ""
