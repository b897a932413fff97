"""Hot reload: edits to the config file reach the running `followerwatch run` process."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, make_user
from followerwatch.clock import SystemClock
from followerwatch.service.reload import with_line
from service_proc import start_service, stop_service, wait_for

ENTRY_APLUSK = """
# The account that started it all.
[[watch]]
platform = "x"
handle = "aplusk"
below = 1_000_000
"""
ENTRY_JACK = """
[[watch]]
platform = "x"
handle = "{handle}"
"""


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeX:
    fake = FakeX(httpserver, SystemClock())
    for i, (name, count) in enumerate([("aplusk", 1_000_100), ("jack", 6_400_000)]):
        user = make_user(i)
        user["username"] = name
        user["public_metrics"]["followers_count"] = count
        fake.add(user)
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    return fake


@pytest.fixture
def head(tmp_path: Path, influx_db: tuple[str, str], fake: FakeX, httpserver: HTTPServer) -> str:
    return f"""
[service]
data_dir = "{tmp_path / "data"}"
log_format = "json"

[influxdb]
url = "{influx_db[0]}"
database = "{influx_db[1]}"

[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "0.3s"

[[notifiers]]
type = "webhook"
url = "{httpserver.url_for("/hook")}"
"""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


def polled(fake: FakeX, since: int = 0) -> list[set[str]]:
    return [set(s.args.get("usernames", "").split(",")) for s in fake.seen[since:]]


def alerts(httpserver: HTTPServer) -> list[tuple[str, int]]:
    out = []
    for req, _ in httpserver.log:
        if req.path == "/hook":
            event = json.loads(req.get_data())["event"]
            out.append((event["kind"], event["value"]))
    return out


def test_edits_apply_within_5_s_and_bad_edits_are_refused(
    tmp_path: Path,
    fake: FakeX,
    head: str,
    httpserver: HTTPServer,
    service: list[subprocess.Popen[str]],
) -> None:
    config = tmp_path / "fw.toml"
    config.write_text(head + ENTRY_APLUSK)
    proc = start_service(config)
    service.append(proc)
    wait_for(lambda: len(fake.seen) >= 2, "two polls", 20)
    fake.users["aplusk"]["public_metrics"]["followers_count"] = 999_990
    wait_for(lambda: alerts(httpserver) == [("dropped_below", 999_990)], "the first alert", 10)

    # Add an account and a new rule on the old one: both apply without a restart.
    config.write_text(
        head
        + ENTRY_APLUSK.replace("below = 1_000_000", "below = 1_000_000\nabove = 2_000_000")
        + ENTRY_JACK.format(handle="jack")
    )
    took = wait_for(lambda: {"aplusk", "jack"} in polled(fake), "the new account polled", 5)
    assert took < 5
    mark = len(fake.seen)
    wait_for(lambda: len(fake.seen) >= mark + 3, "three more polls", 10)
    # The below rule kept its state: still below, so no second alert.
    assert alerts(httpserver) == [("dropped_below", 999_990)]
    fake.users["aplusk"]["public_metrics"]["followers_count"] = 2_000_001
    wait_for(lambda: len(alerts(httpserver)) == 2, "the new rule's alert", 10)
    assert alerts(httpserver)[1] == ("crossed_above", 2_000_001)

    # An invalid edit: the service keeps polling what it had.
    config.write_text(head + ENTRY_APLUSK + ENTRY_JACK.format(handle="not valid!"))
    time.sleep(2.5)
    mark = len(fake.seen)
    wait_for(lambda: len(fake.seen) >= mark + 3, "polls after the bad edit", 10)
    assert all(p == {"aplusk", "jack"} for p in polled(fake, mark))

    # Removing the account stops its polls.
    config.write_text(head + ENTRY_APLUSK)
    wait_for(lambda: polled(fake)[-1] == {"aplusk"}, "jack dropped", 5)
    mark = len(fake.seen)
    wait_for(lambda: len(fake.seen) >= mark + 3, "polls after the removal", 10)
    assert all(p == {"aplusk"} for p in polled(fake, mark))

    output = stop_service(proc)
    assert proc.returncode == 0, output
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    refused = [e for e in logs if "refused" in e.get("event", "")]
    assert len(refused) == 1, refused
    assert refused[0]["level"] == "error"
    # The broken entry is the second [[watch]] table; its header is on the file's line …
    line = (head + ENTRY_APLUSK).count("\n") + 2
    assert (
        f"fw.toml:{line}: watch[1] (x/not valid!).handle: not a valid X handle"
        in (refused[0]["error"])
    )
    assert sum(1 for e in logs if e.get("event") == "config reloaded") == 2  # add, remove
    assert TOKEN not in output


def test_with_line_names_the_entry_header(tmp_path: Path) -> None:
    path = tmp_path / "wl.toml"
    path.write_text("# list\n[[watch]]\nplatform = 'x'\n\n[[watch]]\nhandle = '!'\n")
    assert (
        with_line(f"{path}: watch[1] (x/!).handle: bad") == f"{path}:5: watch[1] (x/!).handle: bad"
    )
    assert with_line("elsewhere: influxdb.url: bad") == "elsewhere: influxdb.url: bad"
