"""Not-found, suspended and malformed accounts: logged once per change, counted, shown in `poll`."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.demo.influxd import free_port
from service_proc import run_cli, start_service, stop_service
from service_proc import wait_for as wait_for_service

wait_for = partial(wait_for_service, timeout=30.0, every=0.1)
FAILING = {"gone": "not_found", "banned": "suspended", "broken": "malformed"}


def user(i: int, name: str) -> dict[str, Any]:
    u = make_user(i)
    u["username"] = name
    return u


def break_accounts(fake: FakeX) -> None:
    """@gone does not exist, @banned is suspended, @broken's count is not a number."""
    fake.users.pop("gone", None)
    fake.suspended.add("banned")
    fake.users["broken"]["public_metrics"]["followers_count"] = "lots"


def mend_accounts(fake: FakeX) -> None:
    fake.add(user(4, "gone"))
    fake.suspended.discard("banned")
    fake.users["broken"]["public_metrics"]["followers_count"] = 1_234


def write_config(tmp_path: Path, influx: tuple[str, str], fake: FakeX, port: int) -> Path:
    config = tmp_path / "fw.toml"
    config.write_text(
        f"""
[service]
data_dir = "data"
log_format = "json"
ops_address = "127.0.0.1:{port}"
[influxdb]
url = "{influx[0]}"
database = "{influx[1]}"
[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "0.3s"
"""
        + "".join(
            f'[[watch]]\nplatform = "x"\nhandle = "{name}"\n'
            for name in ("fine", "gone", "banned", "broken")
        )
    )
    return config


def failure_metrics(port: int) -> dict[tuple[str, str], float]:
    """(sample name, kind) → value, for the x platform's account-failure samples."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, s.labels["kind"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("followerwatch_account") and s.labels.get("platform") == "x"
    }


def logged(out: str, event: str) -> Counter[tuple[str, str]]:
    """(account, kind or former kind) of each log line with this event."""
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return Counter(
        (r["account"], r.get("kind") or r["was"]) for r in records if r.get("event") == event
    )


def test_failing_accounts_are_logged_once_per_change_and_counted_by_kind(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    fake = FakeX(httpserver, SystemClock())
    fake.limit = fake.remaining = 10**6
    fake.add(user(1, "fine"), user(2, "banned"), user(3, "broken"))
    break_accounts(fake)
    port = free_port()
    proc = start_service(write_config(tmp_path, influx_db, fake, port))
    try:
        wait_for(lambda: len(fake.seen) >= 5, "five polls while the three accounts fail")
        wait_for(
            lambda: all(
                failure_metrics(port).get(("followerwatch_account_failures_total", k), 0) >= 5
                for k in FAILING.values()
            ),
            "five failed reads of each kind in /metrics",
        )
        failing = failure_metrics(port)
        for kind in FAILING.values():
            assert failing[("followerwatch_accounts_failing", kind)] == 1
        mend_accounts(fake)
        wait_for(
            lambda: all(
                failure_metrics(port).get(("followerwatch_accounts_failing", k)) == 0
                for k in FAILING.values()
            ),
            "no account failing in /metrics",
        )
        mended = len(fake.seen)
        wait_for(lambda: len(fake.seen) >= mended + 4, "four polls after the accounts mended")
        totals = failure_metrics(port)
    finally:
        out = stop_service(proc, timeout=20)
    assert proc.returncode == 0, out[-3000:]
    assert totals[("followerwatch_account_failures_total", "not_found")] >= 5
    # Exactly one line when each began failing and one when it recovered, across many polls.
    assert logged(out, "account failing") == Counter(FAILING.items()), out[-3000:]
    assert logged(out, "account recovered") == Counter(FAILING.items()), out[-3000:]


def test_poll_shows_each_failure_kind_and_its_detail(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    fake = FakeX(httpserver, SystemClock())
    fake.add(user(1, "fine"), user(2, "banned"), user(3, "broken"))
    break_accounts(fake)
    result = run_cli("poll", "--config", str(write_config(tmp_path, influx_db, fake, 0)))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "│ x" in line]
    rows = {line.split("│")[2].strip(): line for line in lines}
    assert "not_found: Could not find user with usernames: [gone]." in rows["gone"]
    assert "suspended: User has been suspended: [banned]." in rows["banned"]
    assert "malformed: public_metrics.followers_count is 'lots', not a count" in rows["broken"]
    assert "1,007" in rows["fine"]
    assert logged(result.stdout + result.stderr, "account failing") == Counter(FAILING.items())
