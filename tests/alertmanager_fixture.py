"""pytest plugin: a real Prometheus Alertmanager per test, with a webhook receiver it notifies."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from followerwatch.demo.influxd import free_port

BINARY = "/usr/bin/prometheus-alertmanager"

# Tiny group timers so a notification arrives within a fraction of a second; `group_by: [...]`
# puts every alert in its own group, so tests sharing nothing never see each other's alerts.
_CONFIG = """\
global:
  resolve_timeout: {resolve_timeout}
route:
  receiver: hook
  group_by: ['...']
  group_wait: 100ms
  group_interval: 200ms
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {hook_url}
        send_resolved: true
"""


@dataclass
class Alertmanager:
    """A running Alertmanager: `url` for the API, `notifications` what it sent its receiver.

    `auth` is the (user, password) `alerts()` authenticates with when basic auth is on.
    """

    url: str
    receiver: HTTPServer
    hook_path: str
    auth: tuple[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def alerts(self) -> list[dict[str, Any]]:
        """The active alerts, from `GET /api/v2/alerts`."""
        response = httpx.get(f"{self.url}/api/v2/alerts", auth=self.auth, timeout=5)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def notifications(self) -> list[dict[str, Any]]:
        """Every webhook payload Alertmanager delivered so far, oldest first."""
        return [
            json.loads(request.get_data())
            for request, _ in self.receiver.log
            if request.path == self.hook_path
        ]

    def wait_for_notification(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first notification `match` accepts; fails the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for payload in self.notifications():
                if match(payload):
                    return payload
            time.sleep(0.05)
        pytest.fail(f"no matching Alertmanager notification in {timeout}s: {self.notifications()}")


def _start(
    directory: Path,
    receiver: HTTPServer,
    hook_path: str,
    *,
    resolve_timeout: str,
    basic_auth: tuple[str, str, str] | None,
) -> Alertmanager:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "am.yml"
    config.write_text(
        _CONFIG.format(resolve_timeout=resolve_timeout, hook_url=receiver.url_for(hook_path))
    )
    port = free_port()
    args = [
        BINARY,
        f"--config.file={config}",
        f"--storage.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    if basic_auth is not None:
        user, _, bcrypt_hash = basic_auth
        web = directory / "web.yml"
        web.write_text(f"basic_auth_users:\n  {user}: {bcrypt_hash}\n")
        args.append(f"--web.config.file={web}")
    if not Path(BINARY).exists():
        pytest.fail(
            f"{BINARY} is missing; install it with `apt-get install -y prometheus-alertmanager`",
            pytrace=False,
        )
    with (directory / "alertmanager.log").open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    auth = basic_auth[:2] if basic_auth is not None else None
    server = Alertmanager(
        f"http://127.0.0.1:{port}", receiver, hook_path, auth=auth, process=process
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{server.url}/-/ready", auth=auth, timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    process.wait()
    pytest.fail(f"alertmanager did not start: {(directory / 'alertmanager.log').read_text()}")


StartAlertmanager = Callable[..., Alertmanager]


@pytest.fixture(scope="session")
def alertmanager_receiver() -> Iterator[HTTPServer]:
    """One webhook receiver for every Alertmanager; each posts to its own `/hook/<id>` path."""
    # Shared because stopping a werkzeug server takes ~0.4 s, which per test adds up.
    receiver = HTTPServer(host="127.0.0.1", port=0)
    receiver.expect_request(re.compile(r"^/hook/"), method="POST").respond_with_data("")
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def alertmanager_factory(
    tmp_path: Path, alertmanager_receiver: HTTPServer
) -> Iterator[StartAlertmanager]:
    """Start Alertmanagers: `start(resolve_timeout="5m", basic_auth=(user, password, bcrypt))`."""
    started: list[Alertmanager] = []

    def start(
        resolve_timeout: str = "5m", basic_auth: tuple[str, str, str] | None = None
    ) -> Alertmanager:
        server = _start(
            tmp_path / f"alertmanager{len(started)}",
            alertmanager_receiver,
            f"/hook/{uuid.uuid4().hex}",
            resolve_timeout=resolve_timeout,
            basic_auth=basic_auth,
        )
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.process is not None
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def alertmanager(alertmanager_factory: StartAlertmanager) -> Alertmanager:
    """A fresh Alertmanager (resolve_timeout 5m, no auth) notifying its own webhook receiver."""
    return alertmanager_factory()
