"""A throwaway InfluxDB 1.x server on loopback, for tests and the `followerwatch demo` command."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from followerwatch.store.influx_v1 import quote_ident, quote_literal

DEFAULT_BINARY = "/usr/bin/influxd"

# Config keys understood by 1.6; later 1.x versions accept them too.
_CONFIG_TEMPLATE = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = {meta_dir}
  logging-enabled = false

[data]
  dir = {data_dir}
  wal-dir = {wal_dir}
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth_enabled}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  enabled = false
"""

_START_ATTEMPTS = 3


class InfluxdError(RuntimeError):
    """The throwaway influxd could not be started or answered unexpectedly."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_influxd() -> str:
    """Return the influxd binary on PATH, else the Debian location."""
    return shutil.which("influxd") or DEFAULT_BINARY


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Looked up before the fork: the child only makes the call.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call: nobody would stop us
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal


def _toml_str(value: str | Path) -> str:
    # json string syntax is valid TOML basic-string syntax for paths.
    return json.dumps(str(value))


class TempInfluxd:
    """Run `influxd` on free loopback ports with all state under one directory; stop it on exit."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        binary: str | None = None,
        auth_enabled: bool = False,
        startup_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        die_with_parent: bool = False,
    ) -> None:
        self._requested_dir = Path(directory) if directory is not None else None
        self.binary = binary or find_influxd()
        self.auth_enabled = auth_enabled
        # Linux: influxd gets SIGTERM if this process dies without stopping it (even SIGKILL).
        # Opt-in, since the kernel ties it to the starting thread, not the process.
        self.die_with_parent = die_with_parent
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._dir: Path | None = None

    # -- public surface -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The HTTP port."""
        if self._port is None:
            raise InfluxdError("influxd is not running")
        return self._port

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self._proc is None:
            raise InfluxdError("influxd is not running")
        return self._proc.pid

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, e.g. http://127.0.0.1:41234."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        """The directory holding meta/, data/, wal/, influxd.conf and influxd.log."""
        if self._dir is None:
            raise InfluxdError("influxd is not running")
        return self._dir

    @property
    def log_path(self) -> Path:
        """Where influxd's stdout and stderr go."""
        return self.data_dir / "influxd.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> TempInfluxd:
        """Start the server and wait until /ping answers 204."""
        if self._proc is not None:
            raise InfluxdError("influxd is already running")
        if not os.path.isfile(self.binary) or not os.access(self.binary, os.X_OK):
            raise InfluxdError(f"influxd binary not found or not executable: {self.binary}")
        if self._requested_dir is not None:
            self._requested_dir.mkdir(parents=True, exist_ok=True)
            self._dir = self._requested_dir.resolve()
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="followerwatch-influxd-")
            self._dir = Path(self._tmp.name)
        try:
            self._start_with_retries()
        except BaseException:
            self.stop()
            raise
        # A safety net for exits that skip __exit__ (sys.exit in a CLI, an unhandled signal):
        # the child runs in its own session, so nothing else would stop it.
        atexit.register(self.stop)
        return self

    def suspend(self) -> None:
        """Stop the server but keep its data and port: an outage, for chaos tests."""
        if self._proc is None or self._port is None:
            raise InfluxdError("influxd is not running")
        self._suspended_port: int | None = self._port
        self._terminate_current()

    def resume(self) -> None:
        """Start a suspended server again on the same port with the same data."""
        port = getattr(self, "_suspended_port", None)
        if port is None:
            raise InfluxdError("influxd was not suspended")
        rpc_port = free_port()
        self._launch(port, rpc_port)
        self._wait_ready(port)
        self._port = port
        self._suspended_port = None

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after stop_timeout_s); idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._port = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._dir = None

    def query(self, influxql: str, *, database: str | None = None) -> object:
        """Run one InfluxQL statement over plain HTTP and return the decoded JSON (setup helper)."""
        form = {"q": influxql}
        params = {"db": database} if database else {}
        url = f"{self.url}/query?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(
            url, data=urllib.parse.urlencode(form).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise InfluxdError(f"query failed with HTTP {exc.code}: {exc.read()!r}") from exc

    def create_admin(self, username: str, password: str) -> None:
        """Create the first admin user (1.x allows this one statement before any user exists)."""
        statement = (
            f"CREATE USER {quote_ident(username)} WITH PASSWORD {quote_literal(password)}"
            " WITH ALL PRIVILEGES"
        )
        try:
            result = self.query(statement)
        except InfluxdError:
            result = None
        if (
            not isinstance(result, dict)
            or "error" in result
            or any("error" in r for r in result.get("results", []))
        ):
            # No server detail: a parse error could quote part of the password back.
            raise InfluxdError(f"creating admin user {username!r} on {self.url} failed")

    def __enter__(self) -> TempInfluxd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------

    def _start_with_retries(self) -> None:
        # free_port() cannot reserve a port, so another process may grab it before influxd
        # binds; a bind failure is retried with fresh ports instead of failing the test run.
        for attempt in range(1, _START_ATTEMPTS + 1):
            http_port, rpc_port = free_port(), free_port()
            while rpc_port == http_port:
                rpc_port = free_port()
            self._launch(http_port, rpc_port)
            try:
                self._wait_ready(http_port)
            except InfluxdError:
                bind_race = "address already in use" in self.log_tail(50)
                self._terminate_current()
                if bind_race and attempt < _START_ATTEMPTS:
                    continue
                raise
            self._port = http_port
            return

    def _launch(self, http_port: int, rpc_port: int) -> None:
        root = self.data_dir
        config = _CONFIG_TEMPLATE.format(
            rpc_port=rpc_port,
            http_port=http_port,
            meta_dir=_toml_str(root / "meta"),
            data_dir=_toml_str(root / "data"),
            wal_dir=_toml_str(root / "wal"),
            auth_enabled="true" if self.auth_enabled else "false",
        )
        config_path = root / "influxd.conf"
        config_path.write_text(config)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, "run", "-config", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Keep Ctrl-C in an interactive demo from reaching influxd before we stop it.
                start_new_session=True,
                preexec_fn=_die_with_parent() if self.die_with_parent else None,
            )

    def _wait_ready(self, http_port: int) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        ping = f"http://127.0.0.1:{http_port}/ping"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise InfluxdError(
                    f"influxd exited with status {self._proc.returncode} during startup;"
                    f" log {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(ping, timeout=1) as resp:
                if resp.status == 204:
                    return
            time.sleep(0.05)
        raise InfluxdError(
            f"influxd did not answer GET {ping} with 204 within {self.startup_timeout_s:g} s;"
            f" log {self.log_path}:\n{self.log_tail()}"
        )

    def _terminate_current(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
